"""Renderers for `convert`: a before/after table (rich, for stderr) and JSON (for stdout).

Units: params in elements, MACs (FLOPs = 2 x MACs in JSON), file sizes in bytes, latency in milliseconds.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from typing import Optional

from sepconv_cli.conversion import ConversionResult
from sepconv_cli.records import SCHEMA_VERSION, CalibratedLayer, CalibrationReport, PlannedLayer, Report
from sepconv_cli.render import text

# How each error basis of a calibration report reads in the table.
BASIS_TEXT = {"holdout": "held-back inputs", "fit": "fit inputs"}


def _totals(report: Optional[Report]) -> Optional[dict]:
    if report is None:
        return None
    return {"params": report.params, "macs": report.macs, "flops": report.flops,
            "file_size": report.model.file_size}


def _layer(p: PlannedLayer) -> dict:
    return {"name": p.name, "rank": p.rank, "params_before": p.params_before, "params_after": p.params_after,
            "macs_before": p.macs_before, "macs_after": p.macs_after, "energy": p.energy,
            "weight_error": p.weight_error, "bn_folded": p.bn_folded}


def _verification(result: ConversionResult) -> Optional[dict]:
    v = result.verification
    if v is None:
        return None
    return {"inputs": v.inputs_source, "samples": v.samples, "rel_l2": v.rel_l2, "max_abs": v.max_abs,
            "tolerance": v.tolerance, "passed": v.passed,
            "outputs": [{"name": o.name, "max_abs": o.max_abs, "rel_l2": o.rel_l2, "cosine": o.cosine,
                         "top1": o.top1} for o in v.outputs]}


def layer_errors(layer: CalibratedLayer) -> tuple[str, Optional[float], Optional[float]]:
    """(basis, before, after): the layer's output error with SVD vs calibrated weights, on the held-back
    samples when some were held back (``"holdout"``), else on the samples of the fit (``"fit"``)."""
    if layer.holdout_error_before is not None:
        return "holdout", layer.holdout_error_before, layer.holdout_error_after
    return "fit", layer.fit_error_before, layer.fit_error_after


def _calibration(cal: Optional[CalibrationReport]) -> Optional[dict]:
    """The calibration report as JSON, each layer with its preferred ``error_on``/``error_before``/
    ``error_after`` beside the raw fit and held-back figures (relative L2 errors, seconds)."""
    if cal is None:
        return None
    data = asdict(cal)
    for entry, layer in zip(data["layers"], cal.layers):
        basis, before, after = layer_errors(layer)
        entry.update({"error_on": basis, "error_before": before, "error_after": after})
    return data


def result_dict(result: ConversionResult) -> dict:
    """The conversion as a JSON-ready dict (stable keys; see DESIGN §3 for ``model``/``totals``)."""
    lat = result.latency
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"path": result.before.model.path, "format": result.before.model.format},
        "output": result.output, "manifest": result.manifest, "written": result.written,
        "totals": {"before": _totals(result.before), "after": _totals(result.after)},
        "plan": {"init": result.plan.init, "params_saved": result.plan.params_saved,
                 "macs_saved": result.plan.macs_saved},
        "layers": [_layer(p) for p in result.plan.layers],
        "skipped": [{"name": s.name, "reason": s.reason} for s in result.plan.skipped],
        "folded_bn": list(result.folded_bn),
        "verification": _verification(result),
        "latency": None if lat is None else {"before_ms": lat.before_ms, "after_ms": lat.after_ms,
                                             "ratio": lat.ratio, "runs": lat.runs},
        "calibration": _calibration(result.calibration),
        "timings_s": dict(result.timings), "notes": list(result.notes),
    }


def render_json(result: ConversionResult) -> str:
    """JSON text (never through rich)."""
    return json.dumps(result_dict(result), indent=2) + "\n"


def _change(before: Optional[int], after: Optional[int], fmt=text.compact, ratio: bool = True) -> str:
    if before is None or after is None:
        return "?"
    factor = f" ({before / after:.2f}x)" if after and ratio else ""
    return f"{fmt(before)} -> {fmt(after)}{factor}"


def _number(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _summary_lines(result: ConversionResult) -> list[str]:
    before, after = result.before, result.after
    lines = [f"model: {before.model.path} -> {result.output or '(dry run: nothing written)'}"]
    if after is not None:
        lines += [f"params:    {_change(before.params, after.params, text.exact)}",
                  f"MACs:      {_change(before.macs, after.macs)}",
                  f"file size: {_change(before.model.file_size, after.model.file_size, text.size)}"]
    else:
        lines.append(f"planned saving: {text.exact(result.plan.params_saved)} params, "
                     f"{text.compact(result.plan.macs_saved)} MACs")
    if result.folded_bn:
        names = result.folded_bn
        shown = names[0] if len(names) == 1 else f"{len(names)} layers"
        lines.append(f"BatchNorm folded into the conv before it: {shown} (names in the manifest)")
    return lines


def _verify_lines(result: ConversionResult) -> list[str]:
    v = result.verification
    if v is None:
        return [] if result.output is None else ["verification: skipped (--no-verify)"]
    lines = [f"verification on {v.inputs_source}, {v.samples} sample(s):"]
    for o in v.outputs:
        top1 = "" if o.top1 is None else f", top-1 agreement {text.percent(o.top1)}"
        lines.append(f"  {o.name}: max abs {o.max_abs:.3g}, rel L2 {o.rel_l2:.3g}, cosine {o.cosine:.6f}{top1}")
    if v.tolerance is not None:
        verdict = "within" if v.passed else "EXCEEDS"
        lines.append(f"  relative error {v.rel_l2:.3g} {verdict} tolerance {v.tolerance:g}"
                     + ("" if v.passed else " (the file was written anyway)"))
    return lines


def _error(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:.3g}"


def _calibration_lines(cal: CalibrationReport) -> list[str]:
    """Summary of a calibration: samples, time, end-to-end output error before/after."""
    return [f"calibration: {cal.samples_fit} fit + {cal.samples_holdout} held-back input(s) in {cal.seconds:.2f}s",
            f"  output rel L2 error on {BASIS_TEXT.get(cal.end_to_end_on, cal.end_to_end_on)}: "
            f"{_error(cal.output_error_before)} (SVD) -> {_error(cal.output_error_after)} (calibrated)"]


def _name_width(names) -> int:
    """Width of the layer column: the longest name, up to 28 characters (longer names fold)."""
    return min(max((len(n) for n in names), default=5), 28)


def _table(title: str, columns: tuple[tuple[str, bool], ...], name_width: int):
    """A table in the look of `analyze`: a rule under the header, no borders, the first column at
    ``name_width``; ``columns`` are (header, left-aligned)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i, (col, left) in enumerate(columns):
        table.add_column(col, justify="left" if left else "right", overflow="fold", no_wrap=i > 0,
                         min_width=name_width if i == 0 else None)
    return table


