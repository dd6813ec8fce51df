"""Renderers for `sepconv check`: a ``CheckResult`` -> text (table, JSON, Markdown; JUnit and GitHub
annotations live in ``junit.py`` and ``github.py``).

``CheckFormat`` is the user's choice and ``CHECK_RENDERERS`` maps every member to a ``"module:function"``
imported on demand (JSON never imports rich). Every renderer has the signature
``(result: CheckResult, options: CheckRenderOptions) -> str``. Values are shown in their metric's unit:
elements/MACs with SI suffixes, bytes in decimal units, shares as percentages. Every format shows an
``unknown`` outcome (value not established) as a failure with its reason, and a model that could not be
loaded as an error entry. Growth rows show the baseline figure and the growth over it. The table fits the
terminal (``fit.py``: budget names cut in the middle, a column that cannot fit named in a note).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sepconv_cli.core.budget import metric_kind
from sepconv_cli.core.checks import BudgetOutcome, CheckResult, ModelError
from sepconv_cli.core.records import SCHEMA_VERSION
from sepconv_cli.core.units import Kind, format_value
from sepconv_cli.lazy import resolve


class CheckFormat(str, Enum):
    """How `check` writes its results."""

    TABLE = "table"
    JSON = "json"
    JUNIT = "junit"
    GITHUB = "github"
    MARKDOWN = "markdown"
    CSV = "csv"
    HTML = "html"


CHECK_RENDERERS: dict[CheckFormat, str] = {
    CheckFormat.TABLE: "sepconv_cli.render.check:render_table",
    CheckFormat.JSON: "sepconv_cli.render.check:render_json",
    CheckFormat.JUNIT: "sepconv_cli.render.junit:render_junit",
    CheckFormat.GITHUB: "sepconv_cli.render.github:render_github",
    CheckFormat.MARKDOWN: "sepconv_cli.render.check:render_markdown",
    CheckFormat.CSV: "sepconv_cli.render.check:render_csv",
    CheckFormat.HTML: "sepconv_cli.render.html_check:render_check_html",
}

# file suffix -> format, for `--output FILE` without `--format`
CHECK_SUFFIX_FORMATS: dict[str, CheckFormat] = {
    ".json": CheckFormat.JSON,
    ".xml": CheckFormat.JUNIT,
    ".md": CheckFormat.MARKDOWN,
    ".markdown": CheckFormat.MARKDOWN,
    ".csv": CheckFormat.CSV,
    ".html": CheckFormat.HTML,
    ".htm": CheckFormat.HTML,
    ".txt": CheckFormat.TABLE,
}

UNKNOWN_TEXT = "?"
MAX_RATIO = 999  # past this many times the limit, headroom reads ">999x limit"


@dataclass(frozen=True)
class CheckRenderOptions:
    """``width``: terminal columns and ``color``: ANSI styles (table only); ``details``: (model, lines)
    shown under that model's budgets in the human formats (e.g. the layers that grew past a baseline)."""

    width: int = 100
    color: bool = False
    details: tuple[tuple[str, tuple[str, ...]], ...] = ()


CheckRenderer = Callable[[CheckResult, CheckRenderOptions], str]


def check_renderer_for(fmt: CheckFormat) -> CheckRenderer:
    """The renderer registered for ``fmt`` (imported now)."""
    return resolve(CHECK_RENDERERS[CheckFormat(fmt)])


def _share_of_limit(outcome: BudgetOutcome) -> str:
    """``"+41%"``, ``"-53%"``; past ``MAX_RATIO`` percent over, the value as a multiple of the limit."""
    share = outcome.headroom / outcome.limit
    if share >= -MAX_RATIO / 100:
        return f"{share * 100:+.0f}%"
    ratio = outcome.value / outcome.limit
    return f"{ratio:.0f}x limit" if ratio < MAX_RATIO + 0.5 else f">{MAX_RATIO}x limit"


