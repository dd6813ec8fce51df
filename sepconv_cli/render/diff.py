"""Renderers for `sepconv diff`: a ``ModelDiff`` -> table (rich), JSON, Markdown (a pull-request comment)
or HTML (``html_diff``).

Every format gives the totals before -> after (params, MACs, FLOPs, weight bytes, file size; a model
without a file reads n/a) and the changed layers: split (one conv became depthwise + pointwise), changed,
added, removed, with params, MACs and output shapes before -> after. ``DiffOptions.all_layers`` lists
unchanged layers too. Units: params in elements, MACs, bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sepconv_cli.core.records import SCHEMA_VERSION, Layer, Report
from sepconv_cli.lazy import resolve
from sepconv_cli.pipeline.diff import Change, LayerChange, ModelDiff
from sepconv_cli.render import text as tx


class DiffFormat(str, Enum):
    """How `diff` writes its result."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"


DIFF_RENDERERS: dict[DiffFormat, str] = {
    DiffFormat.TABLE: "sepconv_cli.render.diff:render_table",
    DiffFormat.JSON: "sepconv_cli.render.diff:render_json",
    DiffFormat.MARKDOWN: "sepconv_cli.render.diff:render_markdown",
    DiffFormat.HTML: "sepconv_cli.render.html_diff:render_html",
}

DIFF_SUFFIX_FORMATS: dict[str, DiffFormat] = {
    ".json": DiffFormat.JSON, ".md": DiffFormat.MARKDOWN, ".markdown": DiffFormat.MARKDOWN,
    ".html": DiffFormat.HTML, ".htm": DiffFormat.HTML, ".txt": DiffFormat.TABLE,
}

MARKS: dict[Change, str] = {Change.SAME: " ", Change.CHANGED: "~", Change.SPLIT: "÷", Change.ADDED: "+",
                            Change.REMOVED: "-"}
"""One character per change, first in each table row."""


@dataclass(frozen=True)
class DiffOptions:
    """``width``/``color``: terminal columns and ANSI styles (table only); ``all_layers``: list unchanged
    layers too."""

    width: int = 80
    color: bool = False
    all_layers: bool = False


DiffRenderer = Callable[[ModelDiff, DiffOptions], str]


def diff_renderer_for(fmt: DiffFormat) -> DiffRenderer:
    """The renderer registered for ``fmt`` (imported now)."""
    return resolve(DIFF_RENDERERS[DiffFormat(fmt)])


def totals(report: Report) -> dict[str, int]:
    """The compared figures of one side: params, MACs, FLOPs (elements/MACs), weight and file bytes."""
    return {"params": report.params, "macs": report.macs, "flops": report.flops,
            "weight_bytes": report.total_weight_bytes, "file_size": report.model.file_size}


def change_text(before: int | None, after: int | None, size: bool = False) -> str:
    """``"1.19M -> 175k (-85.3%)"``; a missing side reads ``?`` (``n/a`` for a size of a model without a file)."""
    fmt = tx.size if size else tx.compact
    missing = tx.NO_FILE if size else "?"
    left = missing if before is None or (size and not before) else fmt(before)
    right = missing if after is None or (size and not after) else fmt(after)
    share = f" ({(after - before) / before * 100:+.1f}%)" if before and after is not None and not (size and not after) else ""
    return f"{left} -> {right}{share}"


def counts_line(diff: ModelDiff) -> str:
    """``"18 -> 24 layers: 6 split, 6 removed, 12 same"`` (zero counts left out)."""
    parts = [f"{diff.count(c)} {c.value}" for c in (Change.SPLIT, Change.CHANGED, Change.ADDED, Change.REMOVED,
                                                       Change.SAME) if diff.count(c)]
    return f"{len(diff.before.layers)} -> {len(diff.after.layers)} layers: " + ", ".join(parts)


TOTAL_LABELS = (("params", "params", False), ("MACs", "macs", False), ("FLOPs", "flops", False),
                ("weights", "weight_bytes", True), ("file", "file_size", True))


def total_lines(diff: ModelDiff) -> list[tuple[str, str]]:
    """(label, ``before -> after (+x%)``) for each compared figure."""
    a, b = totals(diff.before), totals(diff.after)
    return [(label, change_text(a[key], b[key], size)) for label, key, size in TOTAL_LABELS]


def shown_changes(diff: ModelDiff, options: DiffOptions) -> tuple[LayerChange, ...]:
    """The rows a human format lists: every row with ``all_layers``, else the changed ones."""
    return diff.changes if options.all_layers else diff.changed


def op_text(change: LayerChange) -> str:
    """``"Conv"``, ``"BatchNormalization -> Identity"``, ``"Conv -> Conv+Conv"`` (a split)."""
    before = change.before.op if change.before is not None else ""
    after = "+".join(x.op for x in change.after)
    if not before or not after or before == after:
        return before or after
    return f"{before} -> {after}"


def shape_text(change: LayerChange) -> str:
    """The output shape, ``a -> b`` when it changed."""
    before, after = change.output_shapes
    if change.shape_changed:
        return f"{tx.shapes(before)} -> {tx.shapes(after)}"
    return tx.shapes(before or after)


def _arrow(before: int | None, after: int | None, change: LayerChange) -> str:
    """``"36.9k→4.74k"``; one number when it did not change (an added layer counts from 0)."""
    return tx.compact(before) if before == after else tx.arrow(before, after)


