"""HTML page of `sepconv convert` (self-contained, see ``html.page``): the totals before -> after, each
planned layer (rank, energy kept, weight error), the per-layer before/after from ``pipeline.diff`` with
paired bars, verification and latency, and, when a sweep was run, the accuracy/speed frontier with the
chosen point marked.

``frontier`` points are mappings ``{label, macs, latency_ms, error, chosen}`` (MACs, milliseconds, the
end-to-end relative error; ``latency_ms`` may be None): the x axis is latency when every point has one,
else MACs. Units: params in elements, MACs, bytes, milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from sepconv_cli.pipeline.diff import diff_reports
from sepconv_cli.render import svg
from sepconv_cli.render import text as tx
from sepconv_cli.render.convert_text import destination
from sepconv_cli.render.diff import DiffOptions
from sepconv_cli.render.html import cards, model_header, name_cell, page, section, table
from sepconv_cli.render.html_diff import diff_sections
from sepconv_cli.render.names import display_names


def _error(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _plan(result: Any) -> str:
    shown = display_names(layer.name for layer in result.before.layers)
    rows = [[name_cell(shown.get(p.name, p.name), p.name), str(p.rank),
             escape(tx.arrow(p.params_before, p.params_after)), escape(tx.arrow(p.macs_before, p.macs_after)),
             _error(p.energy), _error(p.weight_error), "yes" if p.bn_folded else ""] for p in result.plan.layers]
    return table(["layer", "T", "params", "MACs", "energy kept", "weight error", "BN folded"], rows,
                 numeric=(1, 2, 3, 4, 5))


def _checks(result: Any) -> str:
    parts = []
    v = result.verification
    if v is not None:
        rows = [[escape(o.name), f"{o.max_abs:.3g}", f"{o.rel_l2:.3g}", f"{o.cosine:.6f}",
                 "-" if o.top1 is None else escape(tx.percent(o.top1))] for o in v.outputs]
        parts.append(f"<p>On {v.samples} sample(s) of <code>{escape(v.inputs_source)}</code>"
                     f"{' (' + escape(v.inputs_role) + ')' if v.inputs_role else ''}:</p>"
                     + table(["output", "max abs", "rel L2", "cosine", "top-1 agreement"], rows, numeric=(1, 2, 3, 4)))
    lat = result.latency
    if lat is not None:
        parts.append(f"<p>Latency (median of {lat.runs}, interleaved): {lat.before_ms:.3f} ms &rarr; "
                     f"{lat.after_ms:.3f} ms ({lat.ratio:.2f}x)</p>")
    return "".join(parts) or "<p>Not verified (--no-verify or a dry run).</p>"


def frontier_chart(points: Sequence[Mapping[str, Any]]) -> str:
    """The sweep's points as error versus latency (or MACs), the chosen one marked, and a table of them."""
    by_latency = all(p.get("latency_ms") is not None for p in points)
    key, label = ("latency_ms", "latency (ms)") if by_latency else ("macs", "MACs")
    marks = [svg.Point(float(p[key]), float(p.get("error") or 0.0), str(p.get("label", "")), bool(p.get("chosen")))
             for p in points]
    chart = svg.scatter(marks, label, "output error", x_fmt=(lambda v: f"{v:.3g}") if by_latency else
                        (lambda v: tx.compact(int(v))), y_fmt=lambda v: f"{v:.2g}")
    rows = [[("&#9733; " if p.get("chosen") else "") + escape(str(p.get("label", ""))), escape(tx.compact(p.get("macs"))),
             "-" if p.get("latency_ms") is None else f"{float(p['latency_ms']):.3f}", _error(p.get("error"))]
            for p in points]
    return chart + table(["point", "MACs", "latency (ms)", "error"], rows, numeric=(1, 2, 3))


def render_convert_html(result: Any, frontier: Sequence[Mapping[str, Any]] | None = None) -> str:
    """A ``pipeline.convert.ConversionResult`` as one self-contained HTML page (see module docstring)."""
    before, after = result.before, result.after
    head = model_header(before, "sepconv convert") + (
        f"<p class=\"sub\">&rarr; <code>{escape(destination(result))}</code></p>")
    body = [head]
    if after is not None:
        body += diff_sections(diff_reports(before, after), DiffOptions())
    else:
        body.append(cards([(tx.compact(result.plan.params_saved), "params saved (planned)"),
                           (tx.compact(result.plan.macs_saved), "MACs saved (planned)")]))
    body.append(section("plan", "Converted layers", _plan(result)))
    body.append(section("verification", "Verification", _checks(result)))
    if frontier:
        body.append(section("frontier", "Accuracy / speed frontier", frontier_chart(frontier)))
    return page(f"sepconv convert {before.model.path}", body, "convert")


def render_frontier_html(source: str, frontier: Sequence[Mapping[str, Any]]) -> str:
    """The measured frontier of ``convert --sweep`` on ``source`` as one self-contained page."""
    head = (f"<h1>sepconv convert --sweep</h1><p class=\"sub\"><code>{escape(source)}</code>: one point per "
            "budget, measured end to end; &#9733; the knee</p>")
    return page(f"sepconv convert --sweep {source}", [head, section("frontier", "Accuracy / speed frontier",
                                                                   frontier_chart(frontier))], "sweep")
