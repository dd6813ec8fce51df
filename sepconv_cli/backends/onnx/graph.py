"""Reading an ONNX file and inferring its shapes without paying for its weight bytes.

``read_model`` parses the file (external data left on disk) and turns every way a file can be broken into
a one-line ``InputError``. ``infer`` runs ``onnx.shape_inference`` on a *skeleton* of the model: large
float tensors are stripped of their data and re-declared as typed graph inputs, because inference
serialises the whole proto and a 100 MB model would otherwise cost more than loading it. Small tensors
(Reshape shapes, Slice indices) keep their data so constant folding of shapes still works.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass

import onnx
from google.protobuf.message import DecodeError

from sepconv_cli.backends.onnx.dims import substitute
from sepconv_cli.backends.onnx.sanity import check_model
from sepconv_cli.core.records import Dim, Shape
from sepconv_cli.errors import InputError, ShapeError, UsageError

_INFERENCE_PROBLEM = re.compile(r"\(op_type:(?P<op>[^,]*), node name: (?P<node>[^)]*)\): (?:\[\w+\] )?(?P<msg>[^\n]*)")

MAX_DIM = 2**31 - 1
"""Largest dimension accepted (elements); anything bigger is a corrupt file or a typo in a shape."""

KEEP_DATA_ELEMENTS = 64
"""Tensors up to this many elements keep their data in the skeleton (shape-carrying constants)."""

KEEP_INT_ELEMENTS = 65536
"""int64/int32 tensors (shapes, indices, axes) up to this many elements keep their data too."""


def read_model(source: str) -> onnx.ModelProto:
    """Parse ``source`` as ONNX without loading external data; InputError when it is not a usable model."""
    try:
        model = onnx.load(source, load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError):  # protobuf says only "wire format corrupt"
        raise InputError(f"{source}: not an ONNX model (cannot parse the protobuf: truncated file or "
                         "another format)") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise InputError(f"{source}: not an ONNX model (no graph or IR version; truncated or another format?)")
    if not model.graph.node:
        raise InputError(f"{source}: ONNX graph has no nodes (truncated file?)")
    if not model.opset_import:
        raise InputError(f"{source}: ONNX model declares no opset (truncated file?)")
    check_model(source, model)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def topological_order(source: str, graph: onnx.GraphProto) -> list[int]:
    """Node indices in dependency order (Kahn); InputError naming a node on a cycle or an undefined input."""
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer[out] = index
    known = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    waiting = [0] * len(graph.node)
    users: list[list[int]] = [[] for _ in graph.node]
    for index, node in enumerate(graph.node):
        for name in node.input:
            if not name:
                continue
            if name in producer:
                waiting[index] += 1
                users[producer[name]].append(index)
            elif name not in known:
                raise InputError(f"{source}: node {node.name or node.op_type!r} uses undefined tensor {name!r}")
    ready = deque(i for i, n in enumerate(waiting) if n == 0)
    order: list[int] = []
    while ready:
        index = ready.popleft()
        order.append(index)
        for user in users[index]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if len(order) != len(graph.node):
        stuck = next(i for i, n in enumerate(waiting) if n > 0)
        node = graph.node[stuck]
        raise InputError(f"{source}: graph has a cycle (node {node.name or node.op_type!r} depends on itself)")
    return order


@dataclass(frozen=True)
class Inferred:
    """Shapes and element types of every named value the inference could reach, plus its warnings."""

    shapes: dict[str, Shape | None]
    dtypes: dict[str, int]
    warnings: tuple[str, ...]


def tensor_shape(type_proto: onnx.TypeProto) -> Shape | None:
    """Shape of a tensor type: ints, dim_param symbols, ``"?"`` for unnamed unknown dims; None if unranked."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for dim in type_proto.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or "?")
    return tuple(dims)


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose big tensors carry no data: initializers become typed inputs, big
    ``Constant`` nodes become typed inputs too. Cheap to serialise, same shapes."""
    graph = model.graph
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    sk = out.graph
    sk.name = graph.name
    sk.input.extend(graph.input)
    sk.output.extend(graph.output)
    sk.value_info.extend(graph.value_info)
    declared = {i.name for i in graph.input}
    for tensor in graph.initializer:
        if _keeps_data(tensor):
            sk.initializer.append(tensor)
        elif tensor.name not in declared:
            sk.input.append(_typed_input(tensor.name, tensor))
            declared.add(tensor.name)
    for node in graph.node:
        big = _big_constant(node)
        if big is not None and node.output[0] not in declared:
            sk.input.append(_typed_input(node.output[0], big))
            declared.add(node.output[0])
        elif big is None:
            sk.node.append(node)
    return out


def _keeps_data(tensor: onnx.TensorProto) -> bool:
    count = 1
    for d in tensor.dims:
        count *= d
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return False
    shape_like = tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    return count <= (KEEP_INT_ELEMENTS if shape_like else KEEP_DATA_ELEMENTS)


def _big_constant(node: onnx.NodeProto) -> onnx.TensorProto | None:
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR and not _keeps_data(attr.t):
            return attr.t
    return None


def _typed_input(name: str, tensor: onnx.TensorProto) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims))


def pin_inputs(source: str, sk: onnx.ModelProto, pins: tuple, input_names: list[str]) -> None:
    """Apply ``--input-shape`` pins to the skeleton's inputs; a symbol pinned to an int (``N`` -> 1) is
    replaced everywhere it appears, so declared outputs and value_info agree with the pin."""
    by_name = {info.name: info for info in sk.graph.input}
    symbols: dict[str, int] = {}
    for name, shape in pins:
        name = _pinned_name(source, name, input_names)
        check_dims(source, name, shape)
        tensor_type = by_name[name].type.tensor_type
        dims = tensor_type.shape.dim
        if tensor_type.HasField("shape") and len(dims) != len(shape):
            raise ShapeError(f"{source}: input {name!r} has {len(dims)} dims, --input-shape gives {len(shape)}")
        if not tensor_type.HasField("shape"):
            for _ in shape:
                tensor_type.shape.dim.add()
        for dim, new in zip(tensor_type.shape.dim, shape):
            _pin_dim(source, name, dim, new, symbols)
    substitute(sk.graph, symbols)


def _pinned_name(source: str, name: str | None, input_names: list[str]) -> str:
    listing = ", ".join(input_names) or "none"
    if name is None:
        if len(input_names) != 1:
            raise UsageError(f"{source}: an unnamed --input-shape needs a single-input model; inputs: {listing}")
        return input_names[0]
    if name not in input_names:
        raise UsageError(f"{source}: no model input named {name!r}; inputs: {listing}")
    return name


def _pin_dim(source: str, name: str, dim: onnx.TensorShapeProto.Dimension, new: Dim,
             symbols: dict[str, int]) -> None:
    if isinstance(new, int):
        if dim.HasField("dim_value") and dim.dim_value != new:
            raise ShapeError(f"{source}: input {name!r} has fixed dimension {dim.dim_value}, "
                             f"--input-shape gives {new}")
        if dim.dim_param:
            symbols[dim.dim_param] = new
        dim.dim_value = new
    elif not dim.HasField("dim_value"):
        dim.dim_param = new


def check_dims(source: str, name: str, shape: Shape | None) -> None:
    """ShapeError when a dim is negative or absurdly large (> ``MAX_DIM``)."""
    for dim in shape or ():
        if isinstance(dim, int) and dim < 0:
            raise ShapeError(f"{source}: impossible shapes: tensor {name!r} would have dimension {dim}")
        if isinstance(dim, int) and dim > MAX_DIM:
            raise ShapeError(f"{source}: tensor {name!r} has dimension {dim} (more than {MAX_DIM}; "
                             "corrupt file or wrong --input-shape?)")


def _lenient(source: str, sk: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference that leaves what it cannot type untyped; ShapeError when even that fails."""
    try:
        return onnx.shape_inference.infer_shapes(sk, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError, RuntimeError,
            MemoryError) as exc:
        raise ShapeError(f"{source}: shape inference failed: {_first_line(exc)}") from None