def render_table(diff: ModelDiff, options: DiffOptions) -> str:
    """Totals, then one row per shown change (mark, module-path name, op, params, MACs, output)."""
    from rich.console import Console
    from rich.text import Text

    from sepconv_cli.render.fit import Cell, Column, Role, fit_table, hidden_note
    from sepconv_cli.render.names import display_names

    shown = display_names([x.name for x in diff.before.layers] + [x.name for x in diff.after.layers])
    buffer = io.StringIO()
    console = Console(file=buffer, width=max(options.width, 20), force_terminal=options.color,
                      color_system="standard" if options.color else None, no_color=not options.color,
                      highlight=False, soft_wrap=False)
    head = [f"diff {diff.before.model.path} ({tx.source_text(diff.before.model)})",
            f"  -> {diff.after.model.path} ({tx.source_text(diff.after.model)})"]
    head += [f"{label:8} {text}" for label, text in total_lines(diff)] + [counts_line(diff)]
    for line in tx.wrap_lines(head, options.width):
        console.print(Text(line), soft_wrap=True)
    rows = shown_changes(diff, options)
    if rows:
        columns = (Column(""), Column("layer", role=Role.NAME), Column("op", drop=2, label="op"),
                   Column("params", right=True), Column("MACs", right=True),
                   Column("output", drop=1, label="output shape"))
        cells = [[MARKS[c.change], Cell(shown.get(c.name, c.name)), op_text(c), _arrow(*c.params, c),
                  _arrow(*c.macs, c), shape_text(c)] for c in rows]
        fitted = fit_table(columns, cells, options.width)
        console.print()
        console.print(fitted.table)
        notes = [hidden_note(fitted.hidden, options.width)] if fitted.hidden else []
        notes.append("÷ split (depthwise + pointwise), ~ changed, + added, - removed"
                     + ("" if options.all_layers else "; unchanged layers not shown (--all lists them)"))
        for line in tx.wrap_lines(notes, options.width):
            console.print(Text(line), soft_wrap=True)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _layer(layer: Layer) -> dict:
    return {"name": layer.name, "op": layer.op, "params": layer.params, "macs": layer.macs,
            "output_shapes": [None if s is None else list(s) for s in layer.output_shapes]}


def change_dict(change: LayerChange) -> dict:
    """One change as JSON: before (or null), after (a list), deltas and whether the output shape changed."""
    (p0, p1), (m0, m1) = change.params, change.macs
    return {"change": change.change.value, "matched_by": change.matched_by.value or None,
            "before": None if change.before is None else _layer(change.before),
            "after": [_layer(x) for x in change.after], "params_delta": p1 - p0,
            "macs_delta": None if m0 is None or m1 is None else m1 - m0, "shape_changed": change.shape_changed}


def diff_dict(diff: ModelDiff) -> dict:
    """The whole diff as JSON-ready data (every row, unchanged ones included)."""
    a, b = totals(diff.before), totals(diff.after)
    model = lambda r: {"path": r.model.path, "format": r.model.format, "file_size": r.model.file_size}  # noqa: E731
    return {"schema_version": SCHEMA_VERSION, "before": model(diff.before), "after": model(diff.after),
            "totals": {k: {"before": a[k], "after": b[k], "delta": b[k] - a[k]} for k in a},
            "counts": {c.value: diff.count(c) for c in Change},
            "layers": [change_dict(c) for c in diff.changes]}


def render_json(diff: ModelDiff, options: DiffOptions) -> str:
    """Indented JSON with a trailing newline (never through rich)."""
    return json.dumps(diff_dict(diff), indent=2, ensure_ascii=False) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(diff: ModelDiff, options: DiffOptions) -> str:
    """A Markdown section for a pull request: totals table, then the changed layers."""
    from sepconv_cli.render.names import display_names

    shown = display_names([x.name for x in diff.before.layers] + [x.name for x in diff.after.layers])
    lines = ["## sepconv diff", "", f"`{_md(diff.before.model.path)}` → `{_md(diff.after.model.path)}`", "",
             "| | before → after |", "|---|---:|"]
    lines += [f"| {label} | {_md(text)} |" for label, text in total_lines(diff)]
    lines += ["", counts_line(diff), ""]
    rows = shown_changes(diff, options)
    if rows:
        lines += ["| | layer | op | params | MACs | output |", "|---|---|---|---:|---:|---|"]
        lines += [f"| {MARKS[c.change].strip() or '='} | `{_md(shown.get(c.name, c.name))}` | {_md(op_text(c))} | "
                  f"{_md(_arrow(*c.params, c))} | {_md(_arrow(*c.macs, c))} | {_md(shape_text(c))} |" for c in rows]
        lines += ["", "÷ split (depthwise + pointwise), ~ changed, + added, - removed."]
    return "\n".join(lines) + "\n"


def growth_lines(diff: ModelDiff, source: str, top: int = 5) -> tuple[str, ...]:
    """The ``top`` layers that grew most from ``diff.before`` (recorded in ``source``) to ``diff.after``, by
    MACs then params, as text lines for `check --baseline` (empty when no layer grew)."""
    from sepconv_cli.render.names import display_names

    def grown(c: LayerChange) -> tuple[int, int]:
        (p0, p1), (m0, m1) = c.params, c.macs
        return (0 if m0 is None or m1 is None else m1 - m0), p1 - p0

    grew = sorted((c for c in diff.changed if max(grown(c)) > 0), key=lambda c: tuple(-g for g in grown(c)))[:top]
    if not grew:
        return ()
    shown = display_names([x.name for x in diff.before.layers] + [x.name for x in diff.after.layers])
    lines = [f"Layers that grew most since {source} ({len(grew)} of {len(diff.changed)} changed):"]
    for c in grew:
        macs, params = grown(c)
        parts = [f"MACs {_arrow(*c.macs, c)} ({macs:+,})"] if macs else []
        parts += [f"params {_arrow(*c.params, c)} ({params:+,})"] if params else []
        lines.append(f"  {MARKS[c.change]} {shown.get(c.name, c.name)}: " + ", ".join(parts))
    return tuple(lines)
