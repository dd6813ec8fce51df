"""ONNX rewrite backend: each planned Conv/ConvTranspose becomes depthwise -> 1x1 pointwise.

For a converted node ``N`` with output ``Y`` the result holds node ``N/depthwise`` (output ``Y/depthwise``,
weight ``N/depthwise.weight``, optional ``N/depthwise.bias``) and node ``N/pointwise`` producing ``Y``
(weights ``N/pointwise.weight`` and, when the original or BN-folded conv had a bias, ``N/pointwise.bias``).
A folded BatchNorm node disappears; its readers read ``Y`` (or an Identity keeps a graph output's name).
Graph inputs/outputs, untouched nodes, opset, metadata and symbolic dims stay as they were. Weights are
factored in float64 (``decompose``) and cast back to the stored weight dtype.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sepconv_cli.backends.base import Converted, ConvertOptions, LoadedModel, Runner
from sepconv_cli.backends.limits import RunLimits, RunRefused
from sepconv_cli.backends.limits import active as active_limits
from sepconv_cli.backends.onnx import edit as g
from sepconv_cli.backends.onnx.files import is_valid, too_big, validate_path
from sepconv_cli.backends.onnx.session import SessionSettings, make_session
from sepconv_cli.core import decompose
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.core.records import ConvSpec
from sepconv_cli.core.weights import ConvWeights
from sepconv_cli.cpu import usable_cores
from sepconv_cli.errors import RewriteError


@dataclass
class OnnxConverted(Converted):
    """A converted ONNX model; ``external_data`` says whether the source kept weights in side files."""

    external_data: bool = False
    source: str = ""


@dataclass(frozen=True)
class _Replacement:
    """The nodes and initializers standing in for one conv, and the names the rewrite made unused."""

    nodes: tuple[onnx.NodeProto, ...]
    initializers: tuple[onnx.TensorProto, ...]
    freed: tuple[str, ...]
    bn_node: int | None
    planned: PlannedLayer


def _source_model(loaded: LoadedModel) -> onnx.ModelProto:
    """A private copy of the loaded model with every weight byte in memory."""
    model = onnx.ModelProto()
    if loaded.native is not None:
        model.CopyFrom(loaded.native)
    else:
        model = onnx.load(loaded.report.model.path, load_external_data=False)
    g.load_missing_external_data(model, loaded.report.model.path)
    return model


def _check_constant(graph: onnx.GraphProto, node: onnx.NodeProto, name: str) -> None:
    """RewriteError when the weight (or bias) is a graph input rather than a constant."""
    inits = {t.name for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    for tensor in node.input[1:3]:
        if tensor and tensor in inputs and tensor not in inits:
            raise RewriteError(f"{name}: weight {tensor!r} is a graph input, not a constant; it cannot be converted")


def _factors(w64: np.ndarray, spec: ConvSpec, rank: int, options: ConvertOptions) -> decompose.Factors:
    """SVD factors of the (folded) kernel, or fresh ones for ``--init random``."""
    if options.init == "random":
        return decompose.random_factors(spec, rank, options.seed)
    return decompose.decompose(w64, spec.groups, rank, spec.transposed)


def _realised(planned: PlannedLayer, w64: np.ndarray, factors: decompose.Factors, spec: ConvSpec,
              options: ConvertOptions) -> PlannedLayer:
    """The planned layer with its energy and weight error measured on the factors actually written."""
    if options.init == "random":
        return replace(planned, energy=None, weight_error=None)
    if planned.energy is not None and planned.weight_error is not None:
        return planned  # the planner measured the same folded kernel
    approx = decompose.recompose(factors, spec.groups, spec.transposed)
    norm = float(np.linalg.norm(w64))
    err = float(np.linalg.norm(w64 - approx)) / norm if norm > 0 else 0.0
    return replace(planned, energy=max(0.0, 1.0 - err * err), weight_error=err)


def _tensor(array: np.ndarray, name: str, dtype: np.dtype) -> onnx.TensorProto:
    """``array`` cast to the model's ``dtype`` as an initializer; RewriteError when a value overflows it."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = np.ascontiguousarray(array.astype(dtype))
    if cast.dtype.kind == "f" and not np.isfinite(cast).all():
        raise RewriteError(f"{name}: the separable factors overflow {np.dtype(dtype).name} (weights near its largest "
                           "value); this layer cannot be converted")
    return numpy_helper.from_array(cast, name)


