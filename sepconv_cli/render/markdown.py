"""Markdown renderer: the input signature, totals, layers (the same view as the table), separable
candidates, the whole-model summary and exclusions, as GitHub-flavoured pipe tables. Layer names read as
module paths, as in the table (``names.py``). Counts are exact integers (elements, MACs, bytes); shares
are percentages.
"""

from __future__ import annotations

from collections.abc import Sequence

from sepconv_cli.core.records import Report
from sepconv_cli.render import RenderOptions
from sepconv_cli.render import text as tx
from sepconv_cli.render.candidates import candidate_views, excluded_by_reason, summary
from sepconv_cli.render.names import display_names, row_names
from sepconv_cli.render.views import layer_view


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: Sequence[Sequence[object]], right: int = 1) -> list[str]:
    """A pipe table; columns from index ``right`` on are right-aligned (numbers)."""
    align = ["---" if i < right else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)
    return lines + [""]


def _totals(report: Report) -> list[str]:
    rows: list[list[object]] = [["params", tx.exact(report.params)], ["buffers", tx.exact(report.buffers)],
                                ["MACs", tx.total_macs(report)], ["FLOPs (2 x MACs)", tx.exact(report.flops)]]
    rows.extend([f"weight bytes ({dtype})", tx.exact(n)] for dtype, n in report.weight_bytes)
    rows.append(["file size (bytes)", tx.exact(report.model.file_size) if report.model.file_size else tx.NO_FILE])
    rows.extend([key, tx.exact(value)] for key, value in report.extra)
    lines = ["## Totals", ""] + _table(["metric", "value"], rows)
    if report.uncounted:
        ops = ", ".join(f"{u.op} x{u.count}" for u in report.uncounted)
        lines += [f"Ops without a MAC formula (not in the total): {ops}", ""]
    unknown = [f"- not counted: `{row.name}` ({row.op}): {row.note or 'shape unknown'}"
               for row in report.unknown_rows]
    return lines + (unknown + [""] if unknown else [])


def _layers(report: Report, options: RenderOptions) -> list[str]:
    view = layer_view(report, options.view)
    rows = [["&nbsp;&nbsp;" * r.level + f"`{name}`", tx.op_text(r), tx.shapes(r.input_shapes),
             tx.shapes(r.output_shapes), _channels(r.conv), tx.exact(r.params),
             tx.macs_text(r) if r.macs is None else tx.exact(r.macs) + ("+?" if r.unknown else ""),
             tx.percent(r.share)] for r, name in zip(view, row_names(report, view))]
    headers = ["name", "op", "input", "output", "channels", "params", "MACs", "share"]
    lines = ["## Layers", ""] + _table(headers, rows, right=5)
    shown = sum(r.count for r in view if r.level == 0)
    if shown < len(report.layers):
        lines += [f"Showing {shown} of {len(report.layers)} layers (the heaviest); totals are for the whole model.",
                  ""]
    if any(layer.conv is not None for layer in report.layers):
        lines += [tx.CONV_LEGEND, ""]
    return lines


def _channels(spec) -> str:
    """``Cin->Cout`` of a conv row, empty otherwise."""
    return "" if spec is None else f"{spec.in_channels}->{spec.out_channels}"


def _candidates(report: Report, top: int | None) -> list[str]:
    target = report.energy_target if report.energy_target is not None else 0.9
    shown = display_names(layer.name for layer in report.layers)
    rows = []
    views = candidate_views(report, top)
    for view in views:
        c = view.cand
        at_rank = "-" if view.macs_share_rank is None else tx.percent(view.macs_share_rank)
        rows.append([f"`{shown.get(c.name, c.name)}`" + ("" if c.convertible else f" ({c.reason or 'not convertible'})"),
                     f"{tx.exact(c.params)} → {tx.exact(c.params_separable)}",
                     f"{tx.compact(c.macs)} → {tx.compact(c.macs_separable)}", tx.percent(view.macs_share_t1),
                     tx.energy(c.energy_t1), tx.rank_text(c), at_rank, tx.risk_text(c)])
    headers = ["name", "params (T=1)", "MACs (T=1)", "saved", "energy T=1", f"T for {target:g}", "saved at T", "risk"]
    lines = ["## Separable candidates", ""] + _table(headers, rows, right=3)
    lines += ["saved: share of the model's MACs.", ""]
    if len(views) < len(report.candidates):
        lines += [f"Showing the {len(views)} of {len(report.candidates)} candidates saving the most MACs.", ""]
    return lines + [line for note in tx.energy_notes(report) for line in (note, "")]


def _summary(report: Report, top: int | None) -> list[str]:
    rows = []
    for outcome in (o for o in summary(report, top) if o.converted):
        p_ratio, m_ratio = outcome.ratios(report)
        rows.append([f"{outcome.converted} at {outcome.label}", tx.exact(outcome.params), tx.ratio(p_ratio),
                     tx.exact(outcome.macs), tx.ratio(m_ratio)])
    if not rows:
        return ["No candidate is convertible.", ""]
    return ["## Whole model if the candidates convert", ""] + _table(
        ["converted", "params", "ratio", "MACs", "ratio"], rows)


def _excluded(report: Report) -> list[str]:
    groups = excluded_by_reason(report)
    if not groups:
        return []
    rows = [[reason, ", ".join(f"`{n}`" for n in names)] for reason, names in groups]
    return ["## Not candidates", ""] + _table(["reason", "layers"], rows, right=2)


def render_markdown(report: Report, options: RenderOptions) -> str:
    """The report as a Markdown document ending with a newline."""
    lines = [f"# sepconv analysis of `{report.model.path}` ({tx.source_text(report.model)})", ""]
    if report.model.inputs:
        lines += ["Inputs: " + ", ".join(f"`{tx.tensor_signature(t)}`" for t in report.model.inputs), ""]
    lines += _totals(report) + _layers(report, options)
    if report.candidates:
        lines += _candidates(report, options.view.top) + _summary(report, options.view.top)
    else:
        lines += ["No separable candidates.", ""]
    lines += _excluded(report)
    return "\n".join(lines).rstrip("\n") + "\n"
