"""The goal part of `convert`'s report: what was asked, the plans tried (predicted beside measured), the
verdict, and a next step when the goal was missed. Text for the table (stderr) and a dict for JSON.

Units: MACs and params in elements, latency in milliseconds (batch 1), errors as relative L2; speed-ups
and reductions as factors over the original (> 1: better).
"""

from __future__ import annotations

from sepconv_cli.pipeline.targeted import GoalKind, GoalOutcome, Trial
from sepconv_cli.planner.targets import Metric
from sepconv_cli.render import text

_UNIT = {Metric.LATENCY: "speed-up", Metric.MACS: "fewer MACs", Metric.PARAMS: "fewer params"}


def _factor(original: float, cost: float | None) -> str:
    if cost is None or cost <= 0:
        return "?"
    return f"{original / cost:.2f}x"


def _err(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def _measured_cost(outcome: GoalOutcome, trial: Trial) -> float | None:
    cost = trial.measured.cost(outcome.metric)
    return None if cost == float("inf") else cost


def _predicted_error(trial: Trial) -> float:
    return trial.predicted_error ** 0.5


def trial_line(outcome: GoalOutcome, index: int, trial: Trial) -> str:
    """One tried plan: layers converted, predicted vs measured factor and error, verdict."""
    m = trial.measured
    mark = "*" if index == outcome.chosen else " "
    agreement = "" if m.agreement is None else f", top-1 {text.percent(m.agreement)}"
    # without calibrated curves the prediction is a kernel-energy proxy, not an output error: not shown
    predicted = f"predicted {_err(_predicted_error(trial))}, measured " if outcome.calibrated_curves else ""
    return (f"{mark} {len(trial.ranks)} layers: {_UNIT[outcome.metric]} predicted "
            f"{_factor(outcome.original_cost, trial.predicted_cost)}, measured "
            f"{_factor(outcome.original_cost, _measured_cost(outcome, trial))}; {m.error_of} error "
            f"{predicted}{_err(m.error)}{agreement}{'' if trial.met else ' (missed)'}")


def _next_step(outcome: GoalOutcome) -> str:
    """What to try when the goal was missed."""
    if not outcome.calibrated_curves and outcome.goal.kind is not GoalKind.BUDGET:
        return "give unlabeled inputs with --calibrate for calibrated error curves"
    if outcome.goal.kind is GoalKind.BUDGET:
        return "loosen the target, or see the trade-offs with --sweep"
    return "allow a larger --max-output-error, or see the trade-offs with --sweep"


def goal_lines(outcome: GoalOutcome | None, width: int) -> list[str]:
    """The goal section of the text report (empty without a goal)."""
    if outcome is None:
        return []
    lines = text.wrap_parts("goal: ", [outcome.goal.describe(),
                                       f"({'calibrated' if outcome.calibrated_curves else 'data-free'} "
                                       f"error curves; measured on {outcome.measured_on or 'nothing'})"],
                            width, sep=" ", indent="  ")
    lines += [trial_line(outcome, i, t) for i, t in enumerate(outcome.trials)]
    if outcome.met:
        lines.append("  the chosen plan (*) meets the goal")
    else:
        reason = outcome.reason or "no plan tried met the goal; the chosen one (*) came closest"
        lines += text.wrap_parts("  WARNING: ", [reason, f"next: {_next_step(outcome)}"], width, sep="; ")
    return lines


def goal_trial_dict(metric: Metric, trial: Trial) -> dict:
    """One trial as JSON values (costs in the metric's unit: elements or seconds)."""
    m = trial.measured
    cost = m.cost(metric)
    return {"ranks": dict(trial.ranks), "predicted_cost": trial.predicted_cost,
            "predicted_error": _predicted_error(trial), "measured_cost": None if cost == float("inf") else cost,
            "measured_error": m.error, "error_of": m.error_of, "agreement": m.agreement,
            "seconds_before": m.seconds_before, "seconds_after": m.seconds_after, "macs": m.macs,
            "params": m.params, "forms": dict(m.forms), "met": trial.met}


def goal_dict(outcome: GoalOutcome | None) -> dict | None:
    """The goal outcome as JSON values (costs in the metric's unit: elements or seconds)."""
    if outcome is None:
        return None
    return {
        "goal": outcome.goal.describe(), "kind": outcome.goal.kind.value, "metric": outcome.metric.value,
        "original_cost": outcome.original_cost, "met": outcome.met, "reason": outcome.reason or None,
        "calibrated_curves": outcome.calibrated_curves, "measured_on": outcome.measured_on,
        "chosen": outcome.chosen, "trials": [goal_trial_dict(outcome.metric, t) for t in outcome.trials],
        "frontier": [{"cost": a.cost, "predicted_error": a.error ** 0.5, "layers": a.converted()}
                     for a in outcome.frontier],
    }
