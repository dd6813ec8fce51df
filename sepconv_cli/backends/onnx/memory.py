"""The memory one run of an ONNX graph would hold, predicted from inferred shapes before it runs.

Shapes come from onnx shape inference (with data propagation) on the skeleton of the model with its
inputs pinned to the shapes of the feeds. The prediction is the peak, over the nodes in dependency order,
of the bytes of the values alive at once (a value lives from the node that makes it to its last reader;
graph outputs to the end), plus every weight (initializers and Constant nodes). Values whose shape stays
unknown, and the insides of Loop/Scan/If bodies, count 0: the runtime's allocator cap bounds those.
Units: bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

import onnx

from sepconv_cli.backends.onnx.graph import infer, skeleton, topological_order
from sepconv_cli.backends.onnx.subgraphs import outer_reads
from sepconv_cli.backends.onnx.weights import dtype_bytes
from sepconv_cli.core.records import Shape, is_static
from sepconv_cli.errors import SepconvError

Feeds = Mapping[str, tuple[tuple[int, ...], int]]
"""Input name -> (shape, ONNX element type) of one run."""


def weight_bytes(graph: onnx.GraphProto) -> int:
    """Bytes of the graph's initializers and Constant tensors (from their dims; no data is read)."""
    tensors = list(graph.initializer)
    tensors += [a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.t.dims]
    return sum(dtype_bytes(t.data_type, prod(t.dims)) for t in tensors if t.data_type in _KNOWN_TYPES)


_KNOWN_TYPES = frozenset(onnx.TensorProto.DataType.values())


def _value_bytes(shapes: dict[str, Shape | None], dtypes: dict[str, int], name: str) -> int:
    shape = shapes.get(name)
    dtype = dtypes.get(name, 0)
    if not is_static(shape) or dtype not in _KNOWN_TYPES or dtype == 0:
        return 0
    return dtype_bytes(dtype, prod(shape))  # type: ignore[arg-type]


def _pinned(model: onnx.ModelProto, feeds: Feeds) -> onnx.ModelProto:
    """The skeleton of ``model`` with each fed input's shape set to the feed's."""
    sk = skeleton(model)
    for info in sk.graph.input:
        if info.name in feeds:
            shape, _ = feeds[info.name]
            tensor_type = info.type.tensor_type
            tensor_type.shape.ClearField("dim")
            for dim in shape:
                tensor_type.shape.dim.add().dim_value = int(dim)
    return sk


def _last_uses(graph: onnx.GraphProto, order: list[int]) -> dict[str, int]:
    """Value name -> position (in ``order``) of its last reader; graph outputs live to the end."""
    last: dict[str, int] = {}
    for position, index in enumerate(order):
        node = graph.node[index]
        for name in list(node.input) + outer_reads(node):
            if name:
                last[name] = position
    for out in graph.output:
        last[out.name] = len(order)
    return last


def peak_activation_bytes(graph: onnx.GraphProto, shapes: dict[str, Shape | None], dtypes: dict[str, int],
                          feeds: Feeds) -> int:
    """Largest sum of the bytes of the values alive at once while the nodes run in dependency order."""
    order = topological_order("", graph)
    last = _last_uses(graph, order)
    live = {name: dtype_bytes(elem, prod(shape)) for name, (shape, elem) in feeds.items()
            if elem in _KNOWN_TYPES}
    frees: dict[int, list[str]] = {}
    for name, position in last.items():
        frees.setdefault(position, []).append(name)
    total = peak = sum(live.values())
    for position, index in enumerate(order):
        for out in graph.node[index].output:
            if out and out not in live:
                live[out] = _value_bytes(shapes, dtypes, out)
                total += live[out]
        peak = max(peak, total)
        for name in frees.get(position, ()):
            total -= live.pop(name, 0)
    return peak


def predicted_bytes(model: onnx.ModelProto, feeds: Feeds) -> int | None:
    """Bytes one run of ``model`` on inputs shaped as ``feeds`` would hold, or None when its shapes cannot
    be inferred (the runtime cap still bounds the run)."""
    try:
        sk = _pinned(model, feeds)
        inferred = infer("", sk, check=False)
        activations = peak_activation_bytes(sk.graph, inferred.shapes, inferred.dtypes, feeds)
    except (SepconvError, ValueError, TypeError, RecursionError, onnx.shape_inference.InferenceError):
        return None
    return activations + weight_bytes(model.graph)


__all__ = ["Feeds", "peak_activation_bytes", "predicted_bytes", "weight_bytes"]
