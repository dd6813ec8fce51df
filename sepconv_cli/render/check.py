"""Renderers for `sepconv check`: a ``CheckResult`` -> text (table, JSON, Markdown; JUnit and GitHub
annotations live in ``junit.py`` and ``github.py``).

``CheckFormat`` is the user's choice and ``CHECK_RENDERERS`` maps every member to a ``"module:function"``
imported on demand (JSON never imports rich). Every renderer has the signature
``(result: CheckResult, options: CheckRenderOptions) -> str``. Values are shown in their metric's unit:
elements/MACs with SI suffixes, bytes in decimal units, shares as percentages.
"""

from __future__ import annotations

from sepconv_cli.lazy import resolve
import io
import json
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from sepconv_cli.budget import metric_kind
from sepconv_cli.records import SCHEMA_VERSION, CheckResult, Violation
from sepconv_cli.units import Kind, format_value


class CheckFormat(str, Enum):
    """How `check` writes its results."""

    TABLE = "table"
    JSON = "json"
    JUNIT = "junit"
    GITHUB = "github"
    MARKDOWN = "markdown"


CHECK_RENDERERS: dict[CheckFormat, str] = {
    CheckFormat.TABLE: "sepconv_cli.render.check:render_table",
    CheckFormat.JSON: "sepconv_cli.render.check:render_json",
    CheckFormat.JUNIT: "sepconv_cli.render.junit:render_junit",
    CheckFormat.GITHUB: "sepconv_cli.render.github:render_github",
    CheckFormat.MARKDOWN: "sepconv_cli.render.check:render_markdown",
}


@dataclass(frozen=True)
class CheckRenderOptions:
    """``width``: terminal columns and ``color``: ANSI styles (table only)."""

    width: int = 100
    color: bool = False


CheckRenderer = Callable[[CheckResult, CheckRenderOptions], str]


def check_renderer_for(fmt: CheckFormat) -> CheckRenderer:
    """The renderer registered for ``fmt`` (imported now)."""
    return resolve(CHECK_RENDERERS[CheckFormat(fmt)])


def headroom_text(outcome: Violation) -> str:
    """Headroom in the metric's unit plus its share of the limit: ``"813k (+41%)"``; negative = exceeded.
    Shares show their headroom in percentage points only."""
    kind = metric_kind(outcome.metric)
    value = format_value(outcome.headroom, kind)
    if not outcome.limit or kind is Kind.FRACTION:  # a share of a share reads badly
        return value
    return f"{value} ({outcome.headroom / outcome.limit * 100:+.0f}%)"


def cells(outcome: Violation) -> tuple[str, str, str, str, str, str]:
    """Model, budget, value, limit, headroom and verdict of one outcome, as display text."""
    kind = metric_kind(outcome.metric)
    return (outcome.model, outcome.metric, format_value(outcome.value, kind), format_value(outcome.limit, kind),
            headroom_text(outcome), "pass" if outcome.passed else "FAIL")


def summary_line(result: CheckResult) -> str:
    """``"2 of 9 budgets exceeded across 3 models"`` or ``"all 9 budgets hold across 3 models"``."""
    total = len(result.results)
    failed = sum(1 for r in result.results if not r.passed)
    models = len({r.model for r in result.results})
    where = f"across {models} model{'s' if models != 1 else ''}"
    if failed:
        return f"{failed} of {total} budget{'s' if total != 1 else ''} exceeded {where}"
    return f"all {total} budget{'s' if total != 1 else ''} hold {where}"


def render_table(result: CheckResult, options: CheckRenderOptions) -> str:
    """One block per model (its path as a heading, then one row per budget, green pass / red FAIL),
    and a summary line. The path stands alone so that long paths never squeeze the figures."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=options.width, force_terminal=options.color,
                      color_system="standard" if options.color else None, no_color=not options.color,
                      highlight=False)
    for model in dict.fromkeys(r.model for r in result.results):
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for title, justify in (("budget", "left"), ("value", "right"), ("limit", "right"),
                               ("headroom", "right"), ("result", "left")):
            table.add_column(title, justify=justify, no_wrap=True)
        for outcome in (r for r in result.results if r.model == model):
            style = "green" if outcome.passed else "bold red"
            _, *rest, verdict = cells(outcome)
            table.add_row(*(Text(c) for c in rest), Text(verdict, style=style))  # Text: no markup in paths
        console.print(Text(model, style="bold"), soft_wrap=True)
        console.print(table)
    console.print(summary_line(result), style="green" if result.ok else "bold red")
    return buffer.getvalue()


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def check_dict(result: CheckResult) -> dict:
    """The results as JSON-ready data: raw values (elements, MACs, bytes, fractions) and display text."""
    rows = [{"model": r.model, "metric": r.metric, "unit": metric_kind(r.metric).value,
             "value": _number(r.value), "limit": _number(r.limit), "headroom": _number(r.headroom),
             "passed": r.passed, "message": r.message} for r in result.results]
    return {"schema_version": SCHEMA_VERSION, "ok": result.ok,
            "failed": sum(1 for r in result.results if not r.passed), "total": len(result.results),
            "models": sorted({r.model for r in result.results}), "results": rows}


def render_json(result: CheckResult, options: CheckRenderOptions) -> str:
    """Indented JSON with a trailing newline (never through rich)."""
    return json.dumps(check_dict(result), indent=2, ensure_ascii=False) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(result: CheckResult, options: CheckRenderOptions) -> str:
    """A Markdown section (heading, summary, table) fit for a pull request or a job summary."""
    lines = ["## sepconv check", "", f"{'✅' if result.ok else '❌'} {summary_line(result)}", "",
             "| model | budget | value | limit | headroom | result |",
             "|---|---|---:|---:|---:|---|"]
    for outcome in result.results:
        rest = [_md_escape(c) for c in cells(outcome)[:-1]]
        mark = "✅ pass" if outcome.passed else "❌ **FAIL**"
        lines.append("| " + " | ".join([f"`{rest[0]}`", *rest[1:], mark]) + " |")
    return "\n".join(lines) + "\n"
