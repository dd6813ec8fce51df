"""Renderers for `convert`: JSON (for stdout) here, the before/after table (rich, for stderr) in
``convert_text``.

Units: params in elements, MACs (FLOPs = 2 x MACs in JSON), file sizes in bytes, latency in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from sepconv_cli.core.calibrated import CalibrationReport
from sepconv_cli.core.plans import PlannedLayer
from sepconv_cli.core.records import SCHEMA_VERSION, Report
from sepconv_cli.pipeline.convert import ConversionResult
from sepconv_cli.render.convert_goal import goal_dict
from sepconv_cli.render.convert_quality import distillation_dict, evaluation_dict, output_extra, verification_extra
from sepconv_cli.render.convert_text import layer_errors, render_table

__all__ = ["layer_errors", "render_json", "render_table", "result_dict"]


def _totals(report: Report | None) -> dict | None:
    if report is None:
        return None
    return {"params": report.params, "macs": report.macs, "flops": report.flops,
            "file_size": report.model.file_size}


def _layer(p: PlannedLayer) -> dict:
    return {"name": p.name, "rank": p.rank, "params_before": p.params_before, "params_after": p.params_after,
            "macs_before": p.macs_before, "macs_after": p.macs_after, "energy": p.energy,
            "weight_error": p.weight_error, "bn_folded": p.bn_folded}


def _verification(result: ConversionResult) -> dict | None:
    v = result.verification
    if v is None:
        return None
    return {"inputs": v.inputs_source, "inputs_role": v.inputs_role or None, "samples": v.samples, "rel_l2": v.rel_l2, "max_abs": v.max_abs,
            "tolerance": v.tolerance, "passed": v.passed, **verification_extra(v),
            "outputs": [{"name": o.name, "max_abs": o.max_abs, "rel_l2": o.rel_l2, "cosine": o.cosine,
                         "top1": o.top1, **output_extra(o)} for o in v.outputs]}


def _calibration(cal: CalibrationReport | None) -> dict | None:
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
        "goal": goal_dict(result.goal),
        "evaluation": evaluation_dict(result.evaluation),
        "distillation": distillation_dict(result.distillation),
        "timings_s": dict(result.timings), "notes": list(result.notes),
    }


def render_json(result: ConversionResult) -> str:
    """JSON text (never through rich)."""
    return json.dumps(result_dict(result), indent=2) + "\n"
