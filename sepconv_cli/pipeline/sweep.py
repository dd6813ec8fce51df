"""``convert --sweep``: the accuracy/cost frontier, measured. Nothing is written.

The predicted Pareto front (``planner.allocate.Front``) is cut at budgets spread evenly (in log scale)
between the cheapest plan and the original; each cut is built (rewrite, calibrate, fastest structure) and
measured end to end: output error (and top-1 agreement) on held-back inputs, MACs, params and
whole-model latency side by side with the original. The knee is the measured point farthest below the
chord joining the original to the cheapest point (cost saved against error, both normalised).
Units: MACs/params in elements, seconds at batch 1, relative L2 errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sepconv_cli.backends.registry import ConvertOptions, backend_for, detect_format, loader_for
from sepconv_cli.core.plans import Plan
from sepconv_cli.pipeline import allocation as alloc
from sepconv_cli.pipeline import targeted
from sepconv_cli.pipeline import verify as verify_mod
from sepconv_cli.pipeline.convert_goal import Job, calibrator, curves, measurement_inputs
from sepconv_cli.pipeline.measure import Measurer
from sepconv_cli.planner.allocate import Allocation, Front
from sepconv_cli.planner.targets import Metric, Target

DEFAULT_POINTS = 6
"""Frontier points built and measured by default."""


@dataclass
class SweepResult:
    """The measured frontier: one trial per budget (cheapest last), the knee's index, and context."""

    source: str
    metric: Metric
    original_cost: float
    original_seconds: float | None
    trials: list[targeted.Trial] = field(default_factory=list)
    budgets: list[float] = field(default_factory=list)
    knee: int | None = None
    measured_on: str = ""
    calibrated_curves: bool = False
    notes: list[str] = field(default_factory=list)


def budgets(front: Front, original: float, points: int) -> list[float]:
    """Up to ``points`` budgets spread in log scale from just under the original to the cheapest plan."""
    cheapest = front.cheapest().cost
    if points < 1 or cheapest >= original:
        return []
    ratio = cheapest / original
    return [original * ratio ** (i / points) for i in range(1, points + 1)]


def knee(original: float, trials: list[targeted.Trial], metric: Metric) -> int | None:
    """Index of the measured point farthest below the chord from (no saving, no error) to the cheapest
    point, with cost saved and error each normalised to [0, 1]; None with fewer than 2 points."""
    points = [(1.0 - t.measured.cost(metric) / original, t.measured.error) for t in trials]
    usable = [(i, s, e) for i, (s, e) in enumerate(points) if e is not None and math.isfinite(s)]
    if len(usable) < 2:
        return None
    top_s = max(s for _, s, _ in usable) or 1.0
    top_e = max(e for _, _, e in usable) or 1.0
    last = max(usable, key=lambda p: p[1])
    slope = (last[2] / top_e) / (last[1] / top_s) if last[1] > 0 else 0.0
    gaps = [(slope * s / top_s - e / top_e, i) for i, s, e in usable]
    gap, index = max(gaps)
    return index if gap > 0 else None


def run_sweep(request, points: int = DEFAULT_POINTS, metric: Metric = Metric.LATENCY) -> SweepResult:
    """Load ``request.source``, build and measure ``points`` frontier plans; writes nothing."""
    fmt = detect_format(request.source, request.load)
    loaded = loader_for(fmt)(request.source, request.load)
    backend = backend_for(fmt)
    options = ConvertOptions(init=request.plan.init, fold_bn=request.plan.fold_bn,
                             depthwise_bias=request.plan.depthwise_bias, seed=request.seed)
    job = Job(loaded, backend, options, fmt)
    notes: list[str] = []
    feed, source = measurement_inputs(request, loaded, notes)
    batch = verify_mod.fixed_batch(loaded.report.model.inputs)
    measurer = Measurer(loaded, backend, feed, batch, threads=request.threads, time_model=True)
    ctx = targeted.Context(loaded, backend, request.plan, options, measurer, calibrator(request, job))
    found = alloc.offers(loaded.report, loaded.handle, request.plan)
    compute = curves(request, job, notes)
    ctx.errors = compute(found) if compute is not None else None
    whole = measurer.measure(None, Plan(layers=()))
    ctx.seconds = measurer.layer_seconds(found, whole.seconds_before)
    layers, layers_cost = alloc.choices(found, metric, ctx.errors, ctx.seconds)
    goal = targeted.Goal(targeted.GoalKind.BUDGET, target=Target(metric, "sweep", share=1.0))
    original = targeted.original_cost(ctx, metric, whole)
    front = Front(layers, max(0.0, original - layers_cost))
    result = SweepResult(request.source, metric, original, whole.seconds_before, measured_on=source,
                         calibrated_curves=ctx.errors is not None, notes=notes)
    outcome = targeted.GoalOutcome(goal, metric, original)
    search = targeted.Search(ctx, goal, found, outcome)
    seen: set[tuple] = set()
    for budget in budgets(front, original, points):
        pick: Allocation | None = front.within_budget(budget)
        if pick is None or not pick.ranks or tuple(sorted(pick.ranks.items())) in seen:
            continue
        seen.add(tuple(sorted(pick.ranks.items())))
        result.trials.append(search.build(pick, budget))
        result.budgets.append(budget)
    result.knee = knee(original, result.trials, metric)
    return result
