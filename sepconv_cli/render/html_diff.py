"""HTML page of `sepconv diff` (self-contained, see ``html.page``): totals before -> after, then each
changed layer with its params and MACs before and after as a pair of bars on one scale. Shared by the
convert page (``html_convert``) for its before/after section. Units: params in elements, MACs, bytes.
"""

from __future__ import annotations

from html import escape

from sepconv_cli.pipeline.diff import ModelDiff
from sepconv_cli.render import svg
from sepconv_cli.render.diff import MARKS, DiffOptions, counts_line, op_text, shape_text, shown_changes, total_lines
from sepconv_cli.render.html import cards, name_cell, page, section, table
from sepconv_cli.render.names import display_names
from sepconv_cli.render.text import compact


def _pair(before: int | None, after: int | None, top: int) -> str:
    """Two bars on one scale (before above, after below) with the figures."""
    scale = top or 1
    return (f'<span class="mono">{escape(compact(before))} &rarr; {escape(compact(after))}</span><br>'
            f"{svg.bar((before or 0) / scale, 140, 6, svg.MUTED, label=f'before {compact(before)}')}<br>"
            f"{svg.bar((after or 0) / scale, 140, 6, svg.AFTER, label=f'after {compact(after)}')}")


def before_after(diff: ModelDiff, options: DiffOptions) -> str:
    """The per-layer before/after table (changed layers, or all with ``options.all_layers``)."""
    rows = shown_changes(diff, options)
    if not rows:
        return "<p>No layer changed.</p>"
    shown = display_names([x.name for x in diff.before.layers] + [x.name for x in diff.after.layers])
    top_params = max(max(c.params) for c in rows) or 1
    top_macs = max(max(m or 0 for m in c.macs) for c in rows) or 1
    cells = [[escape(MARKS[c.change]), name_cell(shown.get(c.name, c.name), c.name), escape(c.change.value),
              escape(op_text(c)), _pair(*c.params, top_params), _pair(*c.macs, top_macs), escape(shape_text(c))]
             for c in rows]
    legend = ('<p class="legend">÷ split (depthwise + pointwise), ~ changed, + added, - removed. Bars: grey '
              "before, green after, on one scale per column.</p>")
    return table(["", "layer", "change", "op", "params", "MACs", "output"], cells, numeric=(4, 5)) + legend


def diff_sections(diff: ModelDiff, options: DiffOptions) -> list[str]:
    """Totals and the before/after table, as page sections."""
    totals = cards([(text.split(" (")[0], label + (f" ({text.split(' (')[1]}" if " (" in text else ""))
                    for label, text in total_lines(diff)])
    return [totals, f"<p>{escape(counts_line(diff))}</p>",
            section("before-after", "Before and after, per layer", before_after(diff, options))]


def render_html(diff: ModelDiff, options: DiffOptions) -> str:
    """The diff as one self-contained HTML page."""
    head = (f"<h1>sepconv diff</h1><p class=\"sub\"><code>{escape(diff.before.model.path)}</code> &rarr; "
            f"<code>{escape(diff.after.model.path)}</code></p>")
    return page(f"sepconv diff {diff.before.model.path} -> {diff.after.model.path}",
                [head, *diff_sections(diff, options)], "diff")
