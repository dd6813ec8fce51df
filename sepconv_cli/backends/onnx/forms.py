"""Equivalent graphs for a converted layer of rank T > 1 (DESIGN §4): same function, faster runtime paths.

The rewriter emits, for converted layer ``N`` with output ``Y``, a depthwise conv with depth multiplier T
(node ``N/depthwise``, output ``Y/depthwise``, channel ``i*T+t``) and a 1x1 pointwise conv ``N/pointwise``
(``Form.MULTIPLIER``). onnxruntime runs a multiplier-T depthwise conv through its generic grouped path;
these forms compute the same function with multiplier-1 depthwise convs, which it runs fast:

- ``Form.TILED``: node ``N/tile`` (Concat of the input T times, output ``Y/tile``) then ``N/depthwise``
  with ``group = Cin*T`` over channel ``t*Cin+i`` (weight ``N/depthwise.weight`` reordered in place);
- ``Form.PARALLEL``: nodes ``N/depthwise/t{t}`` (kernel slice t, weights ``N/depthwise/t{t}.weight``,
  outputs ``Y/depthwise/t{t}``) and ``N/concat`` joining them t-major into ``Y/depthwise``.

In both, ``Y/depthwise`` holds channel ``t*Cin+i``, so the columns of ``N/pointwise.weight`` (and a
depthwise bias) are permuted to match; ``N/pointwise`` and ``Y`` are untouched. Both need an ungrouped
pointwise conv: asking for them on a grouped layer is a RewriteError (the multiplier form is the only
equivalent one there). At T = 1 every form is the multiplier-1 conv and the layer is left as it is.
Works for Conv and ConvTranspose depthwise nodes, any number of spatial dims; weights stay in their dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import external_data_helper, helper, numpy_helper

from sepconv_cli.backends.onnx import edit as g
from sepconv_cli.backends.onnx.subgraphs import walk_nodes
from sepconv_cli.core.latency import Form, valid_forms
from sepconv_cli.errors import RewriteError

__all__ = ["Form", "lower", "valid_forms"]


@dataclass(frozen=True)
class _Layer:
    """A converted layer found in the graph: its two nodes, rank and weights (depthwise as ``(Cin, T, *k)``)."""

    name: str
    depthwise: onnx.NodeProto
    pointwise: onnx.NodeProto
    rank: int
    weight: np.ndarray
    bias: np.ndarray | None  # depthwise bias as (Cin, T)
    pointwise_weight: np.ndarray


@dataclass(frozen=True)
class _Lowered:
    """What replaces one layer's depthwise node: new nodes (in order), tensors set or added, tensors dropped."""

    nodes: tuple[onnx.NodeProto, ...]
    tensors: tuple[onnx.TensorProto, ...]
    dropped: tuple[str, ...] = ()
    new_nodes: tuple[str, ...] = ()  # node names the form creates
    new_tensors: tuple[str, ...] = ()  # tensor names the form creates (outputs and initializers)


def _initializer(inits: dict[str, onnx.TensorProto], name: str, layer: str, base_dir: str) -> np.ndarray:
    if name not in inits:
        raise RewriteError(f"{layer}: {name!r} is not an initializer of the model; it cannot be restructured")
    tensor = inits[name]
    if external_data_helper.uses_external_data(tensor) and not base_dir:
        raise RewriteError(f"{layer}: {name!r} is stored as external data; load it first or give its folder")
    return numpy_helper.to_array(tensor, base_dir)


