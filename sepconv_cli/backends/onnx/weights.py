"""Where an ONNX model keeps its weights, how many elements and bytes they hold, and reading them.

Weight sources are initializers (also those listed as graph inputs in IR < 4 files), ``Constant`` nodes
and ``ConstantOfShape`` nodes whose shape is itself constant. ``Identity`` and ``Cast`` of a source are
aliases of it (exporters emit them for shared weights), so a weight is counted once whatever route it
takes. Counting reads only ``dims``: weight bytes (possibly external data) are read only by ``array``.
Params are float tensors, plus integer tensors that ``DequantizeLinear`` turns into weights (QDQ
models store their kernels as int8); other integer tensors (shapes, indices) are not params. What each
reader makes of a tensor comes from one table (``roles.INPUT_ROLES``): a tensor read only as Resize
scales, Pad pads, a Reshape shape or the like is config, never a param; one read only as BatchNorm
statistics or quantisation metadata is a buffer; the all-ones/all-zeros InstanceNormalization scale and
bias that exporters write to emulate GroupNorm are config too. Scalars
(rank-0 tensors, and one-element ``Constant`` nodes: the ``0.5`` and ``sqrt(d)`` that exporters write
for ``x * 0.5``, GELU, attention scaling) are literals of the code, not trainable weights, so they are
not params either; nor is a tensor no node reads. Weights inside ``If``/``Loop``/``Scan`` bodies count for
the node that owns the body (``subgraphs``); the totals live in ``totals``. Units: elements and bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import prod

import numpy as np
import onnx
from onnx import numpy_helper

from sepconv_cli.errors import WeightsUnreadable

FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                         onnx.TensorProto.BFLOAT16})
"""Element types counted as trainable params; integer tensors (shapes, indices) are not params."""

ALIAS_OPS = ("Identity", "Cast")


@dataclass(frozen=True)
class WeightSource:
    """One constant tensor of the model: its name, element type, dims and how it is stored."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    kind: str  # "initializer" | "constant" | "constant_of_shape"

    @property
    def elements(self) -> int:
        """Number of elements."""
        return prod(self.shape)

    @property
    def is_float(self) -> bool:
        """True for float element types (the ones counted as params or buffers)."""
        return self.dtype in FLOAT_TYPES


def dtype_name(dtype: int) -> str:
    """ONNX element type -> numpy-style name (``1`` -> ``"float32"``, ``16`` -> ``"bfloat16"``)."""
    if dtype == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dtype)).name
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(dtype).lower()


def dtype_bytes(dtype: int, elements: int) -> int:
    """Stored bytes of ``elements`` values of ``dtype`` (4-bit types pack two per byte)."""
    name = onnx.TensorProto.DataType.Name(dtype)
    if name.endswith("4") and name[:-1] in ("INT", "UINT", "FLOAT"):
        return (elements + 1) // 2
    if dtype == onnx.TensorProto.BFLOAT16:
        return 2 * elements
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dtype)).itemsize * elements
    except (KeyError, TypeError, ValueError):
        return 0


