"""Which convolutions ``convert`` considers: ``--select``/``--exclude`` globs over conv rows, and ``--top N``
by MACs saved. Pure: rows and planned layers in, rows and reasons out.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from sepconv_cli.core.plans import PlannedLayer
from sepconv_cli.core.records import Excluded, Layer, Report
from sepconv_cli.errors import PlanError
from sepconv_cli.planner.options import PlanOptions


def check_selection(options: PlanOptions, names: list[str]) -> None:
    """PlanError for a ``--select`` glob that matches no convolution."""
    for glob in options.select:
        if not any(fnmatchcase(name, glob) for name in names):
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise PlanError(f"--select {glob!r} matches no convolution (convolutions: {shown or 'none'})")


def matches(name: str, globs: tuple[str, ...]) -> str | None:
    """The first of ``globs`` matching ``name`` (None when none does)."""
    return next((g for g in globs if fnmatchcase(name, g)), None)


def keep_top(planned: list[PlannedLayer], top: int | None) -> tuple[list[PlannedLayer], list[Excluded]]:
    """The ``top`` layers saving most MACs (model order kept), the rest as skipped."""
    if top is None or top >= len(planned):
        return planned, []
    saving = lambda p: (p.macs_before or 0) - (p.macs_after or 0)  # noqa: E731
    kept = {p.name for p in sorted(planned, key=saving, reverse=True)[:top]}
    dropped = [Excluded(p.name, f"not among the --top {top} by MACs saved") for p in planned if p.name not in kept]
    return [p for p in planned if p.name in kept], dropped


def selected_rows(report: Report, options: PlanOptions) -> tuple[list[Layer], list[Excluded]]:
    """Conv rows matching ``--select`` (all when empty) minus ``--exclude``, and the excluded ones."""
    convs = [layer for layer in report.layers if layer.conv is not None]
    check_selection(options, [layer.name for layer in convs])
    rows: list[Layer] = []
    skipped: list[Excluded] = []
    for layer in convs:
        if options.select and matches(layer.name, options.select) is None:
            continue
        hit = matches(layer.name, options.exclude)
        if hit is None:
            rows.append(layer)
        else:
            skipped.append(Excluded(layer.name, f"excluded by --exclude {hit!r}"))
    return rows, skipped
