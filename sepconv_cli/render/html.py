"""HTML renderer: one self-contained page per report (inline CSS and SVG; no JavaScript, no network).

``page`` wraps sections in the shared shell; ``render_html`` is the `analyze` report: the model and its
input signature, totals, the heaviest layers as a bar chart, every layer with MACs and params bars,
each candidate's cumulative energy versus rank with break-even T* and the chosen T marked, the
whole-model summary, the hierarchy by name scope (native ``<details>``, no script) and the exclusions. `check`,
`convert` and `diff` pages live in ``html_check``, ``html_convert`` and ``html_diff``. Layer names read
as module paths, the full node name in the cell's tooltip. Units as in the other formats: params in
elements, MACs, bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from sepconv_cli import __version__
from sepconv_cli.core.records import Report
from sepconv_cli.render import CONVENTIONS, RenderOptions, svg
from sepconv_cli.render import text as tx
from sepconv_cli.render.candidates import candidate_views, excluded_by_reason, summary
from sepconv_cli.render.names import display_names, row_names
from sepconv_cli.render.views import SortKey, ViewOptions, layer_view, share_of

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:20px 28px 40px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6270;margin:0 0 12px}code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px 3px 0;text-align:left;vertical-align:middle}
th{font-weight:600;border-bottom:1px solid #c9ced6;white-space:nowrap}td.n,th.n{text-align:right;white-space:nowrap}
tr.heavy td{font-weight:600}tr.zero td{color:#8a8f98}tr.fail td{color:#b3261e}tr.pass .verdict{color:#1e7a4d}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}.card{border:1px solid #dde1e7;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:#5b6270;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;border:1px solid #e3e6eb;border-radius:6px;padding:6px 8px}
figcaption{font-size:12px;max-width:260px;overflow-wrap:anywhere}
details{margin-left:16px}details>summary{cursor:pointer}
.scope{display:inline-grid;grid-template-columns:230px 150px 110px 120px 110px;align-items:center}
.leaf{margin-left:30px}svg .nosave{fill:#fbeaea}
svg text{font:10px system-ui,sans-serif;fill:#3a404c}svg .label{font-size:11px}svg .axis{stroke:#9aa1ac}
svg .curve{fill:none;stroke:#3b6fb6;stroke-width:2}svg .tstar{stroke:#c0392b;stroke-dasharray:4 3}
svg .target{stroke:#8a8f98;stroke-dasharray:2 3}svg .chosen{fill:#e67e22;stroke:#fff}svg .point{fill:#3b6fb6}
svg.bar{vertical-align:middle}.legend{color:#5b6270;font-size:12px}footer{margin-top:30px;color:#5b6270;font-size:12px}
"""

TOP_CHART = 15
"""Layers in the overview bar chart."""


def page(title: str, sections: Sequence[str], kind: str) -> str:
    """A whole HTML document: ``title``, then ``sections`` (HTML strings) and a footer with the conventions.
    ``kind`` (``"analyze"``, ``"check"``, ...) is recorded on ``<body data-report>`` for tools and tests."""
    conventions = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in CONVENTIONS.items())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"sepconv {escape(__version__)}\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body data-report=\"{escape(kind)}\"><main>{''.join(sections)}"
            f"<footer><details><summary>Conventions</summary><ul>{conventions}</ul></details>"
            f"<p>sepconv {escape(__version__)}</p></footer></main></body></html>\n")


