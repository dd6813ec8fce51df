"""HTML page of `sepconv check` (self-contained, see ``html.page``): the summary, then per model a budget
table with a headroom bar per row (the value against its limit, the limit marked), growth rows with the
baseline figure and the growth, and any per-layer details the caller attaches. Values in the metric's
unit (elements/MACs, bytes, shares).
"""

from __future__ import annotations

from html import escape

from sepconv_cli.core.budget import metric_kind
from sepconv_cli.core.checks import BudgetOutcome, CheckResult
from sepconv_cli.core.units import format_value
from sepconv_cli.render import svg
from sepconv_cli.render.check import CheckRenderOptions, baseline_text, cells, error_text, summary_line
from sepconv_cli.render.html import page, section, table

LIMIT_AT = 0.75
"""Where the limit sits along a headroom bar (the rest shows how far past it a value went)."""


def headroom_bar(outcome: BudgetOutcome) -> str:
    """The value as a bar against its limit (marked at ``LIMIT_AT`` of the width); empty when unknown."""
    if outcome.unknown or not outcome.limit:
        return ""
    share = outcome.value / outcome.limit * LIMIT_AT
    color = svg.AFTER if outcome.passed else svg.WARN
    label = f"{format_value(outcome.value, metric_kind(outcome.metric))} of {format_value(outcome.limit, metric_kind(outcome.metric))}"
    return svg.bar(min(share, 1.0) if outcome.passed else max(share, LIMIT_AT + 0.02), 140, 10, color,
                   limit=LIMIT_AT, label=label)


def _model_section(result: CheckResult, model: str, details: tuple[str, ...]) -> str:
    outcomes = [r for r in result.results if r.model == model]
    rows, classes = [], []
    for outcome in outcomes:
        _, metric, value, limit, headroom, verdict = cells(outcome)
        reason = f"<br><small>{escape(outcome.unknown)}</small>" if outcome.unknown else ""
        rows.append([escape(metric), escape(value), escape(limit), escape(baseline_text(outcome)),
                     f"{escape(headroom)} {headroom_bar(outcome)}", f'<span class="verdict">{escape(verdict)}</span>'
                     + reason])
        classes.append("pass" if outcome.passed else "fail")
    body = table(["budget", "value", "limit", "baseline", "headroom", "result"], rows, numeric=(1, 2, 3, 4),
                 classes=classes) if rows else ""
    body += "".join(f'<p class="legend" style="color:#b3261e">error: {escape(error_text(e))}</p>'
                    for e in result.errors if e.model == model)
    if details:
        body += "<pre class=\"mono\">" + escape("\n".join(details)) + "</pre>"
    return section("model-" + str(result.models.index(model)), model, body)


def render_check_html(result: CheckResult, options: CheckRenderOptions) -> str:
    """The check results as one self-contained HTML page."""
    details = dict(options.details)
    head = (f"<h1>sepconv check</h1><p class=\"sub {'pass' if result.ok else 'fail'}\">"
            f"{'&#10004;' if result.ok else '&#10008;'} {escape(summary_line(result))}</p>"
            '<p class="legend">Bars: the value against its limit (the dark tick); red past it.</p>')
    return page("sepconv check", [head, *(_model_section(result, m, details.get(m, ())) for m in result.models)],
                "check")