def _bn_node(graph: onnx.GraphProto, bn_name: str, conv_out: str) -> int:
    """Index of the BatchNormalization node called ``bn_name`` that reads ``conv_out``."""
    index = g.nodes_by_layer(graph).get(bn_name)
    node = graph.node[index] if index is not None else None
    if node is None or node.op_type != "BatchNormalization" or node.input[0] != conv_out:
        raise RewriteError(f"BatchNorm {bn_name!r} to fold does not read {conv_out!r}")
    return index


def _replace_one(model: onnx.ModelProto, index: int, planned: PlannedLayer, weights: ConvWeights,
                 spec: ConvSpec, options: ConvertOptions) -> _Replacement:
    """Build the depthwise + pointwise pair for the node at ``index`` (graph not yet modified)."""
    graph = model.graph
    node = graph.node[index]
    name, out = planned.name, node.output[0]
    bn = weights.bn if options.fold_bn and planned.bn_folded else None  # fold what the plan counted
    bn_index = _bn_node(graph, bn.name, out) if bn is not None else None
    w64, b64 = decompose.fold_batchnorm(ConvWeights(weights.weight, weights.bias, bn), spec.groups, spec.transposed)
    factors = _factors(w64, spec, planned.rank, options)
    dtype = weights.weight.dtype
    if options.init == "random" and b64 is not None:
        b64 = np.zeros_like(b64)
    inits = [_tensor(factors.depthwise, f"{name}/depthwise.weight", dtype),
             _tensor(factors.pointwise, f"{name}/pointwise.weight", dtype)]
    dw_inputs = [node.input[0], inits[0].name]
    if options.depthwise_bias:
        dw_bias = np.zeros(spec.in_channels * planned.rank)
        inits.append(_tensor(dw_bias, f"{name}/depthwise.bias", dtype))
        dw_inputs.append(inits[-1].name)
    pw_inputs = [f"{out}/depthwise", inits[1].name]
    if b64 is not None:
        inits.append(_tensor(b64, f"{name}/pointwise.bias", dtype))
        pw_inputs.append(inits[-1].name)
    kept = {k: v for k, v in g.attrs(node).items() if k in g.INHERITED_ATTRS}
    depthwise = helper.make_node(node.op_type, dw_inputs, [f"{out}/depthwise"], name=f"{name}/depthwise",
                                 kernel_shape=list(spec.kernel), group=spec.in_channels, **kept)
    pointwise = helper.make_node("Conv", pw_inputs, [out], name=f"{name}/pointwise",
                                 kernel_shape=[1] * len(spec.kernel), group=spec.groups)
    freed = tuple(node.input[1:]) + (tuple(graph.node[bn_index].input[1:]) if bn_index is not None else ())
    planned = replace(_realised(planned, w64, factors, spec, options), bn_folded=bn.name if bn else None)
    return _Replacement((depthwise, pointwise), tuple(inits), freed, bn_index, planned)


