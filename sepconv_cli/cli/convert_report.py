"""`convert --report FILE`: the conversion report written to a file in the format its suffix names
(``.json``, ``.html``, ``.txt``), besides what `convert` prints. With ``--sweep`` the page shows the
measured frontier, the knee marked. An unknown suffix is a usage error raised before any work.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer

from sepconv_cli.cli.common import format_for, terminal_width, write_atomic


class ReportFormat(str, Enum):
    """What ``--report`` writes."""

    JSON = "json"
    HTML = "html"
    TABLE = "table"


REPORT_SUFFIXES: dict[str, ReportFormat] = {".json": ReportFormat.JSON, ".html": ReportFormat.HTML,
                                            ".htm": ReportFormat.HTML, ".txt": ReportFormat.TABLE}


def report_format(path: str | None) -> ReportFormat | None:
    """The format ``path``'s suffix names (None without ``--report``); UsageError for any other suffix."""
    return None if path is None else format_for(None, path, REPORT_SUFFIXES, ReportFormat.JSON)


def frontier_points(sweep: Any) -> list[dict]:
    """A ``pipeline.sweep.SweepResult`` as the points ``html_convert.frontier_chart`` draws."""
    points = []
    for index, trial in enumerate(sweep.trials):
        m = trial.measured
        points.append({"label": f"{sweep.original_cost / trial.predicted_cost:.2f}x budget, {len(trial.ranks)} layers",
                       "macs": m.macs, "latency_ms": None if m.seconds_after is None else m.seconds_after * 1e3,
                       "error": m.error, "chosen": index == sweep.knee})
    return points


def _text(result: Any, sweep: Any, fmt: ReportFormat) -> str:
    if sweep is not None:
        from sepconv_cli.render.html_convert import render_frontier_html
        from sepconv_cli.render.sweep import render_sweep_json, render_sweep_table

        texts = {ReportFormat.JSON: render_sweep_json, ReportFormat.TABLE: render_sweep_table,
                 ReportFormat.HTML: lambda s: render_frontier_html(s.source, frontier_points(s))}
        return texts[fmt](sweep)
    from sepconv_cli.render.convert import render_json, render_table
    from sepconv_cli.render.html_convert import render_convert_html

    texts = {ReportFormat.JSON: render_json, ReportFormat.HTML: render_convert_html,
             ReportFormat.TABLE: lambda r: render_table(r, width=terminal_width())}
    return texts[fmt](result)


def write_report(path: str | None, result: Any = None, sweep: Any = None) -> None:
    """Write the report of ``result`` (or of ``sweep``) to ``path`` when one was asked for."""
    fmt = report_format(path)
    if path is None or fmt is None:
        return
    write_atomic(path, _text(result, sweep, fmt))
    typer.echo(f"sepconv convert: wrote {fmt.value} report to {path}", err=True)