def headroom_text(outcome: BudgetOutcome) -> str:
    """Headroom in the metric's unit plus its share of the limit: ``"813k (+41%)"``; negative = exceeded;
    far past the limit the share reads ``"(42x limit)"``. Shares show percentage points only."""
    if outcome.unknown:
        return UNKNOWN_TEXT
    kind = metric_kind(outcome.metric)
    value = format_value(outcome.headroom, kind)
    if not outcome.limit or kind is Kind.FRACTION:  # a share of a share reads badly
        return value
    return f"{value} ({_share_of_limit(outcome)})"


def cells(outcome: BudgetOutcome) -> tuple[str, str, str, str, str, str]:
    """Model, budget, value, limit, headroom and verdict of one outcome, as display text."""
    kind = metric_kind(outcome.metric)
    value = UNKNOWN_TEXT if outcome.unknown else format_value(outcome.value, kind)
    return (outcome.model, outcome.metric, value, format_value(outcome.limit, kind), headroom_text(outcome),
            outcome.verdict)


def baseline_text(outcome: BudgetOutcome) -> str:
    """A growth row's baseline figure and the growth over it: ``"1.19M, +2.1%"``; empty for other rows."""
    if outcome.baseline is None:
        return ""
    kind = metric_kind(outcome.metric)
    growth = outcome.growth
    return format_value(outcome.baseline, kind) + ("" if growth is None else f", {growth * 100:+.1f}%")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def summary_line(result: CheckResult) -> str:
    """``"2 of 9 budgets exceeded across 3 models"``, ``"... exceeded, 1 unknown ..."``, ``"1 of 9 budgets
    unknown ..."`` or ``"all 9 budgets hold across 3 models"``, then how many models did not load."""
    total = len(result.results)
    failed, unknown = result.count("FAIL"), result.count("unknown")
    budgets = _plural(total, "budget").split(" ", 1)[1]
    if failed:
        text = f"{failed} of {total} {budgets} exceeded" + (f", {unknown} unknown" if unknown else "")
    elif unknown:
        text = f"{unknown} of {total} {budgets} unknown"
    else:
        text = f"all {total} {budgets} hold"
    text += f" across {_plural(len(result.models), 'model')}"
    if result.errors:
        text += f"; {_plural(len(result.errors), 'model')} could not be loaded"
    return text


def error_text(error: ModelError) -> str:
    """One line for a model that could not be loaded, naming the model once."""
    return error.message if error.message.startswith(error.model) else f"{error.model}: {error.message}"


def render_table(result: CheckResult, options: CheckRenderOptions) -> str:
    """One block per model (its path as a heading, then one row per budget, green pass / red FAIL),
    and a summary line. The path stands alone so that long paths never squeeze the figures."""
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=options.width, force_terminal=options.color,
                      color_system="standard" if options.color else None, no_color=not options.color,
                      highlight=False)
    from sepconv_cli.render.fit import hidden_note
    from sepconv_cli.render.text import shorten, wrap_lines

    details = dict(options.details)
    width = max(options.width, 20)

    def lines(texts, style=""):
        for line in wrap_lines(texts, width):
            console.print(Text(line, style=style), soft_wrap=True)

    for model in result.models:
        outcomes = [r for r in result.results if r.model == model]
        console.print(Text(shorten(model, width), style="bold"), soft_wrap=True)
        if outcomes:
            fitted = _model_table(outcomes, width)
            console.print(fitted.table)
            if fitted.hidden:
                lines([hidden_note(fitted.hidden, width)])
        lines([f"{r.metric} unknown: {r.unknown}" for r in outcomes if r.unknown], "bold red")
        lines([f"error: {e.message}" for e in result.errors if e.model == model], "bold red")
        lines(list(details.get(model, ())))
    lines([summary_line(result)], "green" if result.ok else "bold red")
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _model_table(outcomes: list[BudgetOutcome], width: int):
    """The budget rows of one model (green pass, red FAIL or unknown), fitted to ``width``; a baseline
    column when some rows are growth rows."""
    from rich.text import Text

    from sepconv_cli.render.fit import Cell, Column, Role, fit_table

    growth = any(r.baseline is not None for r in outcomes)
    columns = [Column("budget", role=Role.NAME), Column("value", right=True), Column("limit", right=True)]
    columns += [Column("baseline", right=True, drop=1, label="baseline")] if growth else []
    columns += [Column("headroom", right=True), Column("result")]
    rows = []
    for outcome in outcomes:
        _, metric, value, limit, headroom, verdict = cells(outcome)
        style = "green" if outcome.passed else "bold red"
        row = [Cell(metric), value, limit] + ([baseline_text(outcome)] if growth else [])
        rows.append(row + [headroom, Text(verdict, style=style)])  # Text: no markup in paths
    return fit_table(columns, rows, width)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _row(r: BudgetOutcome) -> dict:
    """One outcome as JSON; an unknown one has ``value``/``headroom`` null, ``counted`` and ``unknown``."""
    row = {"model": r.model, "metric": r.metric, "unit": metric_kind(r.metric).value,
           "value": None if r.unknown else _number(r.value), "limit": _number(r.limit),
           "headroom": None if r.unknown else _number(r.headroom), "passed": r.passed,
           "status": r.verdict.lower(), "message": r.message}
    if r.unknown:
        row.update(counted=_number(r.value), unknown=r.unknown)
    if r.baseline is not None:
        row.update(baseline=_number(r.baseline), growth=r.growth)
    return row


