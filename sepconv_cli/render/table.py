"""Table renderer (rich): the human view of a report, fitted to the terminal width.

Sections: the model and its input signature (names, dtypes, shapes); layers (name, op with conv
geometry, output shape, params, MACs, share of MACs, and a bar from 100 columns up); totals (params,
MACs and FLOPs, buffers, weight bytes by dtype, file size); ops without a MAC formula and rows whose MACs
could not be counted; separable candidates with their savings and risk; exclusions condensed by reason;
and the whole-model summary. ONNX node names read as module paths here (``names.py``), cut in the middle
when the terminal is narrow (``fit.py``); a column that cannot fit is named in a note, never dropped
silently. Returns a string; colour only when asked.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sepconv_cli.core.records import Report
from sepconv_cli.render import RenderOptions
from sepconv_cli.render import text as tx
from sepconv_cli.render.candidates import candidate_views, excluded_by_reason, summary
from sepconv_cli.render.fit import Cell, Column, Role, fit_table, hidden_note
from sepconv_cli.render.fit import new_table as _fit_table
from sepconv_cli.render.names import display_names, row_names
from sepconv_cli.render.views import Row, layer_view

_BAR = 6
_MAX_NAMES = 4
_HEAVY = 0.1  # rows with at least this share of the model's MACs are bold


def new_table(title: str | None = None) -> Table:
    """A report table: a rule under the bold header, no borders, one space between columns (kept for
    renderers that build their own tables)."""
    table = _fit_table()
    table.title, table.title_justify, table.title_style = title, "left", "bold"
    return table


LAYER_COLUMNS = (
    Column("name", role=Role.NAME), Column("op"), Column("output", drop=1, label="output shape"),
    Column("params", right=True), Column("MACs", right=True), Column("share", right=True),
    Column("", role=Role.BAR),
)

CANDIDATE_COLUMNS = (
    Column("name", role=Role.NAME), Column("params"), Column("MACs"), Column("saved", right=True),
    Column("E1", right=True), Column("T", right=True), Column("saved", right=True, drop=2, label="saved at T"),
    Column("risk", drop=1, label="risk (it reads E1)"),
)


def _layers_table(report: Report, rows: tuple[Row, ...], width: int):
    cells = []
    styles = []
    for row, name in zip(rows, row_names(report, rows)):
        styles.append("bold" if row.share >= _HEAVY else ("dim" if not row.macs and not row.params else ""))
        share = tx.percent(None if tx.macs_text(row) == "?" else row.share)
        cells.append([Cell(name, row.level), tx.op_text(row), tx.shapes(row.output_shapes), tx.compact(row.params),
                      tx.macs_text(row), share, Text(tx.bar(row.share, _BAR), style="magenta")])
    return fit_table(LAYER_COLUMNS, cells, width, styles)


def header_lines(report: Report, width: int, title: str = "Layers of") -> list[str]:
    """``Layers of PATH (FORMAT)`` and ``Inputs: name dtype[shape], ...``, broken to fit ``width``."""
    head = f"{title} "
    lines = tx.wrap_parts(head, [tx.shorten(report.model.path, max(20, width - len(head) - 2)),
                                 f"({tx.source_text(report.model)})"], width, sep=" ", indent="  ")
    inputs = [tx.tensor_signature(t) for t in report.model.inputs]
    if inputs:
        lines += tx.wrap_parts("Inputs: ", inputs, width, indent="  ")
    return lines


def _totals_lines(report: Report) -> list[str]:
    lines = [f"Input    {tx.assumed_text(report.model)}"] if report.model.assumed_dims else []
    if report.model.shape_source:
        lines.append(f"Shapes   from {report.model.shape_source} (static inference left some unknown)")
    lines += [
        f"Params   {tx.exact_compact(report.params)}   buffers {tx.exact_compact(report.buffers)}",
        f"MACs     {tx.total_macs(report)}",
        *([f"         {tx.symbolic_where(report)}"] if report.macs_symbolic is not None else []),
        f"FLOPs    {tx.total_flops(report)}   (FLOPs = 2 x MACs)",
    ]
    if report.weight_bytes:
        parts = ", ".join(f"{dtype} {tx.size(n)}" for dtype, n in report.weight_bytes)
        lines.append(f"Weights  {tx.size(report.total_weight_bytes)} ({parts})")
    lines.append(f"File     {tx.file_size(report.model)}")
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
    unknown = tuple(row for row in report.unknown_rows if not row.macs_symbolic)
    in_formula = len(report.unknown_rows) - len(unknown)
    if in_formula and report.macs_symbolic is not None:
        symbols = " and ".join(report.macs_symbolic.symbols)
        lines.append(f"{in_formula} rows depend on {symbols}: in the formula above (--explain NAME shows each)")
    if unknown:
        lines.append(f"Rows not counted ({len(unknown)}), MACs missing from the total:")
        lines.extend(f"  {row.name} ({row.op}): {row.note or 'shape unknown'}" for row in unknown)
    return lines


def _candidates_table(report: Report, options: RenderOptions):
    shown = display_names(layer.name for layer in report.layers)
    cells, styles = [], []
    for view in candidate_views(report, options.view.top):
        cand = view.cand
        name = shown.get(cand.name, cand.name)
        rank_saved = "-" if view.macs_share_rank is None else tx.percent(view.macs_share_rank)
        cells.append([Cell(name if cand.convertible else f"{name} *"), tx.arrow(cand.params, cand.params_separable),
                      tx.arrow(cand.macs, cand.macs_separable), tx.percent(view.macs_share_t1),
                      tx.energy(cand.energy_t1), tx.rank_text(cand), rank_saved, tx.risk_text(cand)])
        styles.append("" if cand.convertible else "dim")
    return fit_table(CANDIDATE_COLUMNS, cells, options.width, styles)


def _legend(report: Report) -> list[str]:
    target = report.energy_target if report.energy_target is not None else 0.9
    lines = ["params, MACs: now → at T=1; saved: share of model MACs; E1: energy kept at T=1;",
             f"T: smallest rank keeping {target:g} of the energy, and what it saves."]
    lines.extend(f"* {c.name}: {c.reason or 'not convertible'}"
                 for c in report.candidates if not c.convertible)
    return lines + tx.energy_notes(report)


def _summary_table(report: Report, top: int | None):
    outcomes = [o for o in summary(report, top) if o.converted]
    if not outcomes:
        return None
    table = _fit_table()
    for header in ("converted", "params", "MACs"):
        table.add_column(header, no_wrap=True)
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
    shown = display_names(layer.name for layer in report.layers)
    lines = [f"Not candidates ({len(report.excluded)}):"]
    lines.extend(f"  {reason}: {_names(tuple(shown.get(n, n) for n in names))}" for reason, names in groups)
    return lines


def _print_lines(console: Console, lines: list[str], style: str = "") -> None:
    """Plain lines, broken between words to the console width (never inside a word)."""
    for line in tx.wrap_lines(lines, console.width):
        console.print(Text(line, style=style), soft_wrap=True)


def _layer_section(console: Console, report: Report, options: RenderOptions) -> None:
    rows = layer_view(report, options.view)
    _print_lines(console, header_lines(report, options.width), "bold")
    console.print()
    fitted = _layers_table(report, rows, options.width)
    console.print(fitted.table)
    notes = [hidden_note(fitted.hidden, options.width)] if fitted.hidden else []
    shown = sum(row.count for row in rows if row.level == 0)
    if shown < len(report.layers):
        notes.append(f"Showing the {len(rows)} heaviest of {len(report.layers)} rows; totals are for the whole "
                     "model." if options.view.depth is None else
                     f"Showing {shown} of {len(report.layers)} layers; totals are for the whole model.")
    if any(layer.conv is not None for layer in report.layers):
        notes.append(tx.CONV_LEGEND)
    _print_lines(console, notes)
    console.print()
    _print_lines(console, _totals_lines(report) + _uncounted_lines(report))
    console.print()


def _candidate_section(console: Console, report: Report, options: RenderOptions) -> None:
    if not report.candidates:
        console.print(Text("No separable candidates."))
        return
    console.print(Text("Separable candidates", style="bold"))
    fitted = _candidates_table(report, options)
    console.print(fitted.table)
    shown = len(candidate_views(report, options.view.top))
    notes = [hidden_note(fitted.hidden, options.width)] if fitted.hidden else []
    if shown < len(report.candidates):
        notes.append(f"Showing the {shown} of {len(report.candidates)} candidates saving the most MACs.")
    _print_lines(console, notes + _legend(report))
    console.print()
    outcomes = _summary_table(report, options.view.top)
    if outcomes is None:
        console.print(Text("No candidate is convertible."))
        return
    console.print(Text("Whole model if " + ("these candidates" if shown < len(report.candidates) else
                                            "the candidates") + " convert", style="bold"))
    console.print(outcomes)


def render_table(report: Report, options: RenderOptions) -> str:
    """The report as rich tables, fitted to ``options.width`` columns, ANSI colour only if ``options.color``."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=max(options.width, 20), color_system="standard" if options.color else None,
                      force_terminal=options.color, no_color=not options.color, highlight=False,
                      emoji=False, legacy_windows=False, soft_wrap=False)
    _layer_section(console, report, options)
    _candidate_section(console, report, options)
    _print_lines(console, _excluded_lines(report))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
