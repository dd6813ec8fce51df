"""ONNX loader: a ``.onnx`` file -> ``LoadedModel`` (report rows, totals, and a weights handle).

Never imports torch. Weight bytes are not touched while counting (external data stays on disk); the
handle reads a conv's kernel, bias and following BatchNorm only when a planner or rewriter asks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import onnx

from sepconv_cli.backends.base import LoadedModel, LoadOptions
from sepconv_cli.backends.onnx.counting import Counter, unresolved
from sepconv_cli.backends.onnx.dims import Dims, assume_batch, free_dims
from sepconv_cli.backends.onnx.graph import (
    Inferred,
    check_dims,
    external_data_size,
    file_size,
    infer,
    pin_inputs,
    read_model,
    skeleton,
    tensor_shape,
    topological_order,
)
from sepconv_cli.backends.onnx.layers import (
    GraphFacts,
    consumers_of,
    layer_names,
    uncounted,
)
from sepconv_cli.backends.onnx.totals import WeightTotals, totals
from sepconv_cli.backends.onnx.weights import WeightCatalogue, dtype_name
from sepconv_cli.core.records import Layer, ModelInfo, Report, Shape, SymbolicMacs, TensorInfo
from sepconv_cli.core.weights import BatchNormParams, ConvWeights

FORMAT = "onnx"


class OnnxHandle:
    """Weights of an ONNX model's conv rows, read lazily (external data included)."""

    def __init__(self, model: onnx.ModelProto, catalogue: WeightCatalogue, layers: tuple[Layer, ...],
                 names: list[str]):
        self._catalogue = catalogue
        self._bn_follows = {layer.name: layer.bn_follows for layer in layers if layer.conv is not None}
        self._nodes = {name: node for name, node in zip(names, model.graph.node)}

    def conv_weights(self, name: str) -> ConvWeights | None:
        """Kernel and bias as stored, plus the BatchNorm that solely reads the output when its tensors
        are constants; None when ``name`` is not a conv row or its weight/bias is computed at run time."""
        if name not in self._bn_follows:
            return None
        node = self._nodes[name]
        weight = self._catalogue.array(node.input[1])
        has_bias = len(node.input) > 2 and bool(node.input[2])
        bias = self._catalogue.array(node.input[2]) if has_bias else None
        if weight is None or (has_bias and bias is None):
            return None
        bn_name = self._bn_follows[name]
        return ConvWeights(weight=weight, bias=bias, bn=self._batchnorm(bn_name) if bn_name else None)

    def _batchnorm(self, name: str) -> BatchNormParams | None:
        node = self._nodes[name]
        found = [self._catalogue.array(n) for n in node.input[1:5]]
        arrays = [a for a in found if a is not None]
        if len(arrays) != 4:
            return None
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = arrays
        return BatchNormParams(name=name, gamma=gamma, beta=beta, mean=mean, var=var, eps=float(eps))


def load_onnx(source: str, options: LoadOptions) -> LoadedModel:
    """Analyse the ONNX file ``source``: one row per node, unique weight totals, shapes from inference
    (``options.input_shapes`` pins dynamic dims; a dynamic batch is taken as 1; other symbolic dims get a
    formula; shapes inference cannot resolve come from one bounded onnxruntime run)."""
    model = read_model(source)
    graph = model.graph
    order = topological_order(source, graph)
    _check_declared_dims(source, graph)
    catalogue = WeightCatalogue(model, order, os.path.dirname(os.path.abspath(source)))
    input_names = [i.name for i in graph.input if i.name not in catalogue.sources]
    sk = skeleton(model)
    pin_inputs(source, sk, options.input_shapes, input_names)
    assumed = assume_batch(sk, input_names, {name or input_names[0] for name, _ in options.input_shapes})
    dims = free_dims(sk, input_names)
    inferred = infer(source, sk)
    weights = totals(catalogue, model, order)
    names = layer_names(graph)
    facts = GraphFacts(
        source=source, shapes=inferred.shapes, catalogue=catalogue, names=names,
        consumers=consumers_of(graph), graph_outputs=frozenset(o.name for o in graph.output), kinds=weights.kinds,
        bn_inputs={i: n.input[0] for i, n in enumerate(graph.node) if n.op_type == "BatchNormalization"},
        overridable=_overridable(model),
    )
    counter = Counter(graph, order, facts)
    counted = _count(counter, sk, dims, inferred)
    layers = counted.layers
    external = external_data_size(source, model)
    info = ModelInfo(
        path=source, format=FORMAT, file_size=file_size(source) + external,
        inputs=tuple(_tensor_info(n, inferred.shapes, inferred.dtypes) for n in input_names),
        outputs=tuple(_tensor_info(o.name, inferred.shapes, inferred.dtypes) for o in graph.output),
        assumed_dims=assumed, external_data_size=external, shape_source=counted.source,
    )
    report = Report(
        model=info, layers=layers, params=weights.params, buffers=weights.buffers,
        weight_bytes=weights.weight_bytes, uncounted=uncounted(layers),
        warnings=inferred.warnings + _unknown_warning(layers, counted) + _unused_warning(weights),
        extra=(("nodes", len(graph.node)), ("weight_tensors", len(catalogue.sources)))
        + ((("scalar_constants", weights.scalars),) if weights.scalars else ())
        + ((("config_constants", weights.config),) if weights.config else ()),
        macs_symbolic=counted.macs,
    )
    handle = OnnxHandle(model, catalogue, layers, names)
    return LoadedModel(report=report, handle=handle, native=model)