def infer(source: str, sk: onnx.ModelProto, check: bool = True) -> Inferred:
    """Run strict shape inference (with data propagation) on the skeleton; fall back to lenient inference
    with a warning when strictness fails only because some values have no type (unknown ops); a real
    conflict is ShapeError. ``check``: run the onnx checker first (its findings become warnings)."""
    warnings: list[str] = []
    try:
        if check:
            onnx.checker.check_model(sk)
    except onnx.checker.ValidationError as exc:
        warnings.append(f"onnx checker: {_first_line(exc)}")
    try:
        result = onnx.shape_inference.infer_shapes(sk, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        problems = [m for m in _INFERENCE_PROBLEM.finditer(str(exc)) if "instead is null" not in m["msg"]]
        if problems:
            p = problems[0]
            raise ShapeError(f"{source}: impossible shapes at node {p['node']!r} ({p['op']}): "
                             f"{p['msg'].strip()}") from None
        warnings.append(f"shape inference incomplete: {_first_line(exc)}")
        result = _lenient(source, sk)
    except onnx.checker.ValidationError as exc:  # e.g. a recursive local function
        raise ShapeError(f"{source}: shape inference refused the model: {_first_line(exc)}") from None
    except (ValueError, RuntimeError, MemoryError) as exc:  # onnx's C++ failing on a malformed graph
        raise ShapeError(f"{source}: shape inference failed: {_first_line(exc)}") from None
    shapes: dict[str, Shape | None] = {}
    dtypes: dict[str, int] = {}
    g = result.graph
    for info in list(g.input) + list(g.value_info) + list(g.output):
        shape = tensor_shape(info.type)
        if shape is not None or info.name not in shapes:
            shapes[info.name] = shape
        dtypes[info.name] = info.type.tensor_type.elem_type
    for tensor in g.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
        dtypes[tensor.name] = tensor.data_type
    for name, shape in shapes.items():
        check_dims(source, name, shape)
    return Inferred(shapes, dtypes, tuple(warnings))


def file_size(source: str) -> int:
    """Size of the model file in bytes."""
    return os.path.getsize(source)


def external_data_size(source: str, model: onnx.ModelProto) -> int:
    """Bytes on disk of the external data files the model's tensors name (each file once; only files
    inside the model's folder, as onnx itself requires; missing files count 0). Nothing is read."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(source)))
    locations = {entry.value for tensor in _tensors(model) if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    total = 0
    for location in locations:
        path = os.path.realpath(os.path.join(folder, location))
        if os.path.commonpath([folder, path]) == folder and os.path.isfile(path):
            total += os.path.getsize(path)
    return total


def _tensors(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
