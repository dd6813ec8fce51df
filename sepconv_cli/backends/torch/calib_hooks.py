"""Calibration of ``nn.Module`` models that ``torch.fx`` cannot trace: forward hooks read the tensors.

A hook stops the forward pass as soon as the tensor it waits for exists (the depthwise conv's input on
the converted model, the target on the original), so each read costs the part of the network before it;
over all layers that is quadratic in depth, the price of not having a graph to walk (``FxDriver``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from sepconv_cli.backends.torch.calib_layouts import ModuleLayout
from sepconv_cli.backends.torch.runtime import to_numpy
from sepconv_cli.calibration.loop import Chunks
from sepconv_cli.core.plans import Plan
from sepconv_cli.errors import UsageError


class _Captured(Exception):
    """Raised by a hook once its tensor is captured: the rest of the forward pass is not needed."""


def capture(model: nn.Module, module: nn.Module, args: list[torch.Tensor], inputs: bool = False) -> torch.Tensor:
    """The output (or, with ``inputs``, the first input) of ``module``, a submodule of ``model``, when
    ``model`` runs on ``args``."""
    box: list[torch.Tensor] = []

    def after(_mod, _inp, out):
        box.append(out)
        raise _Captured

    def before(_mod, inp):
        box.append(inp[0])
        raise _Captured

    handle = module.register_forward_pre_hook(before) if inputs else module.register_forward_hook(after)
    try:
        with torch.no_grad():
            model(*args)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not box:
        raise UsageError(f"{type(module).__name__} never ran during the forward pass; it cannot be calibrated")
    return box[0]


class HookDriver:
    """The calibration loop's driver over live modules (see ``calibration.loop.Driver``)."""

    def __init__(self, layout: ModuleLayout, plan: Plan, inputs: dict[str, np.ndarray]):
        self.layout, self.plan, self.inputs = layout, plan, inputs
        self.chunks: tuple[np.ndarray, ...] = ()
        self.factors, self.install = layout.factors, layout.install

    def _args(self, indices: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(a[indices])) for a in self.inputs.values()]

    def order(self) -> list[str]:
        """Planned layer names in the order the forward pass runs them (one sample)."""
        seen: list[str] = []
        handles = [self.layout.separable(p.name).register_forward_pre_hook(lambda *_, n=p.name: seen.append(n))
                   for p in self.plan.layers]
        try:
            with torch.no_grad():
                self.layout.model(*self._args(np.arange(1)))
        finally:
            for h in handles:
                h.remove()
        first = list(dict.fromkeys(seen))
        return first + [p.name for p in self.plan.layers if p.name not in first]

    def begin(self, chunks: Chunks) -> None:
        self.chunks = chunks.indices

    def depthwise(self, name: str, kernel: np.ndarray | None = None) -> Iterator[np.ndarray]:
        module = self.layout.separable(name).depthwise
        kernel = self.factors(name)[0] if kernel is None else kernel
        for indices in self.chunks:
            x = capture(self.layout.model, module, self._args(indices), inputs=True)
            with torch.no_grad():
                yield to_numpy(self.layout.apply_depthwise(name, x, kernel))

    def targets(self, name: str) -> Iterator[np.ndarray]:
        module = self.layout.target_module(name)
        for indices in self.chunks:
            yield to_numpy(capture(self.layout.original, module, self._args(indices)))

    def relu_follows(self, name: str) -> bool:
        return False  # without a graph the readers of the output are unknown

    def advance(self, name: str) -> None:
        """Nothing to move: every read runs the model from its inputs."""

    def outputs(self, converted: bool, indices: np.ndarray) -> list[np.ndarray]:
        model = self.layout.model if converted else self.layout.original
        with torch.no_grad():
            result = model(*self._args(indices))
        return [to_numpy(t) for t in tree_leaves(result) if isinstance(t, torch.Tensor)]


__all__ = ["HookDriver", "capture"]