def _readers(graph: onnx.GraphProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in walk_nodes(graph):
        for name in node.input:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _check_private(graph: onnx.GraphProto, name: str, tensors: list[str]) -> None:
    """RewriteError unless every tensor in ``tensors`` has exactly one reader and is no graph output."""
    readers, outputs = _readers(graph), {o.name for o in graph.output}
    for tensor in tensors:
        if tensor and (readers.get(tensor, 0) != 1 or tensor in outputs):
            raise RewriteError(f"{name}: {tensor!r} is used outside the layer; its channels cannot be reordered")


def _find(graph: onnx.GraphProto, name: str) -> tuple[onnx.NodeProto, onnx.NodeProto, int]:
    """The depthwise and pointwise nodes of converted layer ``name`` and its rank (read from the weight's
    dims, no bytes loaded); RewriteError when the graph does not hold the rewriter's structure."""
    nodes = {n.name: n for n in graph.node}
    dw, pw = nodes.get(f"{name}/depthwise"), nodes.get(f"{name}/pointwise")
    if dw is None or pw is None or dw.op_type not in ("Conv", "ConvTranspose") or pw.op_type != "Conv":
        raise RewriteError(f"{name}: no converted layer of that name (nodes {name}/depthwise and "
                           f"{name}/pointwise expected)")
    if pw.input[0] != dw.output[0]:
        raise RewriteError(f"{name}: {name}/pointwise does not read {name}/depthwise's output")
    dims = next((tuple(t.dims) for t in graph.initializer if t.name == dw.input[1]), None)
    if dims is None:
        raise RewriteError(f"{name}: {dw.input[1]!r} is not an initializer of the model; it cannot be restructured")
    cin = int(g.attrs(dw).get("group", 1))
    transposed = dw.op_type == "ConvTranspose"
    rank = dims[1] if transposed else dims[0] // max(cin, 1)
    if len(dims) < 3 or dims[0] != (cin if transposed else cin * rank) or (not transposed and dims[1] != 1):
        raise RewriteError(f"{name}: {name}/depthwise is not a depthwise conv (group {cin}, weight {dims})")
    return dw, pw, rank


def _layer(graph: onnx.GraphProto, name: str, found: tuple[onnx.NodeProto, onnx.NodeProto, int],
           base_dir: str) -> _Layer:
    """The layer with its weights read (depthwise as ``(Cin, T, *k)``, its bias as ``(Cin, T)``)."""
    dw, pw, rank = found
    inits = {t.name: t for t in graph.initializer}
    weight = _initializer(inits, dw.input[1], name, base_dir)
    cin = int(g.attrs(dw).get("group", 1))
    has_bias = len(dw.input) > 2 and bool(dw.input[2])
    bias = _initializer(inits, dw.input[2], name, base_dir).reshape(cin, rank) if has_bias else None
    return _Layer(name=name, depthwise=dw, pointwise=pw, rank=rank,
                  weight=weight.reshape(cin, rank, *weight.shape[2:]), bias=bias,
                  pointwise_weight=_initializer(inits, pw.input[1], name, base_dir))


def _t_major(layer: _Layer) -> onnx.TensorProto:
    """The pointwise weight with its columns in the t-major order ``t*Cin+i`` (was ``i*T+t``)."""
    pw = layer.pointwise_weight
    cin = layer.weight.shape[0]
    cols = pw.reshape(pw.shape[0], cin, layer.rank, *pw.shape[2:]).swapaxes(1, 2).reshape(pw.shape)
    return numpy_helper.from_array(np.ascontiguousarray(cols), layer.pointwise.input[1])


def _depthwise(layer: _Layer, inputs: list[str], output: str, name: str, group: int) -> onnx.NodeProto:
    """A copy of the layer's depthwise node with new inputs, output, name and group."""
    attrs = {k: v for k, v in g.attrs(layer.depthwise).items() if k != "group"}
    return helper.make_node(layer.depthwise.op_type, inputs, [output], name=name, group=group, **attrs)


def _keep(layer: _Layer) -> _Lowered:
    return _Lowered(nodes=(layer.depthwise,), tensors=())


def _tiled(layer: _Layer) -> _Lowered:
    cin, rank, dw = layer.weight.shape[0], layer.rank, layer.depthwise
    out = dw.output[0]
    tile = helper.make_node("Concat", [dw.input[0]] * rank, [f"{layer.pointwise.output[0]}/tile"],
                            name=f"{layer.name}/tile", axis=1)
    weight = layer.weight.swapaxes(0, 1).reshape(cin * rank, 1, *layer.weight.shape[2:])
    tensors = [numpy_helper.from_array(np.ascontiguousarray(weight), dw.input[1]), _t_major(layer)]
    inputs = [tile.output[0], dw.input[1]]
    if layer.bias is not None:
        tensors.append(numpy_helper.from_array(np.ascontiguousarray(layer.bias.T.reshape(-1)), dw.input[2]))
        inputs.append(dw.input[2])
    return _Lowered(nodes=(tile, _depthwise(layer, inputs, out, dw.name, cin * rank)), tensors=tuple(tensors),
                    new_nodes=(tile.name,), new_tensors=(tile.output[0],))


def _parallel(layer: _Layer) -> _Lowered:
    cin, dw = layer.weight.shape[0], layer.depthwise
    nodes, tensors, parts = [], [_t_major(layer)], []
    for t in range(layer.rank):
        node_name, part = f"{layer.name}/depthwise/t{t}", f"{dw.output[0]}/t{t}"
        tensors.append(numpy_helper.from_array(np.ascontiguousarray(layer.weight[:, t:t + 1]), f"{node_name}.weight"))
        inputs = [dw.input[0], tensors[-1].name]
        if layer.bias is not None:
            tensors.append(numpy_helper.from_array(np.ascontiguousarray(layer.bias[:, t]), f"{node_name}.bias"))
            inputs.append(tensors[-1].name)
        nodes.append(_depthwise(layer, inputs, part, node_name, cin))
        parts.append(part)
    nodes.append(helper.make_node("Concat", parts, [dw.output[0]], name=f"{layer.name}/concat", axis=1))
    return _Lowered(nodes=tuple(nodes), tensors=tuple(tensors), dropped=tuple(n for n in dw.input[1:] if n),
                    new_nodes=tuple(n.name for n in nodes),
                    new_tensors=tuple(parts) + tuple(t.name for t in tensors[1:]))


LOWERINGS: dict[Form, Callable[[_Layer], _Lowered]] = {
    Form.MULTIPLIER: _keep,  # what the rewriter emits
    Form.TILED: _tiled,
    Form.PARALLEL: _parallel,
}


def _lowered(graph: onnx.GraphProto, name: str, form: Form, base_dir: str) -> _Lowered | None:
    """The replacement of layer ``name``'s depthwise node, or None when the layer stays as it is."""
    dw, pw, rank = found = _find(graph, name)
    if rank == 1 or form is Form.MULTIPLIER:
        return None
    groups = int(g.attrs(pw).get("group", 1))
    if form not in valid_forms(rank, groups):
        raise RewriteError(f"{name}: the {form.value} form needs an ungrouped pointwise conv (it has group={groups}); "
                           "only the multiplier form is equivalent here")
    _check_private(graph, name, [dw.output[0], *dw.input[1:], pw.input[1]])
    return LOWERINGS[form](_layer(graph, name, found, base_dir))


def _form(name: str, form: Form | str) -> Form:
    try:
        return Form(form)
    except ValueError:
        raise RewriteError(f"{name}: unknown form {form!r} (one of {', '.join(f.value for f in Form)})") from None


def _check_new_names(graph: onnx.GraphProto, name: str, lowered: _Lowered) -> None:
    """RewriteError when a name the form creates already names a node or tensor of the graph."""
    nodes, tensors = {n.name for n in walk_nodes(graph)}, g.tensor_names(graph)
    for new, taken in ((lowered.new_nodes, nodes), (lowered.new_tensors, tensors)):
        for clash in [n for n in new if n in taken]:
            raise RewriteError(f"{name}: generated name {clash!r} already exists in the graph")


def lower(model: onnx.ModelProto, choices: Mapping[str, Form | str], base_dir: str = "") -> onnx.ModelProto:
    """A copy of converted ``model`` with each layer named in ``choices`` restructured into its form.

    ``base_dir``: folder of the model file, needed only when a converted layer's weights are still external
    data. Everything else (opset, graph inputs/outputs, other nodes and initializers, external-data
    references of untouched tensors, metadata) is kept. RewriteError when a layer is missing, not in the
    rewriter's structure, grouped (for TILED/PARALLEL), or a generated name is taken.
    """
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    by_node: dict[str, _Lowered] = {}
    for name, form in choices.items():
        lowered = _lowered(graph, name, _form(name, form), base_dir)
        if lowered is not None:
            _check_new_names(graph, name, lowered)
            by_node[f"{name}/depthwise"] = lowered
    _splice(graph, by_node)
    return result


def _splice(graph: onnx.GraphProto, by_node: dict[str, _Lowered]) -> None:
    """Put every lowered layer in place of its depthwise node; replace, add and drop initializers."""
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes.extend(by_node[node.name].nodes if node.name in by_node else (node,))
    del graph.node[:]
    graph.node.extend(nodes)
    tensors = {t.name: t for lowered in by_node.values() for t in lowered.tensors}
    dropped = {n for lowered in by_node.values() for n in lowered.dropped}
    kept = [tensors.pop(t.name, t) for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept + list(tensors.values()))
    if dropped:
        g.drop_unused(graph, dropped)