class WeightCatalogue:
    """All weight sources of a graph plus the aliases (Identity/Cast outputs) that lead to them."""

    def __init__(self, model: onnx.ModelProto, order: list[int], base_dir: str):
        self.base_dir = base_dir
        self.sources: dict[str, WeightSource] = {}
        self.aliases: dict[str, str] = {}
        self._tensors: dict[str, onnx.TensorProto] = {}
        self._nodes: dict[str, onnx.NodeProto] = {}
        self.quantized: set[str] = set()
        for tensor in model.graph.initializer:
            self._tensors[tensor.name] = tensor
            self.sources[tensor.name] = WeightSource(tensor.name, tensor.data_type, tuple(tensor.dims),
                                                     "initializer")
        for index in order:
            self._add_node(model.graph.node[index])

    def _add_node(self, node: onnx.NodeProto) -> None:
        if node.domain not in ("", "ai.onnx") or not node.output:
            return
        out = node.output[0]
        if node.op_type == "Constant":
            source = _constant_source(node)
            if source is not None:
                self.sources[out] = source
                self._nodes[out] = node
        elif node.op_type == "ConstantOfShape":
            shape = self.array(node.input[0]) if node.input else None
            if shape is not None:
                dtype = _constant_of_shape_dtype(node)
                self.sources[out] = WeightSource(out, dtype, tuple(int(d) for d in shape), "constant_of_shape")
                self._nodes[out] = node
        elif node.op_type in ALIAS_OPS and node.input and self.resolve(node.input[0]) is not None:
            self.aliases[out] = self.resolve(node.input[0])  # type: ignore[assignment]
        elif node.op_type == "DequantizeLinear" and node.input and self.resolve(node.input[0]) is not None:
            self.quantized.add(self.resolve(node.input[0]))  # type: ignore[arg-type]

    def is_param(self, key: str) -> bool:
        """True when source ``key`` holds weight values: float, or integer fed to DequantizeLinear, and
        not a scalar literal."""
        source = self.sources[key]
        return not self.is_literal(key) and (source.is_float or key in self.quantized)

    def is_literal(self, key: str) -> bool:
        """True for a constant of the code rather than a weight: a rank-0 tensor, or a one-element
        ``Constant`` node (exporters write ``1.0`` of attention's ``1 / sqrt(d)`` as a ``[1]`` constant)."""
        source = self.sources[key]
        return not source.shape or (source.kind == "constant" and source.elements == 1)

    def resolve(self, name: str) -> str | None:
        """The weight source ``name`` is (or aliases), or None when it is computed at run time."""
        name = self.aliases.get(name, name)
        return name if name in self.sources else None

    def produced_here(self, node: onnx.NodeProto) -> bool:
        """True when ``node`` is itself a weight source (a Constant or a constant ConstantOfShape)."""
        return bool(node.output) and node.output[0] in self._nodes and self._nodes[node.output[0]] is node

    def inline_array(self, name: str, limit: int = 65536) -> np.ndarray | None:
        """The values of a small weight stored in the file itself (``limit`` elements at most); None for
        external data, big tensors and computed values: counting never reads external data."""
        key = self.resolve(name)
        if key is None or self.sources[key].elements > limit:
            return None
        tensor = self._tensors.get(key)
        if tensor is not None and tensor.data_location == onnx.TensorProto.EXTERNAL:
            return None
        return self.array(key)

    def array(self, name: str) -> np.ndarray | None:
        """The values of weight ``name`` as stored (external data read now), None if not a constant."""
        key = self.resolve(name)
        if key is None:
            return None
        if key in self._tensors:
            return _read_tensor(self._tensors[key], self.base_dir, name)
        node = self._nodes[key]
        if node.op_type == "ConstantOfShape":
            return _fill(node, self.sources[key])
        return _constant_array(node, self.base_dir)


def _read_tensor(tensor: onnx.TensorProto, base_dir: str, name: str) -> np.ndarray:
    """The tensor's values; InputError naming the data file when external data cannot be read."""
    try:
        return numpy_helper.to_array(tensor, base_dir=base_dir)
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:  # RuntimeError: a name too long
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        where = os.path.join(base_dir, location) if location else base_dir
        if location and not os.path.lexists(where):
            reason = "no such file"
        elif location and not os.path.isfile(where):
            reason = "not a regular file"
        else:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsUnreadable(f"{where}: external data of weight {name!r} cannot be read ({reason})",
                                "counts need only shapes (sepconv check works), weights need this file") from None


def _constant_source(node: onnx.NodeProto) -> WeightSource | None:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR:
            return WeightSource(node.output[0], attr.t.data_type, tuple(attr.t.dims), "constant")
        if attr.name in ("value_float", "value_int"):
            dtype = onnx.TensorProto.FLOAT if attr.name == "value_float" else onnx.TensorProto.INT64
            return WeightSource(node.output[0], dtype, (), "constant")
        if attr.name in ("value_floats", "value_ints"):
            dtype = onnx.TensorProto.FLOAT if attr.name == "value_floats" else onnx.TensorProto.INT64
            count = len(attr.floats) if attr.name == "value_floats" else len(attr.ints)
            return WeightSource(node.output[0], dtype, (count,), "constant")
    return None  # sparse or string constants: not weights


def _constant_array(node: onnx.NodeProto, base_dir: str) -> np.ndarray:
    attr = next(a for a in node.attribute if a.name.startswith("value"))
    if attr.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t, base_dir=base_dir)
    value = onnx.helper.get_attribute_value(attr)
    dtype = np.float32 if "float" in attr.name else np.int64
    return np.asarray(value, dtype=dtype)


def _constant_of_shape_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    for attr in node.attribute:
        if attr.name == "value":
            return attr.t
    return None


def _constant_of_shape_dtype(node: onnx.NodeProto) -> int:
    value = _constant_of_shape_value(node)
    return value.data_type if value is not None else onnx.TensorProto.FLOAT


def _fill(node: onnx.NodeProto, source: WeightSource) -> np.ndarray:
    value = _constant_of_shape_value(node)
    fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else np.float32(0.0)
    return np.full(source.shape, fill)
