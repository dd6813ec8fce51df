"""Per-layer error-versus-rank curves of a PyTorch model from one pass of the original over the inputs.

``nn.Module`` sources: one forward pass per sample chunk with hooks on every candidate conv (its input,
through the conv's geometry with ``groups = Cin`` and the rank-Tmax depthwise kernel, gives ``Z``) and on
its target (the conv's or the folded BatchNorm's output, ``Y``). ``.pt2`` programs: the graph of
``ExportedProgram.module()`` is walked chunk by chunk (``walk.FxWalker``) and ``Z`` computed at the cut
before each conv call. The normal equations and the per-rank solves are ``calibration.curves``'.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional

from sepconv_cli.backends.torch.calib_layouts import ProgramLayout
from sepconv_cli.backends.torch.calibrate import fixed_step
from sepconv_cli.backends.torch.modules import conv_kind, get_module
from sepconv_cli.backends.torch.pt2 import _kwargs
from sepconv_cli.backends.torch.runtime import quiet, to_numpy
from sepconv_cli.backends.torch.walk import FxWalker
from sepconv_cli.calibration.curves import CurveCandidate, LayerCurve, blocks, collect_curves
from sepconv_cli.calibration.loop import Chunks, make_chunks
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.errors import InputError

_TRANSPOSED = {1: functional.conv_transpose1d, 2: functional.conv_transpose2d, 3: functional.conv_transpose3d}

Pairs = Iterator[tuple[int, str, np.ndarray, np.ndarray]]


def _kernel(c: CurveCandidate, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(c.depthwise())).to(dtype=like.dtype, device=like.device)


def _module_depthwise(conv: nn.Module, c: CurveCandidate):
    """``x -> Z``: ``conv``'s geometry (padding mode included) as a depthwise conv with the Tmax kernel."""
    kernel = _kernel(c, conv.weight)
    if conv_kind(conv)[1].transposed:
        return lambda x: _TRANSPOSED[kernel.ndim - 2](x, kernel, None, conv.stride, conv.padding, conv.output_padding,
                                                      conv.in_channels, conv.dilation)
    alone = copy.copy(conv)
    alone.groups = conv.in_channels
    return lambda x: alone._conv_forward(x, kernel, None)


def _module_pairs(model: nn.Module, candidates: Sequence[CurveCandidate], chunks: Chunks,
                  inputs: dict[str, np.ndarray]) -> Pairs:
    """Per chunk, one hooked forward pass: (chunk, name, Z, Y) for every candidate (first call of each)."""
    found: dict[tuple[str, int], torch.Tensor] = {}

    def keep(key: tuple[str, int], make: Any) -> None:
        if key not in found:
            found[key] = make()

    handles = []
    for c in candidates:
        depthwise = _module_depthwise(get_module(model, c.name), c)
        handles.append(get_module(model, c.name).register_forward_pre_hook(
            lambda _m, args, n=c.name, f=depthwise: keep((n, 0), lambda: f(args[0]))))
        handles.append(get_module(model, c.bn_folded or c.name).register_forward_hook(
            lambda _m, _a, out, n=c.name: keep((n, 1), lambda: out)))
    try:
        for index, indices in enumerate(chunks.indices):
            found.clear()
            with torch.no_grad():
                model(*[torch.from_numpy(np.ascontiguousarray(a[indices])) for a in inputs.values()])
            for c in candidates:
                yield index, c.name, to_numpy(found[(c.name, 0)]), to_numpy(found[(c.name, 1)])
    finally:
        for h in handles:
            h.remove()


def _program_pairs(gm: fx.GraphModule, candidates: Sequence[CurveCandidate], chunks: Chunks,
                   inputs: dict[str, np.ndarray]) -> Pairs:
    """(chunk, name, Z, Y) for every candidate and chunk: all chunks through a layer before the next."""
    plan = Plan(layers=tuple(PlannedLayer(c.name, 1, 0, 0, None, None, bn_folded=c.bn_folded) for c in candidates))
    layout = ProgramLayout(gm, gm, plan)
    feeds = [[torch.from_numpy(np.ascontiguousarray(a[i])) for a in inputs.values()] for i in chunks.indices]
    walker = FxWalker(gm, feeds)
    convs = {c.name: layout.conv_reading(gm, f"{c.name}.weight") for c in candidates}
    targets = {c.name: layout.target_node(gm, c.name) for c in candidates}
    events = [(walker.index[convs[c.name]], 0, i) for i, c in enumerate(candidates)] + \
             [(walker.index[targets[c.name]] + 1, 1, i) for i, c in enumerate(candidates)]
    for block in blocks(events):
        for index in range(len(feeds)):
            pending: dict[int, np.ndarray] = {}
            for stop, kind, i in block:
                c = candidates[i]
                taken = walker.advance_chunk(index, max(stop, walker.at[index]), [targets[c.name]] if kind else [])
                if kind == 0:
                    pending[i] = to_numpy(_program_depthwise(convs[c.name], c, walker.live[index]))
                else:
                    yield index, c.name, pending.pop(i), to_numpy(taken[targets[c.name]])


def _program_depthwise(node: fx.Node, c: CurveCandidate, env: dict) -> torch.Tensor:
    """The conv call ``node`` with the Tmax depthwise kernel, ``groups = Cin`` and no bias."""
    kwargs = _kwargs(node)
    source = kwargs[next(iter(kwargs))]
    x = env[source]
    cin = c.weight.shape[0] if c.transposed else c.weight.shape[1] * c.groups
    kwargs = dict(kwargs, weight=_kernel(c, x), bias=None, groups=cin)
    kwargs[next(iter(kwargs))] = x
    with torch.no_grad():
        return node.target(**kwargs)


def _run(candidates: Sequence[CurveCandidate], inputs: dict[str, np.ndarray], options: CalibOptions, step: int,
         pairs: Any) -> dict[str, LayerCurve]:
    count = min(options.samples, min(len(a) for a in inputs.values()))
    if count < 1:
        raise InputError("no calibration samples: the inputs hold none")
    inputs = {k: v[:count] for k, v in inputs.items()}
    chunks = make_chunks(count, options, step)
    return collect_curves(candidates, chunks, pairs(candidates, chunks, inputs), options)


def layer_curves_torch(original: nn.Module, candidates: Sequence[CurveCandidate], inputs: dict[str, np.ndarray],
                       options: CalibOptions = CalibOptions()) -> dict[str, LayerCurve]:
    """``{layer name: LayerCurve}`` for every candidate conv of the ``nn.Module`` ``original``."""
    model = original.eval()
    return _run(candidates, inputs, options, 1, lambda c, k, i: _module_pairs(model, c, k, i))


def layer_curves_pt2(original: Any, candidates: Sequence[CurveCandidate], inputs: dict[str, np.ndarray],
                     options: CalibOptions = CalibOptions()) -> dict[str, LayerCurve]:
    """``{layer name: LayerCurve}`` for every candidate conv call of the ``ExportedProgram`` ``original``."""
    with quiet():
        gm = original.module()
    return _run(candidates, inputs, options, fixed_step(original), lambda c, k, i: _program_pairs(gm, c, k, i))


__all__ = ["layer_curves_pt2", "layer_curves_torch"]
