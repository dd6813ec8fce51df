"""Label-free distillation: fine-tune a converted module to reproduce the original's outputs.

The converted ``nn.Module`` is trained with Adam (cosine-decayed learning rate) to minimise, over the
model's outputs, the mean squared error to the original's outputs divided by their mean square (so that
outputs of any scale weigh alike), on the *fit* part of unlabeled inputs. The split is calibration's
(``split_samples`` with the same holdout share and seed), so the samples held back from calibration stay
unseen here too and keep the verification out of sample. Both modules run in eval mode throughout:
BatchNorms keep their running statistics (a few hundred unlabeled samples would only make them worse)
and dropout stays off, so the target is deterministic. The distilled weights are kept only when the
held-back error drops; otherwise the module gets its weights back. One seed drives the batch order, so
a run is repeatable; nothing else is random. Units: errors are relative L2 (dimensionless), time in seconds.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from sepconv_cli.backends.torch.runtime import to_numpy
from sepconv_cli.calibration.solve import split_samples
from sepconv_cli.errors import UsageError

Arrays = Mapping[str, np.ndarray]
# (original outputs, converted outputs, model inputs) -> error: the measure that decides what is kept.
ErrorFn = Callable[[dict[str, np.ndarray], dict[str, np.ndarray], Arrays], float]


@dataclass(frozen=True)
class DistillOptions:
    """How to distill. ``lr``: Adam's peak learning rate, decayed to 0 over the steps by a cosine.
    ``batch``: inputs per step. ``holdout``/``seed``: the split (use calibration's). ``threads``: torch
    intra-op threads for the run (None: leave torch's setting). ``error``: what decides whether the result
    is kept (default: worst relative L2 error over the outputs; pass one that judges residual outputs on
    their residual part). ``progress(step, steps)`` is called every ``PROGRESS_EVERY`` steps and at the end."""

    lr: float = 3e-4
    batch: int = 32
    holdout: float = 0.25
    seed: int = 0
    threads: int | None = None
    error: ErrorFn | None = field(default=None, compare=False)
    progress: Callable[[int, int], None] | None = field(default=None, compare=False)


PROGRESS_EVERY = 10


@dataclass(frozen=True)
class DistillReport:
    """What distillation did: ``steps`` taken on ``samples_fit`` inputs, the output error (see
    ``DistillOptions.error``) on ``basis`` (``"holdout"`` samples, or ``"fit"`` when none were held back)
    before and after, whether the distilled weights were ``kept``, the distillation loss (mean normalised
    squared error) on the first and last steps, and the wall time in seconds."""

    steps: int
    samples_fit: int
    samples_holdout: int
    basis: str
    error_before: float
    error_after: float
    kept: bool
    loss_first: float
    loss_last: float
    seconds: float

    @property
    def gain(self) -> float:
        """error_before / error_after (> 1: distillation helped), as kept: 1.0 when it was not kept."""
        if not self.kept:
            return 1.0
        return self.error_before / self.error_after if self.error_after > 0 else float("inf")


def worst_rel_l2(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], _inputs: Arrays) -> float:
    """Worst relative L2 error ||b - a|| / ||a|| over the outputs (the default ``DistillOptions.error``)."""
    worst = 0.0
    for name, a in reference.items():
        a64, b64 = np.asarray(a, np.float64), np.asarray(candidate[name], np.float64)
        norm = float(np.linalg.norm(a64))
        diff = float(np.linalg.norm(b64 - a64))
        worst = max(worst, diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf))
    return worst


def _outputs(model: nn.Module, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t for t in tree_leaves(model(*args)) if isinstance(t, torch.Tensor)]


def _run(model: nn.Module, inputs: dict[str, torch.Tensor], index: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Outputs of ``model`` on the samples ``index``, without gradients, as numpy keyed ``output_<i>``."""
    parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(index), batch):
            chosen = torch.from_numpy(index[start:start + batch])
            outs = _outputs(model, [t[chosen] for t in inputs.values()])
            parts = parts or [[] for _ in outs]
            for sink, out in zip(parts, outs):
                sink.append(to_numpy(out))
    return {f"output_{i}": np.concatenate(p) for i, p in enumerate(parts)}


@contextlib.contextmanager
def _training_state(original: nn.Module, converted: nn.Module, threads: int | None) -> Iterator[None]:
    """Both modules in eval mode, the converted one's parameters trainable and ``threads`` torch threads,
    for the block; modes, ``requires_grad`` flags and the thread count are restored afterwards."""
    modes = [(m, m.training) for model in (original, converted) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in converted.parameters()]
    previous = torch.get_num_threads()
    original.eval()
    converted.eval()
    for p, _ in flags:
        p.requires_grad_(True)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)


