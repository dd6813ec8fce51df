"""``convert --sweep`` output: the measured frontier as a table with a small terminal chart, or JSON.

Units: latency in milliseconds at batch 1; MACs and params compact (``1.2M``); factors over the original
(> 1: cheaper or faster); errors as relative L2 of the outputs (or of the residual part).
"""

from __future__ import annotations

import json

from sepconv_cli.core.records import SCHEMA_VERSION
from sepconv_cli.pipeline.sweep import SweepResult
from sepconv_cli.render import text
from sepconv_cli.render.convert_goal import goal_trial_dict

CHART_WIDTH = 50
CHART_HEIGHT = 10


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1e3:.2f}"


def _row(result: SweepResult, index: int) -> list[str]:
    trial = result.trials[index]
    m = trial.measured
    speed = m.speedup
    return [("*" if index == result.knee else " ") + f"{result.original_cost / trial.predicted_cost:.2f}x",
            str(len(trial.ranks)), text.compact(m.macs), text.compact(m.params), _ms(m.seconds_after),
            "?" if speed is None else f"{speed:.2f}x", "?" if m.error is None else f"{m.error:.3g}",
            "-" if m.agreement is None else text.percent(m.agreement)]


HEADER = ["budget", "layers", "MACs", "params", "ms", "speed-up", "error", "top-1"]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    fmt = [r[0].ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(r[1:], widths[1:])) for r in rows]
    return [fmt[0], "-" * len(fmt[0])] + fmt[1:]


def chart(result: SweepResult) -> list[str]:
    """Speed-up (x axis) against error (y axis), one letter per point (``K`` marks the knee)."""
    pts = [(t.measured.speedup, t.measured.error) for t in result.trials]
    pts = [(i, s, e) for i, (s, e) in enumerate(pts) if s is not None and e is not None]
    if len(pts) < 2:
        return []
    x0, x1 = min(1.0, *(s for _, s, _ in pts)), max(s for _, s, _ in pts)
    y1 = max(e for _, _, e in pts) or 1.0
    grid = [[" "] * CHART_WIDTH for _ in range(CHART_HEIGHT)]
    for i, s, e in pts:
        col = round((s - x0) / ((x1 - x0) or 1.0) * (CHART_WIDTH - 1))
        row = CHART_HEIGHT - 1 - round(e / y1 * (CHART_HEIGHT - 1))
        grid[row][col] = "K" if i == result.knee else chr(ord("a") + i % 26)
    lines = [f"{y1:8.3g} |" + "".join(grid[0])] + ["         |" + "".join(r) for r in grid[1:-1]]
    lines += [f"{0:8.3g} |" + "".join(grid[-1]), "          " + "-" * CHART_WIDTH,
              f"          {x0:.2f}x" + " " * (CHART_WIDTH - 12) + f"{x1:.2f}x",
              "          speed-up (measured) -> ; error up; letters follow the table rows, K the knee"]
    return lines


def render_sweep_table(result: SweepResult) -> str:
    """The frontier as text: header, table (knee marked ``*``), chart, notes."""
    first = result.trials[0].measured.error_of if result.trials else "output"
    lines = [f"sweep of {result.source}: {result.metric.value} budgets, measured on {result.measured_on}",
             f"original: {_ms(result.original_seconds)} ms at batch 1; error = relative L2 of the {first}",
             f"error curves: {'calibrated' if result.calibrated_curves else 'data-free (kernel energy)'}", ""]
    if not result.trials:
        return "\n".join(lines + ["no plan on the frontier saves anything: nothing to convert"]) + "\n"
    lines += _table([HEADER] + [_row(result, i) for i in range(len(result.trials))])
    if result.knee is not None:
        lines.append(f"* knee: the best trade-off measured (budget {_row(result, result.knee)[0].strip('*')})")
    lines += [""] + chart(result) + [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def render_sweep_json(result: SweepResult) -> str:
    """The frontier as JSON (stable keys; costs in the metric's unit)."""
    return json.dumps({
        "schema_version": SCHEMA_VERSION, "model": {"path": result.source}, "metric": result.metric.value,
        "original_cost": result.original_cost, "original_seconds": result.original_seconds,
        "measured_on": result.measured_on, "calibrated_curves": result.calibrated_curves,
        "knee": result.knee,
        "points": [dict(goal_trial_dict(result.metric, t), budget=b) for t, b in zip(result.trials, result.budgets)],
        "notes": result.notes,
    }, indent=2) + "\n"
