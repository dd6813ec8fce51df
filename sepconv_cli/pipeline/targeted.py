"""Conversion toward a goal: a budget (``--target-latency/-macs/-params``), an end-to-end output error
(``--max-output-error``), or the default (the cheapest plan within a stated tolerance; never slower).

``reach(context, goal)`` prices every convertible layer at every rank (``allocation.offers``), predicts
each choice's error (calibrated curves with inputs, kernel energy without), measures latency per layer
when latency matters, finds the best plan on the exact Pareto front (``planner.allocate``), builds it
(rewrite, calibrate, fastest equivalent structure), measures it end to end, and corrects the plan when
the measurement disagrees with the prediction. Units: MACs and params in elements, seconds at batch 1,
errors as relative L2 (predictions add squared errors across layers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sepconv_cli.backends.base import Backend, Converted, ConvertOptions, LoadedModel
from sepconv_cli.core.plans import Plan
from sepconv_cli.errors import UsageError
from sepconv_cli.pipeline import allocation as alloc
from sepconv_cli.pipeline.measure import Measured, Measurer
from sepconv_cli.planner import PlanOptions
from sepconv_cli.planner.allocate import Allocation, Front
from sepconv_cli.planner.targets import Metric, Target

DEFAULT_OUTPUT_ERROR = 0.05
"""End-to-end tolerance of the default plan with calibration inputs (relative L2 of the outputs, or of
the residual part for models whose output is the input plus a residual)."""

DATA_FREE_ENERGY = 0.9
"""Without data, a layer converts only at ranks keeping at least this share of its kernel's energy."""

DATA_FREE_ALONE = ("no rank keeping 90% of its kernel's energy was measured faster (data-free plan); "
                   "--calibrate with unlabeled inputs lets lower ranks be refit")

MAX_TRIALS = 4
"""Plans built and measured at most (the first prediction plus corrections)."""

OVERSHOOT = 0.85
"""A budget met below this share of it is re-aimed at a less aggressive plan (more accuracy)."""

MAX_RELAX = 1.5
"""A re-aim after an overshoot loosens the predicted-cost aim by at most this factor (timing noise)."""

SPEEDUP_SLACK = 0.97
"""A latency target counts as met at this share of the asked speed-up (timing noise)."""


class GoalKind(str, Enum):
    """What the user asked ``convert`` to reach."""

    BUDGET = "budget"
    OUTPUT_ERROR = "output-error"
    DEFAULT = "default"


@dataclass(frozen=True)
class Goal:
    """``target`` for BUDGET, ``max_output_error`` for OUTPUT_ERROR (and DEFAULT with data)."""

    kind: GoalKind
    target: Target | None = None
    max_output_error: float | None = None

    @property
    def metric(self) -> Metric:
        """The cost the allocator minimises or bounds (latency unless a budget names another)."""
        return self.target.metric if self.target is not None else Metric.LATENCY

    def describe(self) -> str:
        """The goal in flag words."""
        if self.target is not None:
            return self.target.describe()
        if self.kind is GoalKind.OUTPUT_ERROR:
            return f"--max-output-error {self.max_output_error:g}"
        return "default: cheapest plan that is not slower"


@dataclass(frozen=True)
class Trial:
    """One plan built and measured: predicted cost/error, measured figures, and whether it met the goal."""

    ranks: dict[str, int]
    predicted_cost: float
    predicted_error: float
    measured: Measured
    met: bool
    calibration: Any = None


@dataclass
class GoalOutcome:
    """What reaching the goal did: the front (predicted), every trial, the chosen one, and why a goal was
    missed. Costs are in the goal metric's unit; ``original_cost`` is the unconverted model's."""

    goal: Goal
    metric: Metric
    original_cost: float
    frontier: list[Allocation] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    chosen: int | None = None
    calibrated_curves: bool = False
    reason: str = ""
    measured_on: str = ""

    @property
    def met(self) -> bool:
        """True when the chosen trial met the goal."""
        return self.chosen is not None and self.trials[self.chosen].met