def _loss(outs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Sum over outputs of MSE / mean square of the target (scale-free)."""
    total = outs[0].new_zeros(())
    for out, target in zip(outs, targets):
        scale = target.pow(2).mean().clamp_min(1e-12)
        total = total + (out - target).pow(2).mean() / scale
    return total


@dataclass(frozen=True)
class _Data:
    """Inputs as tensors, the original's outputs on them, and the fit / held-back sample indices."""

    inputs: dict[str, torch.Tensor]
    targets: list[torch.Tensor]
    fit: np.ndarray
    held: np.ndarray


def _prepare(original: nn.Module, inputs: Arrays, options: DistillOptions) -> _Data:
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    counts = {len(t) for t in tensors.values()}
    if len(counts) != 1 or not counts.pop():
        raise UsageError("distillation needs the same, non-zero number of samples for every model input")
    count = len(next(iter(tensors.values())))
    fit, held = split_samples(count, options.holdout, options.seed)
    every = np.arange(count)
    reference = _run(original, tensors, every, options.batch)
    targets = [torch.from_numpy(a) for a in reference.values()]
    return _Data(tensors, targets, fit, held)


def _train(converted: nn.Module, data: _Data, steps: int, options: DistillOptions) -> tuple[float, float]:
    """``steps`` Adam steps on batches of the fit samples in seeded epochs; (first, last) loss."""
    optimizer = torch.optim.Adam([p for p in converted.parameters() if p.requires_grad], lr=options.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    rng = np.random.default_rng(options.seed)
    order: list[np.ndarray] = []
    losses: list[float] = []
    for step in range(steps):
        if not order:
            shuffled = rng.permutation(data.fit)
            order = [shuffled[i:i + options.batch] for i in range(0, len(shuffled), options.batch)]
        chosen = torch.from_numpy(order.pop(0))
        outs = _outputs(converted, [t[chosen] for t in data.inputs.values()])
        loss = _loss(outs, [t[chosen] for t in data.targets])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if options.progress is not None and ((step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps):
            options.progress(step + 1, steps)
    return (losses[0], losses[-1]) if losses else (0.0, 0.0)


def distill(original: nn.Module, converted: nn.Module, inputs: dict[str, np.ndarray], steps: int,
            options: DistillOptions | None = None) -> DistillReport:
    """Fine-tune ``converted`` in place to match ``original`` on the fit part of ``inputs`` (by input name,
    passed positionally in dict order, ``(N, ...)`` each) for ``steps`` steps; keep the result only when
    the error on the held-back part drops (else ``converted`` gets its weights back). See the module
    docstring. UsageError for ``steps`` < 1 or inputs of unequal sample counts."""
    options = options or DistillOptions()
    if steps < 1:
        raise UsageError(f"--distill-steps must be at least 1, got {steps}")
    start = time.perf_counter()
    error = options.error or worst_rel_l2
    with _training_state(original, converted, options.threads):
        data = _prepare(original, inputs, options)
        basis, judged = ("holdout", data.held) if len(data.held) else ("fit", data.fit)
        judged_inputs = {k: np.asarray(v)[judged] for k, v in inputs.items()}
        reference = {f"output_{i}": to_numpy(t[torch.from_numpy(judged)]) for i, t in enumerate(data.targets)}

        def measure() -> float:
            return error(reference, _run(converted, data.inputs, judged, options.batch), judged_inputs)

        before = measure()
        saved = copy.deepcopy(converted.state_dict())
        loss_first, loss_last = _train(converted, data, steps, options)
        after = measure()
        kept = after < before
        if not kept:
            converted.load_state_dict(saved)
    return DistillReport(steps, len(data.fit), len(data.held), basis, before, after, kept, loss_first, loss_last,
                         time.perf_counter() - start)


__all__ = ["DistillOptions", "DistillReport", "distill", "worst_rel_l2"]
