"""After the pointwise refit of a layer: refit its depthwise factor, then fit its post-ReLU output.

Each stage proposes new factors and keeps them only when they lower the layer's held-back error (the
fit samples' error when none were held back):

1. ``depthwise``: one pass collects the moments of the layer's input patches (the depthwise conv with
   ``als.identity_kernel``) against the target, on a seeded lattice of positions (about ``ROWS_PER_UNKNOWN``
   rows per depthwise unknown); ``als.alternate`` refits both factors there. A layer where that would cost
   more than ``options.depthwise_budget`` times the pointwise refit (and more than ``SMALL_WORK``) is left
   as it is. When that lowers the
   sampled held-back error, a full pass with the new depthwise factor refits the pointwise one exactly
   and the pair is judged on all samples.
2. ``relu``: where every reader of the layer's output is a ReLU, ``relu.ReluPass`` refits the pointwise
   factor to the clipped targets, judged on the held-back post-ReLU error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sepconv_cli.calibration import als
from sepconv_cli.calibration.moments import single_threaded_blas
from sepconv_cli.calibration.relu import ReluPass
from sepconv_cli.calibration.solve import CalibOptions, NormalEquations, refit, unpack
from sepconv_cli.calibration.stream import prefetched
from sepconv_cli.core.calibrated import CalibratedLayer

ROWS_PER_UNKNOWN = 32
TRANSPOSED = "depthwise refit: not done for transposed convs"
TOO_LARGE = "depthwise refit: {n} unknowns per group is too many for a dense solve"
TOO_COSTLY = "depthwise refit: skipped, it would cost {cost:.0f}x the pointwise refit"
SMALL_WORK = 2e10  # multiply-adds a depthwise refit may always spend (about a second)
NOT_BETTER_SAMPLED = "depthwise refit: did not lower the held-back error on the sampled positions"
NOT_BETTER = "depthwise refit: did not lower the held-back error"
RELU_NOT_BETTER = "post-ReLU fit: did not lower the held-back post-ReLU error"


@dataclass
class LayerState:
    """What a stage starts from and changes: the installed depthwise kernel, the pointwise coefficients
    ``(g, D + 1, C)``, the normal equations of the installed depthwise factor (fit, held back) and the
    record."""

    depthwise: np.ndarray
    coefficients: np.ndarray
    fit: NormalEquations
    hold: NormalEquations | None
    record: CalibratedLayer

    def install(self, driver: Any, name: str, depthwise: np.ndarray, coefficients: np.ndarray) -> None:
        """Put ``depthwise`` and the pointwise ``coefficients`` in the model (a refit is kept: bias too)."""
        weight, bias = unpack(coefficients, depthwise.ndim - 2)
        driver.install(name, depthwise, weight, bias)


def _noted(record: CalibratedLayer, note: str) -> CalibratedLayer:
    return replace(record, refine_note="; ".join(n for n in (record.refine_note, note) if n))


def _judged(record: CalibratedLayer) -> float:
    return record.holdout_error_after if record.holdout_error_after is not None else record.fit_error_after


def _positions(shape: tuple[int, ...], share: float, seed: int) -> slice:
    """About ``share`` of the flattened spatial positions of an activation of ``shape``: every k-th one
    from a seeded offset (a slice, so the rows are read in place, not gathered)."""
    step = max(1, int(round(1.0 / max(share, 1e-9))))
    return slice(int(np.random.default_rng(seed).integers(step)) if step > 1 else 0, None, step)


def _patch_moments(driver: Any, name: str, chunks: Any, kernel: np.ndarray, state: LayerState, options: CalibOptions
                   ) -> tuple[NormalEquations, NormalEquations | None]:
    """Moments of sampled input patches against the target, fit and held-back chunks apart."""
    fit_samples = sum(len(i) for i, h in zip(chunks.indices, chunks.held) if not h)
    stats: dict[bool, NormalEquations] = {}
    share = 1.0
    for index, (patches, y) in enumerate(prefetched(zip(driver.depthwise(name, kernel), driver.targets(name)))):
        if index == 0:
            per_group = patches.shape[1] // state.fit.groups  # Cin_g * K patch columns
            needed = ROWS_PER_UNKNOWN * per_group * state.record.rank
            share = min(1.0, needed / max(1, fit_samples * int(np.prod(patches.shape[2:]))))
        held = chunks.held[index]
        cols = _positions(patches.shape, share, options.seed + index)
        p_rows = patches.reshape(*patches.shape[:2], -1)[:, :, cols]
        y_rows = y.reshape(*y.shape[:2], -1)[:, :, cols]
        if held not in stats:
            stats[held] = NormalEquations(state.fit.groups, patches.shape[1] // state.fit.groups, state.fit.outputs)
        stats[held].add(p_rows, y_rows)
    return stats[False], stats.get(True)


def _full_pass(driver: Any, name: str, chunks: Any, state: LayerState, kernel: np.ndarray
               ) -> tuple[NormalEquations, NormalEquations | None]:
    """Normal equations of depthwise factor ``kernel`` over all fit and held-back samples."""
    stats: dict[bool, NormalEquations] = {}
    for held, (z, y) in zip(chunks.held, prefetched(zip(driver.depthwise(name, kernel), driver.targets(name)))):
        if held not in stats:
            stats[held] = NormalEquations(state.fit.groups, state.fit.inputs, state.fit.outputs)
        stats[held].add(z, y)
    return stats[False], stats.get(True)


def depthwise_stage(driver: Any, name: str, chunks: Any, state: LayerState, options: CalibOptions) -> LayerState:
    """Refit the depthwise factor (and the pointwise one with it) by alternating least squares."""
    v, rank, groups = state.depthwise, state.record.rank, state.fit.groups
    kernel_shape, k = tuple(v.shape[2:]), int(np.prod(v.shape[2:]))
    cin = v.shape[0] // rank
    if not als.fits_in_memory(groups, cin // groups, rank, k):
        return replace(state, record=_noted(state.record, TOO_LARGE.format(n=als.unknowns(cin // groups, rank, k))))
    sampled = min(state.fit.rows, ROWS_PER_UNKNOWN * als.unknowns(cin // groups, rank, k))
    cost = als.relative_cost(cin // groups, rank, k, state.fit.rows, sampled)
    flops = cost * state.fit.rows * (state.fit.inputs ** 2) * groups
    if cost > options.depthwise_budget and flops > SMALL_WORK:
        return replace(state, record=_noted(state.record, TOO_COSTLY.format(cost=cost)))
    fit, hold = _patch_moments(driver, name, chunks, als.identity_kernel(cin, kernel_shape), state, options)
    with single_threaded_blas():
        new_v, new_p = als.alternate(fit, v, state.coefficients, rank, options.ridge, options.depthwise_steps)
    judge = hold if hold is not None else fit
    before = als.pointwise_equations(judge, v, rank).relative_error(state.coefficients)
    if new_v is v or als.pointwise_equations(judge, new_v, rank).relative_error(new_p) >= before:
        return replace(state, record=_noted(state.record, NOT_BETTER_SAMPLED))
    full = _full_pass(driver, name, chunks, state, new_v)
    result = refit(name, rank, full, new_p, options.ridge)
    if _judged(result.record) >= _judged(state.record):
        return replace(state, record=_noted(state.record, NOT_BETTER))
    state.install(driver, name, new_v, result.coefficients)
    record = replace(state.record, fit_error_after=result.record.fit_error_after, fell_back="",
                     holdout_error_after=result.record.holdout_error_after, depthwise_refit=True)
    return LayerState(new_v, result.coefficients, full[0], full[1], record)


def relu_stage(driver: Any, name: str, chunks: Any, state: LayerState, options: CalibOptions) -> LayerState:
    """Refit the pointwise factor to the post-ReLU output (clipped least squares, ``options.relu_steps``)."""
    judge = any(chunks.held)
    passes: list[ReluPass] = []
    p = state.coefficients
    for _ in range(max(1, options.relu_steps)):
        current = ReluPass(p)
        for held, (z, y) in zip(chunks.held, prefetched(zip(driver.depthwise(name), driver.targets(name)))):
            current.add(z, y, held)
        passes.append(current)
        p = current.next_coefficients(state.fit, options.ridge)
    start = passes[0].error(judge)
    record = replace(state.record, relu_error_before=start, relu_error_after=start)
    if len(passes) < 2:
        return replace(state, record=record)
    best = min(passes[1:], key=lambda r: r.error(False))
    if not best.error(judge) < start or not np.all(np.isfinite(best.p)):
        return replace(state, record=_noted(record, RELU_NOT_BETTER))
    state.install(driver, name, state.depthwise, best.p)
    held_error = None if state.hold is None else state.hold.relative_error(best.p)
    record = replace(record, relu_fit=True, relu_error_after=best.error(judge), fell_back="",
                     fit_error_after=state.fit.relative_error(best.p), holdout_error_after=held_error)
    return replace(state, coefficients=best.p, record=record)


def refine(driver: Any, name: str, chunks: Any, state: LayerState, options: CalibOptions,
           transposed: bool = False) -> CalibratedLayer:
    """Run the stages ``options`` asks for on one layer whose pointwise refit is installed (none when
    the samples are too few for even the pointwise fit)."""
    if state.fit.rows < state.fit.unknowns:
        return state.record
    if options.refit_depthwise:
        if transposed:
            state = replace(state, record=_noted(state.record, TRANSPOSED))
        else:
            state = depthwise_stage(driver, name, chunks, state, options)
    if options.fit_relu and driver.relu_follows(name):
        state = relu_stage(driver, name, chunks, state, options)
    return state.record


__all__ = ["LayerState", "refine"]