@dataclass
class Context:
    """The loaded model and what building a plan needs. ``calibrate(converted)`` refits a converted model
    and returns it with its calibration report (None without inputs); ``errors``: calibrated squared
    errors per layer and rank, when known; ``seconds``: measured per-layer latency, when known."""

    loaded: LoadedModel
    backend: Backend
    base: PlanOptions
    convert_options: ConvertOptions
    measurer: Measurer
    calibrate: Callable[[Converted], tuple[Converted, Any]]
    errors: dict[str, dict[int, float]] | None = None
    seconds: dict[str, alloc.Seconds] | None = None
    curves: Callable[[alloc.Offers], dict[str, dict[int, float]] | None] | None = None


@dataclass(frozen=True)
class Built:
    """The final plan and converted model, and the outcome that led to them."""

    plan: Plan
    converted: Converted | None
    outcome: GoalOutcome


def original_cost(ctx: Context, metric: Metric, whole: Measured) -> float:
    """The unconverted model's cost: total MACs or params from the report, measured seconds for latency."""
    report = ctx.loaded.report
    return {Metric.MACS: float(report.macs), Metric.PARAMS: float(report.params),
            Metric.LATENCY: whole.seconds_before or 0.0}[metric]


def _pick(front: Front, goal: Goal, budget: float, error_limit: float) -> Allocation | None:
    """The front point the goal asks for (None when a budget is out of reach)."""
    if goal.kind is GoalKind.BUDGET:
        return front.within_budget(budget)
    return front.within_error(error_limit)


def _met(goal: Goal, measured: Measured, budget: float) -> bool:
    """Whether a measured trial meets the goal."""
    if goal.kind is GoalKind.BUDGET:
        if goal.metric is Metric.LATENCY:
            return measured.cost(Metric.LATENCY) <= budget / SPEEDUP_SLACK
        return measured.cost(goal.metric) <= budget
    limit = goal.max_output_error
    return limit is None or (measured.error is not None and measured.error <= limit)


def _data_free_front(layers: list, fixed: float) -> Front:
    """Without data: only ranks keeping ``DATA_FREE_ENERGY`` of the kernel, errors counted as zero, so the
    cheapest front point is the fastest plan among those safe ranks (a layer never gets slower)."""
    safe = [alloc.LayerChoices(layer.name, tuple(
        alloc.Choice(c.rank, c.cost, 0.0) for c in layer.choices
        if c.rank is None or c.error <= 1.0 - DATA_FREE_ENERGY)) for layer in layers]
    return Front(safe, fixed)


class Search:
    """The correction loop: pick from the front, build, measure, re-aim, keep the best trial."""

    def __init__(self, ctx: Context, goal: Goal, found: alloc.Offers, outcome: GoalOutcome):
        self.ctx, self.goal, self.found, self.outcome = ctx, goal, found, outcome
        self.built: list[tuple[Plan, Converted | None]] = []
        self.reason = alloc.LEFT_ALONE

    def build(self, allocation: Allocation, budget: float) -> Trial:
        """Rewrite, refit and measure the plan of ``allocation``."""
        plan = alloc.assemble(self.found, allocation, self.reason)
        converted, calibration = None, None
        if plan.layers:
            converted = self.ctx.backend.rewrite(self.ctx.loaded, plan, self.ctx.convert_options)
            converted, calibration = self.ctx.calibrate(converted)
            converted = self.ctx.measurer.finish(converted)
            plan = converted.plan
        measured = self.ctx.measurer.measure(converted, plan)
        trial = Trial(dict(allocation.ranks), allocation.cost, allocation.error, measured,
                      _met(self.goal, measured, budget), calibration)
        self.outcome.trials.append(trial)
        self.built.append((plan, converted))
        return trial


def _best(outcome: GoalOutcome) -> int:
    """Index of the trial to ship. Among those that met the goal: the most accurate for a budget, the
    cheapest for an error limit. When none did: the one that came closest."""
    met = [i for i, t in enumerate(outcome.trials) if t.met]
    if met and outcome.goal.kind is GoalKind.BUDGET:
        return min(met, key=lambda i: (outcome.trials[i].measured.error or 0.0, outcome.trials[i].predicted_error))
    if met:
        return min(met, key=lambda i: outcome.trials[i].measured.cost(outcome.metric))
    if outcome.goal.kind is GoalKind.BUDGET:
        return min(range(len(outcome.trials)), key=lambda i: outcome.trials[i].measured.cost(outcome.metric))
    return min(range(len(outcome.trials)), key=lambda i: outcome.trials[i].measured.error or math.inf)


