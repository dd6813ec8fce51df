"""Wiring a goal into `convert`: the inputs it is measured on, the calibration step per trial, and the
search (``targeted.reach``).

Measurement inputs, first match wins: the samples calibration holds back from its fit (real data, not
fitted on), the ``--inputs`` file, or seeded random inputs (weak evidence, said so by the report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sepconv_cli.backends.base import Backend, Converted, ConvertOptions, LoadedModel
from sepconv_cli.backends.limits import active as active_limits
from sepconv_cli.calibration.solve import split_samples
from sepconv_cli.errors import SepconvError
from sepconv_cli.pipeline import allocation as alloc
from sepconv_cli.pipeline import targeted
from sepconv_cli.pipeline import verify as verify_mod
from sepconv_cli.pipeline.inputs import load_calibration_inputs
from sepconv_cli.pipeline.measure import Measurer
from sepconv_cli.planner.targets import Metric

if TYPE_CHECKING:
    from sepconv_cli.pipeline.convert import ConvertRequest

MEASURE_SAMPLES = 64
"""Most held-back samples the goal search measures each trial on (the final verification uses all)."""


@dataclass(frozen=True)
class Job:
    """The loaded model, its backend (None on a dry run), the rewrite options and the source format."""

    loaded: LoadedModel
    backend: Backend | None
    options: ConvertOptions
    fmt: str


def _held_back(hook: Any, loaded: LoadedModel, notes: list[str]) -> dict[str, np.ndarray]:
    """The calibration samples the hook will hold back from its fit (same split, same seed)."""
    options = hook.options
    arrays = load_calibration_inputs(hook.path, loaded.report.model.inputs, options.samples, notes)
    count = min(len(a) for a in arrays.values())
    fit, held = split_samples(count, options.holdout, options.seed)
    chosen = held if len(held) else fit
    return {name: a[chosen[:MEASURE_SAMPLES]] for name, a in arrays.items()}


def measurement_inputs(request: ConvertRequest, loaded: LoadedModel, notes: list[str]) -> tuple[dict, str]:
    """(inputs by name, where they come from) for measuring trials."""
    inputs = loaded.report.model.inputs
    if request.after_rewrite is not None:
        return _held_back(request.after_rewrite, loaded, notes), "held-back calibration"
    if request.inputs_path:
        return verify_mod.load_inputs(request.inputs_path, inputs, notes), request.inputs_path
    arrays = verify_mod.random_inputs(inputs, request.seed, verify_mod.RANDOM_SAMPLES, max_bytes=active_limits().memory)
    return arrays, f"random (seed {request.seed})"


def calibrator(request: ConvertRequest, job: Job):
    """``converted -> (converted, (calibration report, distillation report))``: the request's calibration
    step (with distillation when asked), or identity."""
    hook = request.after_rewrite

    def calibrate(converted: Converted) -> tuple[Converted, Any]:
        if hook is None:
            return converted, (None, None)
        refit = hook(job.loaded, converted, job.backend)
        return refit, (hook.report, hook.distillation)

    return calibrate


def curves(request: ConvertRequest, job: Job, notes: list[str]):
    """``offers -> {layer: {rank: squared calibrated error}}`` from one pass of the original over the
    calibration inputs, or None without them; a format without calibrated curves falls back to kernel
    energy, with a note."""
    hook = request.after_rewrite
    if hook is None:
        return None

    def compute(found: alloc.Offers) -> dict[str, dict[int, float]] | None:
        from sepconv_cli.pipeline.calibrate import curve_candidates, layer_curves

        ranks = {offer.name: offer.ranks for offer in found.layers}
        try:
            candidates = curve_candidates(job.loaded.report, job.loaded.handle, ranks, request.plan.fold_bn)
            measured = layer_curves(job.loaded, candidates, hook.path, hook.options, notes)
        except SepconvError as exc:
            notes.append(f"calibrated error curves unavailable ({exc}); kernel energy used instead")
            return None
        return {name: curve.squared() for name, curve in measured.items()}

    return compute


def reach_goal(request: ConvertRequest, job: Job, notes: list[str]) -> targeted.Built:
    """Run the goal search of ``request.goal`` on the loaded model."""
    goal = request.goal
    if goal is None or job.backend is None:
        raise ValueError("reach_goal needs a goal and a backend")
    feed, source = measurement_inputs(request, job.loaded, notes)
    batch = verify_mod.fixed_batch(job.loaded.report.model.inputs)
    timed = goal.metric is Metric.LATENCY or request.benchmark
    measurer = Measurer(job.loaded, job.backend, feed, batch, threads=request.threads, time_model=timed)
    ctx = targeted.Context(job.loaded, job.backend, request.plan, job.options, measurer, calibrator(request, job),
                           curves=curves(request, job, notes))
    built = targeted.reach(ctx, goal)
    built.outcome.measured_on = source
    return built