def check_dict(result: CheckResult) -> dict:
    """The results as JSON-ready data: raw values (elements, MACs, bytes, fractions) and display text;
    ``errors`` lists the models that could not be loaded."""
    return {"schema_version": SCHEMA_VERSION, "ok": result.ok,
            "failed": sum(1 for r in result.results if not r.passed), "unknown": result.count("unknown"),
            "total": len(result.results), "models": sorted(result.models),
            "results": [_row(r) for r in result.results],
            "errors": [{"model": e.model, "error": e.message} for e in result.errors]}


def render_json(result: CheckResult, options: CheckRenderOptions) -> str:
    """Indented JSON with a trailing newline (never through rich)."""
    return json.dumps(check_dict(result), indent=2, ensure_ascii=False) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(result: CheckResult, options: CheckRenderOptions) -> str:
    """A Markdown section (heading, summary, table) fit for a pull request or a job summary."""
    growth = any(r.baseline is not None for r in result.results)
    lines = ["## sepconv check", "", f"{'✅' if result.ok else '❌'} {summary_line(result)}", "",
             "| model | budget | value | limit | " + ("baseline | " if growth else "") + "headroom | result |",
             "|---|---|---:|---:|" + ("---:|" if growth else "") + "---:|---|"]
    for outcome in result.results:
        rest = [_md_escape(c) for c in cells(outcome)[:-1]]
        if growth:
            rest.insert(4, _md_escape(baseline_text(outcome)))
        lines.append("| " + " | ".join([f"`{rest[0]}`", *rest[1:], _md_mark(outcome)]) + " |")
    for error in result.errors:
        empty = "| | | | | " + ("| " if growth else "")
        lines.append(f"| `{_md_escape(error.model)}` {empty}❌ **error**: {_md_escape(error.message)} |")
    for model, details in options.details:
        lines += ["", f"`{_md_escape(model)}`:", "", "```", *details, "```"]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("model", "metric", "unit", "value", "limit", "baseline", "growth", "headroom", "status", "message")


def render_csv(result: CheckResult, options: CheckRenderOptions) -> str:
    """One row per outcome (raw values in the metric's unit; empty cells where unknown), then one
    ``error`` row per model that could not be loaded."""
    import csv

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in result.results:
        row = _row(r)
        writer.writerow({"model": r.model, "metric": r.metric, "unit": row["unit"], "message": r.message,
                         "value": "" if row["value"] is None else row["value"], "limit": row["limit"],
                         "baseline": "" if r.baseline is None else _number(r.baseline),
                         "growth": "" if r.growth is None else f"{r.growth:.6f}", "status": row["status"],
                         "headroom": "" if row["headroom"] is None else row["headroom"]})
    for e in result.errors:
        writer.writerow({"model": e.model, "status": "error", "message": e.message})
    return buffer.getvalue()


def _md_mark(outcome: BudgetOutcome) -> str:
    if outcome.unknown:
        return f"❌ **unknown**: {_md_escape(outcome.unknown)}"
    return "✅ pass" if outcome.passed else "❌ **FAIL**"