def _calibration_table(cal: CalibrationReport):
    """Per layer: the layer's output error with SVD vs calibrated weights, and which weights were kept."""
    bases = {layer_errors(layer)[0] for layer in cal.layers}
    on = BASIS_TEXT.get(bases.pop(), "") if len(bases) == 1 else ""
    title = f"calibrated layers (output rel L2 error{', ' + on if on else ''})"
    columns = (("layer", True), ("T", False)) + ((("on", True),) if not on else ()) + (
        ("SVD", False), ("calibrated", False), ("kept", True))
    table = _table(title, columns, _name_width(layer.name for layer in cal.layers))
    for layer in cal.layers:
        basis, before, after = layer_errors(layer)
        kept = layer.fell_back or "refit"  # a fallback reason already says the SVD weights were kept
        cells = [layer.name, str(layer.rank)] + ([] if on else [BASIS_TEXT.get(basis, basis)])
        table.add_row(*cells, _error(before), _error(after), kept + (f" ({layer.note})" if layer.note else ""))
    return table


def _latency_lines(result: ConversionResult) -> list[str]:
    lat = result.latency
    if lat is None:
        return []
    macs = result.after.macs if result.after is not None else None
    mac_ratio = f"; MACs ratio {result.before.macs / macs:.2f}x" if macs else ""
    return [f"latency (median of {lat.runs}, interleaved): {lat.before_ms:.3f} ms -> {lat.after_ms:.3f} ms "
            f"({lat.ratio:.2f}x){mac_ratio} (MACs are not speed)"]


def _layers_table(result: ConversionResult):
    """Per converted layer: rank, params and MACs before -> after, energy kept, weight error, BN folded."""
    columns = (("layer", True), ("T", False), ("params", False), ("MACs", False), ("energy", False),
               ("w.err", False), ("BN", True))
    table = _table("converted layers (energy kept, rel. weight error at T)", columns,
                   _name_width(p.name for p in result.plan.layers))
    for p in result.plan.layers:
        table.add_row(p.name, str(p.rank), _change(p.params_before, p.params_after, ratio=False),
                      _change(p.macs_before, p.macs_after, ratio=False), _error(p.energy), _error(p.weight_error),
                      "yes" if p.bn_folded else "")
    return table


def render_table(result: ConversionResult, width: int = 100, color: bool = False) -> str:
    """The human report: totals before/after, per-layer changes, skipped layers, verification, latency."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False)
    for line in _summary_lines(result):
        console.print(line, markup=False)
    console.print(_layers_table(result))
    if result.plan.skipped:
        console.print(f"left alone: {len(result.plan.skipped)} conv(s)", markup=False)
        for s in result.plan.skipped[:20]:
            console.print(f"  {s.name}: {s.reason}", markup=False)
    if result.calibration is not None:
        for line in _calibration_lines(result.calibration):
            console.print(line, markup=False)
        console.print(_calibration_table(result.calibration))
    lines = _verify_lines(result) + _latency_lines(result)
    for line in lines + [f"note: {n}" for n in result.notes]:
        console.print(line, markup=False)
    if result.timings:
        console.print("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()), markup=False)
    if result.manifest:
        console.print(f"manifest: {result.manifest}", markup=False)
    return buf.getvalue()
