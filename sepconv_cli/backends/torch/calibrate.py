"""Calibrated refit for PyTorch modules: forward hooks read the tensors the refit needs.

Contract of the torch rewriter: the converted module at a conv's qualified name has ``.depthwise`` and
``.pointwise`` submodules, and a BatchNorm folded into the conv is an ``nn.Identity`` at its own name.
The depthwise output is read from the converted model (earlier layers already refit), the target from
the original: the conv's output, or the folded BatchNorm's output. A hook stops the forward pass as soon
as the tensor it waits for exists, so each read costs only the part of the network before it.
Works on ``nn.Module`` models (entry points, pickles, state_dict + architecture), not on ``.pt2`` programs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from sepconv_cli.backends.torch.modules import conv_kind, get_module
from sepconv_cli.backends.torch.runtime import batchnorm_params, to_numpy
from sepconv_cli.calibration.loop import CalibResult, LayerTask, run_calibration
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.core.decompose import fold_batchnorm
from sepconv_cli.core.records import Plan
from sepconv_cli.core.weights import ConvWeights
from sepconv_cli.errors import UsageError


class _Captured(Exception):
    """Raised by a hook once its tensor is captured: the rest of the forward pass is not needed."""


def capture(model: nn.Module, module: nn.Module, args: list[torch.Tensor]) -> np.ndarray:
    """The output of ``module`` (a submodule of ``model``) when ``model`` runs on ``args``."""
    box: list[torch.Tensor] = []

    def hook(_mod, _inp, out):
        box.append(out)
        raise _Captured

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(*args)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not box:
        raise UsageError(f"{type(module).__name__} never ran during the forward pass; it cannot be calibrated")
    return to_numpy(box[0])


def _param(array: np.ndarray, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(array)).to(dtype=like.dtype, device=like.device),
                        requires_grad=like.requires_grad)


class TorchDriver:
    """Runs and edits the modules for the calibration loop (see ``calibration.loop.Driver``)."""

    def __init__(self, original: nn.Module, converted: nn.Module, plan: Plan, inputs: dict[str, np.ndarray]):
        self.original = original
        self.model = copy.deepcopy(converted).eval()
        self.plan, self.inputs = plan, inputs

    def _args(self, indices: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(a[indices])) for a in self.inputs.values()]

    def _sep(self, name: str) -> nn.Module:
        sep = get_module(self.model, name, "converted layer")
        if not (hasattr(sep, "depthwise") and hasattr(sep, "pointwise")):
            raise UsageError(f"converted layer {name!r} has no depthwise/pointwise submodules")
        return sep

    def _target(self, name: str) -> nn.Module:
        planned = next(p for p in self.plan.layers if p.name == name)
        return get_module(self.original, planned.bn_folded or name, "layer")

    def order(self) -> list[str]:
        """Planned layer names in the order the forward pass runs them (one sample)."""
        seen: list[str] = []
        handles = [self._sep(p.name).register_forward_pre_hook(lambda *_, n=p.name: seen.append(n))
                   for p in self.plan.layers]
        try:
            with torch.no_grad():
                self.model(*self._args(np.arange(1)))
        finally:
            for h in handles:
                h.remove()
        first = list(dict.fromkeys(seen))
        return first + [p.name for p in self.plan.layers if p.name not in first]

    def folded_weight(self, name: str) -> tuple[np.ndarray, int, bool]:
        """(BN-folded float64 kernel, groups, transposed) of the original conv ``name``."""
        conv = get_module(self.original, name, "layer")
        planned = next(p for p in self.plan.layers if p.name == name)
        bn = batchnorm_params(get_module(self.original, planned.bn_folded), planned.bn_folded) \
            if planned.bn_folded else None
        bias = None if conv.bias is None else to_numpy(conv.bias)
        transposed = conv_kind(conv)[1].transposed
        w64, _ = fold_batchnorm(ConvWeights(to_numpy(conv.weight), bias, bn), conv.groups, transposed)
        return w64, conv.groups, transposed

    def factors(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        sep = self._sep(name)
        bias = sep.pointwise.bias
        return to_numpy(sep.depthwise.weight), to_numpy(sep.pointwise.weight), None if bias is None else to_numpy(bias)

    def install(self, name: str, depthwise: np.ndarray, pointwise: np.ndarray, bias: np.ndarray | None) -> None:
        sep = self._sep(name)
        dw, pw = sep.depthwise, sep.pointwise
        dw.weight = _param(depthwise, dw.weight)
        transposed = conv_kind(dw)[1].transposed
        dw.out_channels = depthwise.shape[0] * (depthwise.shape[1] if transposed else 1)
        if dw.bias is not None and dw.bias.shape[0] != dw.out_channels:
            dw.bias = _param(np.zeros(dw.out_channels), dw.bias)  # zero-initialised, as rewritten
        pw.weight = _param(pointwise, pw.weight)
        pw.in_channels = pointwise.shape[1] * pw.groups
        if bias is not None:
            pw.bias = _param(bias, pw.weight)

    def layer_batches(self, name: str, index_batches: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        depthwise, target = self._sep(name).depthwise, self._target(name)
        for indices in index_batches:
            args = self._args(indices)
            yield capture(self.model, depthwise, args), capture(self.original, target, args)

    def outputs(self, converted: bool, indices: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            result = (self.model if converted else self.original)(*self._args(indices))
        return [to_numpy(t) for t in tree_leaves(result) if isinstance(t, torch.Tensor)]


def calibrate_torch(original: nn.Module, converted: nn.Module, plan: Plan, inputs: dict[str, np.ndarray],
                    options: CalibOptions = CalibOptions()) -> CalibResult:
    """Refit the pointwise factor of every planned layer of ``converted`` (a deep copy; the argument is
    left untouched). ``inputs`` are passed to ``forward`` positionally, in dict order."""
    if not isinstance(original, nn.Module) or not isinstance(converted, nn.Module):
        raise UsageError("calibration needs nn.Module models; for a .pt2 program, convert its source module "
                         "or export it to ONNX and calibrate that")
    count = min(options.samples, min(len(a) for a in inputs.values()))
    inputs = {k: v[:count] for k, v in inputs.items()}
    driver = TorchDriver(original.eval(), converted, plan, inputs)
    search = options.max_output_error is not None
    tasks = []
    for name in driver.order():
        weight, groups, transposed = driver.folded_weight(name)
        rank = next(p.rank for p in plan.layers if p.name == name)
        tasks.append(LayerTask(name, groups, rank, transposed, weight if search else None))
    report, ranks, energies = run_calibration(driver, tasks, count, options)
    return CalibResult(model=driver.model, report=report, ranks=ranks, energies=energies)


__all__ = ["TorchDriver", "calibrate_torch", "capture"]
