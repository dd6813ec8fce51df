"""The human report of `convert` (rich, for stderr), readable in an 80-column terminal.

Totals before/after, the converted layers, layers left alone, calibration (summary and per-layer table
with reasons as numbered footnotes), distillation, verification and labelled evaluation
(``convert_quality``), latency, stage times. Long layer names are cut in the
middle (``text.fit_names``) so that every column stays; plain lines break between their parts.
Units: params in elements, MACs, file sizes in bytes, latency in milliseconds, times in seconds.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

from sepconv_cli.core.calibrated import CalibratedLayer, CalibrationReport
from sepconv_cli.render import text
from sepconv_cli.render.convert_goal import goal_lines
from sepconv_cli.render.convert_quality import distill_lines, evaluation_lines, verify_lines

# How each error basis of a calibration report reads in the table.
BASIS_TEXT = {"holdout": "held-back inputs", "fit": "fit inputs"}

# Narrowest the layer column gets, however long the other columns are.
_MIN_NAME = 12


def layer_errors(layer: CalibratedLayer) -> tuple[str, float | None, float | None]:
    """(basis, before, after): the layer's output error with SVD vs calibrated weights, on the held-back
    samples when some were held back (``"holdout"``), else on the samples of the fit (``"fit"``)."""
    if layer.holdout_error_before is not None:
        return "holdout", layer.holdout_error_before, layer.holdout_error_after
    return "fit", layer.fit_error_before, layer.fit_error_after


def _change(before: int | None, after: int | None, fmt=text.compact) -> str:
    if before is None or after is None:
        return "?"
    factor = f" ({before / after:.2f}x)" if after else ""
    return f"{fmt(before)} -> {fmt(after)}{factor}"


def _error(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def destination(result) -> str:
    """Where the converted model went: its path, or why nothing was written."""
    if result.output:
        return result.output
    return "(dry run: nothing written)" if result.plan.layers else "(nothing to convert: nothing written)"


def _summary_lines(result, width: int) -> list[str]:
    before, after = result.before, result.after
    lines = text.wrap_parts("model: ", [before.model.path, f"-> {destination(result)}"],
                            width, sep=" ", indent="  ")
    if after is not None:
        lines += [f"params:    {_change(before.params, after.params, text.exact)}",
                  f"MACs:      {_change(before.macs, after.macs)}",
                  f"file size: {text.size_change(before.model, after.model)}"]
    else:
        lines.append(f"planned saving: {text.exact(result.plan.params_saved)} params, "
                     f"{text.compact(result.plan.macs_saved)} MACs")
    if result.folded_bn:
        names = result.folded_bn
        shown = names[0] if len(names) == 1 else f"{len(names)} layers"
        lines.append(f"BatchNorm folded into the conv before it: {shown} (names in the manifest)")
    return lines


def _calibration_lines(cal: CalibrationReport) -> list[str]:
    """Summary of a calibration: samples, time, end-to-end output error before/after."""
    return [f"calibration: {cal.samples_fit} fit + {cal.samples_holdout} held-back input(s) in {cal.seconds:.2f}s",
            f"  output rel L2 error on {BASIS_TEXT.get(cal.end_to_end_on, cal.end_to_end_on)}: "
            f"{_error(cal.output_error_before)} (SVD) -> {_error(cal.output_error_after)} (calibrated)"]


def _latency_lines(result, width: int) -> list[str]:
    lat = result.latency
    if lat is None:
        return []
    macs = result.after.macs if result.after is not None else None
    parts = [f"{lat.before_ms:.3f} ms -> {lat.after_ms:.3f} ms ({lat.ratio:.2f}x)"]
    parts += [f"MACs ratio {result.before.macs / macs:.2f}x (MACs are not speed)"] if macs else []
    return text.wrap_parts(f"latency (median of {lat.runs}, interleaved): ", parts, width, sep="; ")


def _fitted_table(columns: Sequence[tuple[str, bool]], rows: list[list[str]], width: int):
    """A table of ``rows`` (first cell: a layer name) that fits ``width``: the names are cut to what the
    other columns leave (never below ``_MIN_NAME``). ``columns`` are (header, left-aligned)."""
    from rich.console import Console

    from sepconv_cli.render.table import new_table

    def build(names):
        table = new_table()
        table.show_edge = False
        for i, (header, left) in enumerate(columns):
            table.add_column(header, justify="left" if left else "right", no_wrap=True,
                             overflow="ellipsis" if i == 0 else "fold")
        for name, row in zip(names, rows):
            table.add_row(name, *row[1:])
        return table

    others = Console(width=10_000).measure(build([""] * len(rows))).maximum - len(columns[0][0])
    return build(text.fit_names([row[0] for row in rows], max(_MIN_NAME, width - others)))


def _layers_table(result, width: int):
    """Per converted layer: rank, params and MACs before -> after, energy kept, weight error, BN folded."""
    columns = (("layer", True), ("T", False), ("params", False), ("MACs", False), ("energy", False),
               ("w.err", False), ("BN", True))
    rows = [[p.name, str(p.rank), text.arrow(p.params_before, p.params_after), text.arrow(p.macs_before, p.macs_after),
             _error(p.energy), _error(p.weight_error), "yes" if p.bn_folded else ""] for p in result.plan.layers]
    return "converted layers (energy kept, rel. weight error at T)", _fitted_table(columns, rows, width), []


def _reason(layer: CalibratedLayer) -> str:
    return "; ".join(r for r in (layer.note, layer.fell_back) if r)


def _calibration_table(cal: CalibrationReport, width: int):
    """Per layer: the layer's output error with SVD vs calibrated weights, and which weights were kept
    (``refit`` or ``SVD``), with why as a numbered footnote."""
    bases = {layer_errors(layer)[0] for layer in cal.layers}
    on = BASIS_TEXT.get(bases.pop(), "") if len(bases) == 1 else ""
    title = f"calibrated layers (output rel L2 error{', ' + on if on else ''})"
    columns = (("layer", True), ("T", False)) + ((("on", True),) if not on else ()) + (
        ("SVD", False), ("calibrated", False), ("kept", True))
    notes: list[str] = []
    rows = []
    for layer in cal.layers:
        basis, before, after = layer_errors(layer)
        kept = "SVD" if layer.fell_back else "refit"
        reason = _reason(layer)
        if reason:
            notes += [] if reason in notes else [reason]
            kept += f" [{notes.index(reason) + 1}]"
        rows.append([layer.name, str(layer.rank)] + ([] if on else [BASIS_TEXT.get(basis, basis)])
                    + [_error(before), _error(after), kept])
    footnotes = [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return title, _fitted_table(columns, rows, width), footnotes


def render_table(result, width: int = 100, color: bool = False) -> str:
    """The human report of a ``ConversionResult``, ``width`` columns wide (ANSI colour if ``color``)."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False)

    def lines(items):
        for line in items:  # breaks at spaces only: a long path stays whole (the terminal folds it)
            for part in textwrap.wrap(line, width, subsequent_indent="    ", break_long_words=False,
                                      break_on_hyphens=False) if len(line) > width else [line]:
                console.print(part, markup=False, soft_wrap=True)

    def table(titled):
        title, body, footnotes = titled
        lines([title])
        console.print(body)
        lines(footnotes)

    lines(_summary_lines(result, width))
    lines(goal_lines(result.goal, width))
    if result.plan.layers:
        table(_layers_table(result, width))
    if result.plan.skipped:
        lines([f"left alone: {len(result.plan.skipped)} conv(s)"]
              + [f"  {s.name}: {s.reason}" for s in result.plan.skipped[:20]])
    if result.calibration is not None:
        lines(_calibration_lines(result.calibration))
        table(_calibration_table(result.calibration, width))
    lines(distill_lines(result.distillation, width))
    lines(verify_lines(result, width) + evaluation_lines(result.evaluation, width)
          + _latency_lines(result, width) + [f"note: {n}" for n in result.notes])
    if result.timings:
        lines(text.wrap_parts("time: ", [f"{k} {v:.2f}s" for k, v in result.timings.items()], width,
                              indent="      "))
    if result.manifest:
        lines([f"manifest: {result.manifest}"])
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