def section(ident: str, title: str, body: str) -> str:
    """``<section id=ident><h2>title</h2>body</section>``."""
    return f'<section id="{escape(ident)}"><h2>{escape(title)}</h2>{body}</section>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (),
          classes: Sequence[str] | None = None) -> str:
    """An HTML table; cells are HTML already (escape text first); columns in ``numeric`` align right."""
    head = "".join(f'<th class="n">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{classes[index]}"' if classes and classes[index] else ""
        cells = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def name_cell(shown: str, full: str) -> str:
    """A layer name as a module path, the full node name in its tooltip."""
    return f'<code title="{escape(full)}">{escape(shown)}</code>'


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Headline figures: (value, caption) pairs."""
    return '<div class="cards">' + "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(c)}</span></div>'
                                           for v, c in items) + "</div>"


def model_header(report: Report, title: str) -> str:
    """The title, the model's path and source, and its input signature."""
    inputs = ", ".join(f"<code>{escape(tx.tensor_signature(t))}</code>" for t in report.model.inputs) or "unknown"
    return (f"<h1>{escape(title)}</h1><p class=\"sub\"><code>{escape(report.model.path)}</code> "
            f"({escape(tx.source_text(report.model))}) &middot; inputs: {inputs}</p>")


def _totals(report: Report) -> str:
    return cards([(tx.compact(report.params), f"params ({tx.exact(report.params)})"),
                  (tx.compact(report.macs) + ("+?" if report.unknown_rows else ""),
                   f"MACs ({tx.exact(report.macs)}{tx.not_counted(report)})"),
                  (tx.compact(report.flops), "FLOPs = 2 x MACs"),
                  (tx.size(report.total_weight_bytes), "weights"),
                  (tx.file_size(report.model), "file"), (tx.compact(report.buffers), "buffers")])


def _overview(report: Report, shown: dict[str, str]) -> str:
    heavy = sorted((layer for layer in report.layers if layer.macs), key=lambda x: -(x.macs or 0))[:TOP_CHART]
    top = heavy[0].macs if heavy else 0
    items = [(shown.get(x.name, x.name), (x.macs or 0) / top if top else 0.0,
              f"{tx.compact(x.macs)} ({tx.percent(share_of(x.macs, report.macs))})") for x in heavy]
    return svg.hbars(items) if items else "<p>No layer has counted MACs.</p>"


def _layers(report: Report, view: ViewOptions) -> str:
    rows = layer_view(report, view)
    names = row_names(report, rows)
    top_params = max((r.params for r in rows), default=0) or 1
    top_macs = max((r.macs or 0 for r in rows), default=0) or 1
    cells, classes = [], []
    for row, name in zip(rows, names):
        cells.append([("&nbsp;&nbsp;" * row.level) + name_cell(name, row.name), escape(tx.op_text(row)),
                      escape(tx.shapes(row.output_shapes)),
                      f"{escape(tx.compact(row.params))} {svg.bar(row.params / top_params, 80, label='params')}",
                      f"{escape(tx.macs_text(row))} {svg.bar((row.macs or 0) / top_macs, 120, label='MACs')}",
                      escape(tx.percent(row.share))])
        classes.append("heavy" if row.share >= 0.1 else ("zero" if not row.macs and not row.params else ""))
    note = ""
    if sum(r.count for r in rows if r.level == 0) < len(report.layers):
        note = f"<p class=\"legend\">Showing {len(rows)} rows of {len(report.layers)}; totals are for the whole model.</p>"
    return table(["name", "op", "output", "params", "MACs", "share"], cells, numeric=(3, 4, 5), classes=classes) + note


def _hierarchy(report: Report) -> str:
    """Nested ``<details>`` by name scope: each scope with its layers' params and MACs."""
    depth = max((len(layer.path) for layer in report.layers), default=0)
    if depth == 0:
        return "<p>The layer names carry no scopes.</p>"
    rows = layer_view(report, ViewOptions(depth=depth, sort=SortKey.ORDER))
    names = row_names(report, rows)
    out: list[str] = []
    open_levels: list[int] = []
    for row, name in zip(rows, names):
        while open_levels and open_levels[-1] >= row.level:
            out.append("</details>")
            open_levels.pop()
        line = (f'<span class="scope">{name_cell(name, row.name)}<span>{escape(row.op)}</span>'
                f"<span>{escape(tx.compact(row.params))} params</span><span>{escape(tx.macs_text(row))} MACs</span>"
                f"{svg.bar(row.share, 100, label=tx.percent(row.share))}</span>")
        if row.count > 1:
            out.append(f"<details{' open' if row.level == 0 else ''}><summary>{line}</summary>")
            open_levels.append(row.level)
        else:
            out.append(f'<div class="leaf">{line}</div>')
    out.extend("</details>" for _ in open_levels)
    return "".join(out)


def _candidates(report: Report, top: int | None) -> str:
    if not report.candidates:
        return "<p>No separable candidates.</p>"
    shown = display_names(layer.name for layer in report.layers)
    views = candidate_views(report, top)
    rows = [[name_cell(shown.get(v.cand.name, v.cand.name), v.cand.name),
             escape(tx.arrow(v.cand.params, v.cand.params_separable)), escape(tx.arrow(v.cand.macs, v.cand.macs_separable)),
             escape(tx.percent(v.macs_share_t1)), escape(tx.energy(v.cand.energy_t1)), escape(tx.rank_text(v.cand)),
             escape(tx.risk_text(v.cand))] for v in views]
    figures = []
    for v in views:
        c = v.cand
        if c.energies:
            chart = svg.energy_curve(c.energies, c.break_even, c.rank, report.energy_target, title=c.name)
            figures.append(f"<figure>{chart}<figcaption><code>{escape(shown.get(c.name, c.name))}</code> "
                           f"E1 {tx.energy(c.energy_t1)}, " + (f"T={c.rank}" if c.rank else "no T below T*")
                           + "</figcaption></figure>")
    legend = ('<p class="legend">params, MACs: now &rarr; at T=1; saved: share of model MACs; E1: energy kept at T=1; '
              "T: smallest rank keeping the target energy. Charts: cumulative energy kept versus rank T; red dashes: "
              "break-even T* (no saving at or past it); grey dots: the target energy; orange: the chosen T.</p>")
    notes = "".join(f"<p class=\"legend\">{escape(n)}</p>" for n in tx.energy_notes(report))
    grid = f'<div class="grid">{"".join(figures)}</div>' if figures else ""
    return table(["name", "params", "MACs", "saved", "E1", "T", "risk"], rows, numeric=(3, 4, 5)) + legend + notes + grid


def _summary(report: Report, top: int | None) -> str:
    rows = []
    for o in (o for o in summary(report, top) if o.converted):
        p_ratio, m_ratio = o.ratios(report)
        rows.append([escape(f"{o.converted} at {o.label}"), escape(f"{tx.arrow(report.params, o.params)} ({tx.ratio(p_ratio)})"),
                     escape(f"{tx.arrow(report.macs, o.macs)} ({tx.ratio(m_ratio)})")])
    return table(["converted", "params", "MACs"], rows) if rows else "<p>No candidate is convertible.</p>"


def _excluded(report: Report) -> str:
    groups = excluded_by_reason(report)
    items = "".join(f"<li>{escape(reason)}: {', '.join(f'<code>{escape(n)}</code>' for n in names)}</li>"
                    for reason, names in groups)
    return f"<ul>{items}</ul>" if items else "<p>None.</p>"


def analysis_sections(report: Report, view: ViewOptions) -> list[str]:
    """The sections of an analysis page (reused by the convert page for the converted model)."""
    shown = display_names(layer.name for layer in report.layers)
    return [_totals(report),
            section("overview", f"Heaviest layers (MACs, top {TOP_CHART})", _overview(report, shown)),
            section("candidates", "Separable candidates", _candidates(report, view.top)),
            section("summary", "Whole model if the candidates convert", _summary(report, view.top)),
            section("layers", "Layers", _layers(report, view)),
            section("hierarchy", "By name scope", _hierarchy(report)),
            section("excluded", "Not candidates", _excluded(report))]


def render_html(report: Report, options: RenderOptions) -> str:
    """The analysis as one self-contained HTML page (see module docstring)."""
    warnings = "".join(f"<p class=\"legend\">warning: {escape(w)}</p>" for w in report.warnings)
    body = [model_header(report, "sepconv analysis"), warnings, *analysis_sections(report, options.view)]
    return page(f"sepconv analysis of {report.model.path}", body, "analyze")
