"""Per-layer error-versus-rank curves of an ONNX model from one walk of the original graph.

The graph is walked a chunk of samples at a time (``segments.Walker``); at the cut before each candidate
conv its input is live, and the conv's rank-Tmax depthwise factor runs on it as a stand-alone node (the
conv's own strides, pads, dilations, with ``group = Cin``), giving ``Z``; the walk then goes on past the
layer's output (or the folded BatchNorm's), ``Y``. The normal equations and the per-rank solves are
``calibration.curves``'. Cost: one forward pass of the original plus one depthwise conv per candidate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sepconv_cli.backends.onnx.calibrate import constant
from sepconv_cli.backends.onnx.edit import INHERITED_ATTRS, attrs, load_missing_external_data, nodes_by_layer
from sepconv_cli.backends.onnx.probe import Runner
from sepconv_cli.backends.onnx.segments import Walker
from sepconv_cli.calibration.curves import CurveCandidate, LayerCurve, blocks, collect_curves
from sepconv_cli.calibration.loop import make_chunks
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.cpu import usable_cores
from sepconv_cli.errors import InputError, RewriteError

_KERNEL = "sepconv.curves.kernel"


def _depthwise_node(conv: onnx.NodeProto, channels: int) -> onnx.NodeProto:
    """``conv``'s geometry as a depthwise node over ``channels`` inputs reading ``_KERNEL`` (no bias)."""
    kept = {k: v for k, v in attrs(conv).items() if k in INHERITED_ATTRS + ("kernel_shape",)}
    return helper.make_node(conv.op_type, [conv.input[0], _KERNEL], [f"{conv.output[0]}/curves"],
                            name=f"{conv.name}/curves", group=channels, **kept)


class _Layer:
    """Where candidate ``c`` sits in the walked graph and how its ``Z`` is computed."""

    def __init__(self, walker: Walker, graph: onnx.GraphProto, c: CurveCandidate):
        layers = nodes_by_layer(graph)
        if c.name not in layers:
            raise RewriteError(f"{c.name}: not a layer of the graph")
        conv = graph.node[layers[c.name]]
        self.name, self.cut = c.name, layers[c.name]
        bn = graph.node[layers[c.bn_folded]] if c.bn_folded else None
        self.target = (bn if bn is not None else conv).output[0]
        self.done = walker.producer(self.target) + 1
        kernel = c.depthwise()
        dtype = np.asarray(constant(graph, conv.input[1])).dtype
        self.weight = numpy_helper.from_array(np.ascontiguousarray(kernel.astype(dtype)), _KERNEL)
        self.node = _depthwise_node(conv, kernel.shape[0] if c.transposed else c.weight.shape[1] * c.groups)
        self.run = None

    def z(self, walker: Walker, index: int) -> np.ndarray:
        if self.run is None:
            self.run = walker.run_nodes([self.node], [self.node.output[0]], [self.weight])
        return self.run(index)[0]


def _pairs(walker: Walker, layers: list[_Layer], chunks: int) -> Iterator[tuple[int, str, np.ndarray, np.ndarray]]:
    """(chunk, name, Z, Y) for every layer and chunk: all chunks through a layer before the next layer."""
    events = [(layer.cut, 0, i) for i, layer in enumerate(layers)] + \
             [(layer.done, 1, i) for i, layer in enumerate(layers)]
    for block in blocks(events):
        for index in range(chunks):
            pending: dict[int, np.ndarray] = {}
            for stop, kind, i in block:
                layer = layers[i]
                taken = walker.advance_chunk(index, max(stop, walker.at[index]), [layer.target] if kind else [])
                if kind == 0:
                    pending[i] = layer.z(walker, index)
                else:
                    yield index, layer.name, pending.pop(i), taken[layer.target]


def layer_curves_onnx(original: onnx.ModelProto | str, candidates: Sequence[CurveCandidate],
                      inputs: dict[str, np.ndarray], options: CalibOptions = CalibOptions()) -> dict[str, LayerCurve]:
    """``{layer name: LayerCurve}`` for every candidate, from one pass of ``original`` over ``inputs``
    (capped at ``options.samples``, split fit / held back as calibration splits them)."""
    if isinstance(original, str):
        path, original = original, onnx.load(original, load_external_data=False)
        load_missing_external_data(original, path)
    count = min(options.samples, min(len(a) for a in inputs.values()))
    if count < 1:
        raise InputError("no calibration samples: the inputs hold none")
    inputs = {k: v[:count] for k, v in inputs.items()}
    threads = options.threads or usable_cores()
    chunks = make_chunks(count, options, Runner(original, None, 0, inputs, threads).step or 1)
    walker = Walker(original, [{k: v[i] for k, v in inputs.items()} for i in chunks.indices], threads)
    layers = [_Layer(walker, original.graph, c) for c in candidates]
    return collect_curves(candidates, chunks, _pairs(walker, layers, len(chunks.indices)), options)


__all__ = ["layer_curves_onnx"]
