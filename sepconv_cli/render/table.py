"""Table renderer (rich): the human view of a report, readable in an 80-column terminal.

Sections: layers (name, op with conv geometry, output shape, params, MACs, share of MACs with a bar),
totals (params, MACs and FLOPs, buffers, weight bytes by dtype, file size), ops without a MAC formula
and rows whose MACs could not be counted, separable candidates with their savings and risk, exclusions
condensed by reason, and the whole-model summary. Returns a string; colour only when asked.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sepconv_cli.core.records import Report
from sepconv_cli.render import RenderOptions
from sepconv_cli.render import text as tx
from sepconv_cli.render.views import (
    Row,
    candidate_views,
    excluded_by_reason,
    layer_view,
    summary,
)

_BAR = 5
_MAX_NAMES = 4
_HEAVY = 0.1  # rows with at least this share of the model's MACs are bold


def new_table(title: str | None = None) -> Table:
    """A report table: a rule under the bold header, no borders, one space between columns."""
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, header_style="bold",
                 title=title, title_justify="left", title_style="bold")


def _layers_table(report: Report, rows: tuple[Row, ...]) -> Table:
    table = new_table(f"Layers of {report.model.path} ({report.model.format})")
    table.add_column("name", overflow="fold", ratio=4, min_width=12)
    table.add_column("op", overflow="ellipsis", no_wrap=True, ratio=2, min_width=8)
    table.add_column("output", overflow="fold", ratio=2, min_width=6)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("share", no_wrap=True)
    for row in rows:
        style = "bold" if row.share >= _HEAVY else ("dim" if not row.macs and not row.params else "")
        share = Text(tx.percent(None if tx.macs_text(row) == "?" else row.share).rjust(6) + " ")
        share.append(tx.bar(row.share, _BAR), style="magenta")
        table.add_row("  " * row.level + row.name, tx.op_text(row), tx.shapes(row.output_shapes),
                      tx.compact(row.params), tx.macs_text(row), share, style=style)
    return table


def _totals_lines(report: Report) -> list[str]:
    lines = [
        f"Params   {tx.exact_compact(report.params)}   buffers {tx.exact_compact(report.buffers)}",
        f"MACs     {tx.total_macs(report)}",
        f"FLOPs    {tx.exact_compact(report.flops)}{tx.not_counted(report)}   (FLOPs = 2 x MACs)",
    ]
    if report.weight_bytes:
        parts = ", ".join(f"{dtype} {tx.size(n)}" for dtype, n in report.weight_bytes)
        lines.append(f"Weights  {tx.size(report.total_weight_bytes)} ({parts})")
    if report.model.file_size:
        lines.append(f"File     {tx.size(report.model.file_size)}")
    if report.extra:
        lines.append("Other    " + ", ".join(f"{key} {tx.exact(value)}" for key, value in report.extra))
    return lines


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:_MAX_NAMES])
    return shown + (f", ... ({len(names) - _MAX_NAMES} more)" if len(names) > _MAX_NAMES else "")


def _uncounted_lines(report: Report) -> list[str]:
    lines = []
    if report.uncounted:
        ops = ", ".join(f"{u.op} x{u.count}" for u in report.uncounted)
        lines.append(f"Ops without a MAC formula (not in the total): {ops}")
    unknown = report.unknown_rows
    if unknown:
        lines.append(f"Rows not counted ({len(unknown)}), MACs missing from the total:")
        lines.extend(f"  {row.name} ({row.op}): {row.note or 'shape unknown'}" for row in unknown)
    return lines


def _candidates_table(report: Report) -> Table:
    table = new_table("Separable candidates")
    table.add_column("name", overflow="fold", ratio=1, min_width=12)
    for header in ("params", "MACs"):
        table.add_column(header, no_wrap=True)
    for header in ("saved", "E1", "T", "saved"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("risk", no_wrap=True)
    for view in candidate_views(report):
        cand = view.cand
        rank_saved = "-" if view.macs_share_rank is None else tx.percent(view.macs_share_rank)
        table.add_row(cand.name if cand.convertible else f"{cand.name} *",
                      tx.arrow(cand.params, cand.params_separable), tx.arrow(cand.macs, cand.macs_separable),
                      tx.percent(view.macs_share_t1), tx.energy(cand.energy_t1), tx.rank_text(cand), rank_saved,
                      tx.risk_text(cand), style="" if cand.convertible else "dim")
    return table


def _legend(report: Report) -> list[str]:
    target = report.energy_target if report.energy_target is not None else 0.9
    lines = ["params, MACs: now → at T=1; saved: share of model MACs; E1: energy kept at T=1;",
             f"T: smallest rank keeping {target:g} of the energy, and what it saves."]
    lines.extend(f"* {c.name}: {c.reason or 'not convertible'}"
                 for c in report.candidates if not c.convertible)
    return lines + tx.energy_notes(report)


def _summary_table(report: Report) -> Table | None:
    outcomes = [o for o in summary(report) if o.converted]
    if not outcomes:
        return None
    table = new_table("Whole model if the candidates convert")
    table.add_column("converted")
    table.add_column("params", no_wrap=True)
    table.add_column("MACs", no_wrap=True)
    for outcome in outcomes:
        p_ratio, m_ratio = outcome.ratios(report)
        table.add_row(f"{outcome.converted} at {outcome.label}",
                      f"{tx.arrow(report.params, outcome.params)} ({tx.ratio(p_ratio)})",
                      f"{tx.arrow(report.macs, outcome.macs)} ({tx.ratio(m_ratio)})")
    return table


def _excluded_lines(report: Report) -> list[str]:
    groups = excluded_by_reason(report)
    if not groups:
        return []
    lines = [f"Not candidates ({len(report.excluded)}):"]
    lines.extend(f"  {reason}: {_names(names)}" for reason, names in groups)
    return lines


def _layer_section(console: Console, report: Report, options: RenderOptions) -> None:
    rows = layer_view(report, options.view)
    console.print(_layers_table(report, rows))
    shown = sum(row.count for row in rows if row.level == 0)
    if shown < len(report.layers):
        console.print(Text(f"Showing {shown} of {len(report.layers)} layers; totals are for the whole model."))
    if any(layer.conv is not None for layer in report.layers):
        console.print(Text(tx.CONV_LEGEND))
    console.print()
    for line in _totals_lines(report) + _uncounted_lines(report):
        console.print(Text(line))
    console.print()


def _candidate_section(console: Console, report: Report) -> None:
    if not report.candidates:
        console.print(Text("No separable candidates."))
        return
    console.print(_candidates_table(report))
    for line in _legend(report):
        console.print(Text(line))
    console.print()
    outcomes = _summary_table(report)
    console.print(outcomes if outcomes is not None else Text("No candidate is convertible."))


def render_table(report: Report, options: RenderOptions) -> str:
    """The report as a rich table, ``options.width`` columns wide, ANSI colour only if ``options.color``."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=options.width, color_system="standard" if options.color else None,
                      force_terminal=options.color, no_color=not options.color, highlight=False,
                      emoji=False, legacy_windows=False, soft_wrap=False)
    _layer_section(console, report, options)
    _candidate_section(console, report)
    for line in _excluded_lines(report):
        console.print(Text(line))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