def _splice(model: onnx.ModelProto, done: dict[int, _Replacement]) -> list[str]:
    """Put every replacement in place of its node, drop folded BNs, rewire; returns folded BN names."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    bn_drop = {r.bn_node: r for r in done.values() if r.bn_node is not None}
    names = g.layer_names(graph)
    new_nodes, folded, renames = [], [], []
    for i, node in enumerate(graph.node):
        if i in done:
            new_nodes.extend(done[i].nodes)
        elif i in bn_drop:
            folded.append(names[i])
            conv_out, bn_out = node.input[0], node.output[0]
            if bn_out in outputs:  # graph outputs keep their names
                new_nodes.append(helper.make_node("Identity", [conv_out], [bn_out], name=node.name))
            else:
                renames.append((bn_out, conv_out))
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    for old, new in renames:
        g.rename_uses(graph, old, new)
    dropped = {old for old, _ in renames}
    kept_info = [v for v in graph.value_info if v.name not in dropped]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    for rep in done.values():
        graph.initializer.extend(rep.initializers)
    g.drop_unused(graph, [n for rep in done.values() for n in rep.freed])
    return folded


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_collisions(graph: onnx.GraphProto, reps: dict[int, _Replacement]) -> None:
    """RewriteError when a generated name already names another tensor of the graph."""
    existing = g.tensor_names(graph)
    for rep in reps.values():
        for name in [rep.nodes[0].output[0]] + [t.name for t in rep.initializers]:
            if name in existing:
                raise RewriteError(f"{rep.planned.name}: generated tensor name {name!r} already exists in the graph")


class OnnxBackend:
    """Rewrite, run and save ONNX models (see the module docstring for the naming contract)."""

    suffixes = (".onnx",)

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> OnnxConverted:
        """The converted model (``loaded`` is left untouched); ``options.progress`` hears of each layer."""
        model = _source_model(loaded)
        external = g.has_external_data(loaded.native) if loaded.native is not None else False
        positions = g.nodes_by_layer(model.graph)
        reps: dict[int, _Replacement] = {}
        for planned in plan.layers:
            reps_index = self._locate(model, positions, planned.name)
            weights = loaded.handle.conv_weights(planned.name)
            if weights is None:
                raise RewriteError(f"{planned.name}: weight is not a constant of the model; it cannot be converted")
            spec = loaded.report.layer(planned.name).conv
            reps[reps_index] = _replace_one(model, reps_index, planned, weights, spec, options)
            options.layer_done(planned.name)
        _check_collisions(model.graph, reps)
        folded = _splice(model, reps)
        realised = replace(plan, layers=tuple(r.planned for r in reps.values()))
        return OnnxConverted(native=model, plan=realised, folded_bn=tuple(folded), external_data=external,
                             source=loaded.report.model.path)

    @staticmethod
    def _locate(model: onnx.ModelProto, positions: dict[str, int], name: str) -> int:
        """Position of the conv node of layer ``name`` (RewriteError if absent or not convertible)."""
        if name not in positions:
            raise RewriteError(f"{name}: no such node in the graph")
        index = positions[name]
        node = model.graph.node[index]
        if node.op_type not in ("Conv", "ConvTranspose"):
            raise RewriteError(f"{name}: is a {node.op_type}, not a Conv or ConvTranspose")
        _check_constant(model.graph, node, name)
        return index

    def source(self, loaded: LoadedModel) -> Any:
        """The file itself (its external data stays on disk), or the in-memory model without a file."""
        path = loaded.report.model.path
        return path if path and os.path.isfile(path) else loaded.native

    def output_source(self, converted: Converted, path: str) -> Any:
        """The written file (what users will load, external data included)."""
        return path

    def runner(self, model: Any, threads: int | None = None, limits: RunLimits | None = None) -> Runner:
        """A reusable callable running ``model`` (ModelProto or path) in onnxruntime on the CPU
        (``threads``: intra-op threads; None = the cores this process may use), bounded by ``limits``
        (None: the command's, ``limits.active()``): the graph is untrusted."""
        # onnxruntime sizes its pool by the host's cores, not this process's CPU set; oversubscribed
        # spinning threads distort both verification time and latency figures.
        settings = SessionSettings(threads=threads or usable_cores())
        label = model if isinstance(model, (str, os.PathLike)) else "the converted model"
        try:
            session = make_session(model, settings, limits or active_limits())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise RewriteError(f"{label}: onnxruntime cannot load it ({_first_line(exc)}); "
                               "--no-verify skips running it") from None
        feeds = {i.name for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            try:
                values = session.run(names, {k: v for k, v in inputs.items() if k in feeds})
            except RunRefused:
                raise
            except Exception as exc:  # noqa: BLE001
                raise RewriteError(f"{label}: onnxruntime failed to run it: {_first_line(exc)}") from None
            return dict(zip(names, values))

        return run

    def run(self, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs of ``model`` (ModelProto or path) on ``inputs``, by output name."""
        return self.runner(model)(inputs)

    def save(self, converted: Converted, path: str, input_shapes: dict | None = None) -> None:
        """Write ``converted`` to ``path`` (external data beside it when the source had some or the model
        exceeds 2 GB), then validate it by path: full checker and strict shape inference."""
        model = converted.native
        external = bool(getattr(converted, "external_data", False)) or too_big(model)
        if external:
            # Saving as external data empties the proto's raw_data; reading it back restores the model in
            # memory without holding a second copy of every weight (models over 2 GB).
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=os.path.basename(path) + ".data", size_threshold=1024)
            g.load_missing_external_data(model, path)
        else:
            onnx.save_model(model, path)
        try:
            validate_path(path)
        except RewriteError:
            source = getattr(converted, "source", "")
            if not source or is_valid(source):
                raise  # the rewrite broke a model that was valid


BACKEND = OnnxBackend()


def lower_converted(converted: OnnxConverted, forms: dict[str, str]) -> OnnxConverted:
    """``converted`` with each named layer restructured into its form (``forms.lower``); same plan."""
    from sepconv_cli.backends.onnx.forms import lower

    base_dir = os.path.dirname(converted.source) if converted.source else ""
    return replace(converted, native=lower(converted.native, forms, base_dir))