@dataclass(frozen=True)
class _Counted:
    layers: tuple[Layer, ...]
    macs: SymbolicMacs | None = None
    source: str = ""
    problem: str = ""


def _count(counter: Counter, sk: onnx.ModelProto, dims: Dims, inferred: Inferred) -> _Counted:
    """Rows at the pinned sizes (probing once if inference leaves shapes out), or with a formula in the
    symbols that stay free."""
    if not dims.symbols:
        counted = counter.at(sk, inferred)
        problem = (f"static inference left them unknown and the onnxruntime probe did not run ({counted.problem})"
                   if counted.problem else "")
        return _Counted(counted.layers, None, counted.source, problem)
    from sepconv_cli.backends.onnx.symbolic import fit_macs  # only models with symbolic dims need the fit

    layers = counter.rows(inferred.shapes)
    fitted = fit_macs(counter, sk, dims, layers)
    return _Counted(fitted.layers, fitted.macs, fitted.source, fitted.problem)


def _overridable(model: onnx.ModelProto) -> frozenset[str]:
    """Initializers that are also graph inputs in an IR >= 4 file: defaults a caller may override. (IR < 4
    had to list every initializer as an input, so there the listing means nothing.)"""
    if model.ir_version < 4:
        return frozenset()
    inits = {t.name for t in model.graph.initializer}
    return frozenset(i.name for i in model.graph.input if i.name in inits)


def _check_declared_dims(source: str, graph: onnx.GraphProto) -> None:
    """Absurd dims written in the file itself (inputs, outputs, initializers) are a ShapeError."""
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        check_dims(source, info.name, tensor_shape(info.type))
    for tensor in graph.initializer:
        check_dims(source, tensor.name, tuple(int(d) for d in tensor.dims))


def _tensor_info(name: str, shapes: dict[str, Shape | None], dtypes: dict[str, int]) -> TensorInfo:
    dtype = dtypes.get(name, 0)
    return TensorInfo(name=name, shape=shapes.get(name), dtype=dtype_name(dtype) if dtype else "?")


def _unused_warning(weights: WeightTotals) -> tuple[str, ...]:
    if not weights.unused:
        return ()
    shown = ", ".join(weights.unused[:3]) + (", ..." if len(weights.unused) > 3 else "")
    return (f"{len(weights.unused)} weight tensor(s) read by no node ({shown}; {weights.unused_elements:,} "
            "elements): not counted as params",)


def _unknown_warning(layers: tuple[Layer, ...], counted: _Counted) -> tuple[str, ...]:
    """One warning naming the rows whose MACs stay unknown, and why."""
    unknown = [layer.name for layer in unresolved(layers)]
    if not unknown:
        return ()
    shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
    if counted.problem:
        reason = counted.problem
    elif counted.source:
        reason = "their shapes depend on the data, which a run on zeros cannot tell"
    else:
        reason = "pin dynamic dims with --input-shape"
    return (f"{len(unknown)} row(s) not counted because shapes are unknown ({shown}): {reason}",)


__all__ = ["FORMAT", "OnnxHandle", "load_onnx"]