def reach(ctx: Context, goal: Goal) -> Built:
    """Find, build and verify the plan for ``goal`` (see the module docstring)."""
    found = alloc.offers(ctx.loaded.report, ctx.loaded.handle, ctx.base)
    metric = goal.metric
    if ctx.errors is None and ctx.curves is not None:
        ctx.errors = ctx.curves(found)
    whole = ctx.measurer.measure(None, Plan(layers=()))
    outcome = GoalOutcome(goal, metric, original_cost(ctx, metric, whole), calibrated_curves=ctx.errors is not None)
    if outcome.original_cost <= 0:
        raise UsageError(f"{ctx.loaded.report.model.path}: the model's {metric.value} could not be counted or timed "
                         "(unknown shapes?): give --input-shape")
    if metric is Metric.LATENCY and ctx.seconds is None:
        ctx.seconds = ctx.measurer.layer_seconds(found, whole.seconds_before)
    layers, layers_cost = alloc.choices(found, metric, ctx.errors, ctx.seconds)
    fixed = max(0.0, outcome.original_cost - layers_cost)
    data_free = goal.kind is GoalKind.DEFAULT and (goal.max_output_error is None or ctx.errors is None)
    front = _data_free_front(layers, fixed) if data_free else Front(layers, fixed)
    outcome.frontier = front.frontier()
    budget = goal.target.budget(outcome.original_cost) if goal.target else outcome.original_cost
    search = Search(ctx, goal, found, outcome)
    _correct(search, front, budget, data_free)
    outcome.chosen = _best(outcome)
    if outcome.met:
        outcome.reason = ""
    plan, converted = search.built[outcome.chosen]
    return Built(plan, converted, outcome)


def _correct(search: Search, front: Front, budget: float, data_free: bool) -> None:
    """Build the predicted plan, then re-aim while measurements say the prediction was off."""
    goal, outcome = search.goal, search.outcome
    limit = goal.max_output_error
    scale, aim, error_limit = 1.0, budget, (limit * limit if limit else 0.0)
    if data_free:
        search.reason = DATA_FREE_ALONE
        search.build(front.cheapest(), budget)
        return
    tried: set[tuple] = set()
    for _ in range(MAX_TRIALS):
        pick = _pick(front, goal, aim, error_limit / scale)
        if pick is None:
            outcome.reason = (f"no plan reaches {goal.describe()}: the cheapest costs "
                              f"{front.cheapest().cost / outcome.original_cost:.1%} of the original")
            pick = front.cheapest()
        key = tuple(sorted(pick.ranks.items()))
        if key in tried or (not pick.ranks and tried):
            break
        tried.add(key)
        trial = search.build(pick, budget)
        if not pick.ranks or (trial.met and not _overshot(goal, trial, budget)):
            break
        scale, aim = _reaim(goal, trial, scale, aim, budget)
        if aim is None:
            break


def _overshot(goal: Goal, trial: Trial, budget: float) -> bool:
    """A budget met with much to spare (measured cost under ``OVERSHOOT`` of it): a plan with less error
    may fit too."""
    return goal.kind is GoalKind.BUDGET and trial.measured.cost(goal.metric) < OVERSHOOT * budget


def _reaim(goal: Goal, trial: Trial, scale: float, aim: float, budget: float) -> tuple[float, Any]:
    """New (error scale, cost aim) after a trial: errors were off by the measured/predicted ratio; a
    measured cost off the prediction moves the cost aim by the same ratio (tighter when it cost more,
    looser when it cost less)."""
    measured = trial.measured
    if goal.kind is GoalKind.BUDGET:
        cost = measured.cost(goal.metric)
        if cost <= 0 or trial.predicted_cost <= 0 or not math.isfinite(cost):
            return scale, None
        aim = budget * trial.predicted_cost / cost * (0.98 if cost > budget else 1.0)
        return scale, min(aim, MAX_RELAX * max(budget, trial.predicted_cost))
    if measured.error is None or trial.predicted_error <= 0:
        return scale, None
    observed = measured.error * measured.error / trial.predicted_error
    return max(scale * 1.05, observed), aim
