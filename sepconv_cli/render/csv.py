"""CSV renderer: one table whose first column names the section (``total``, ``uncounted``, ``layer``,
``candidate``, ``excluded``), so a spreadsheet or ``pandas`` can filter by it. Counts are exact integers
(elements, MACs, bytes); an unknown count is an empty cell with the reason in ``note``, never a 0.
Layer rows follow ``--depth``/``--sort``/``--top`` and candidates ``--top``; names are the full node
names. A model without a file has an empty ``file_size`` cell.
"""

from __future__ import annotations

import csv
import io

from sepconv_cli.core.records import Report
from sepconv_cli.render import RenderOptions
from sepconv_cli.render import text as tx
from sepconv_cli.render.candidates import candidate_views
from sepconv_cli.render.views import layer_view

COLUMNS = ("section", "name", "op", "level", "input_shapes", "output_shapes", "in_channels", "out_channels",
           "kernel", "stride", "dilation", "groups", "padding", "value", "params", "macs", "share",
           "params_t1", "macs_t1", "macs_share_saved", "energy_t1", "rank", "params_at_rank", "macs_at_rank",
           "risk", "convertible", "note")
"""Appending a column is safe for readers that select by name; the order of the existing ones is kept."""


def _dims(values: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in values)


def _conv_cells(spec) -> dict:
    """Geometry columns of a conv row (empty for other rows); padding is begin..end pads or the text."""
    if spec is None:
        return {}
    return {"in_channels": spec.in_channels, "out_channels": spec.out_channels, "kernel": _dims(spec.kernel),
            "stride": _dims(spec.stride), "dilation": _dims(spec.dilation), "groups": spec.groups,
            "padding": spec.padding_text or _dims(spec.pads)}


def _totals(report: Report) -> list[dict]:
    pairs = [("params", report.params), ("buffers", report.buffers), ("macs", report.macs),
             ("flops", report.flops), ("file_size", report.model.file_size or "")]
    pairs += [(f"weight_bytes:{dtype}", n) for dtype, n in report.weight_bytes]
    pairs += list(report.extra)
    return [{"section": "total", "name": key, "value": value} for key, value in pairs]


def _layers(report: Report, options: RenderOptions) -> list[dict]:
    rows = []
    for r in layer_view(report, options.view):
        note = r.note or (f"{r.unknown} rows not counted" if r.unknown else "")
        rows.append({"section": "layer", "name": r.name, "op": r.op if r.conv is None else tx.op_text(r),
                     "level": r.level, "input_shapes": tx.shapes(r.input_shapes),
                     "output_shapes": tx.shapes(r.output_shapes), "params": r.params,
                     "macs": "" if r.macs is None else r.macs, "share": f"{r.share:.6f}",
                     "note": note, **_conv_cells(r.conv)})
    return rows


def _candidates(report: Report, top: int | None) -> list[dict]:
    rows = []
    for view in candidate_views(report, top):
        c = view.cand
        rows.append({"section": "candidate", "name": c.name, "op": c.op, "params": c.params,
                     "macs": "" if c.macs is None else c.macs, "params_t1": c.params_separable,
                     "macs_t1": "" if c.macs_separable is None else c.macs_separable,
                     "macs_share_saved": "" if view.macs_share_t1 is None else f"{view.macs_share_t1:.6f}",
                     "energy_t1": "" if c.energy_t1 is None else f"{c.energy_t1:.6f}",
                     "rank": "" if c.rank is None else c.rank,
                     "params_at_rank": "" if c.params_at_rank is None else c.params_at_rank,
                     "macs_at_rank": "" if c.macs_at_rank is None else c.macs_at_rank,
                     "risk": c.risk or "", "convertible": str(c.convertible).lower(), "note": c.reason})
    return rows


def render_csv(report: Report, options: RenderOptions) -> str:
    """The report as CSV text (header row first, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_totals(report))
    writer.writerows({"section": "uncounted", "name": u.op, "value": u.count, "note": " ".join(u.names)}
                     for u in report.uncounted)
    writer.writerows(_layers(report, options))
    writer.writerows(_candidates(report, options.view.top))
    writer.writerows({"section": "excluded", "name": e.name, "note": e.reason} for e in report.excluded)
    return buffer.getvalue()
