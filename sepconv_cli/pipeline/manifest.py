"""The JSON manifest written beside every converted model (``<output>.manifest.json``).

It records, per converted layer, the rank T, the energy kept, the relative weight error, params and MACs
before and after (elements, MACs), whether a BatchNorm was folded, and the full geometry of the
depthwise and pointwise replacements; plus the options used and the layers left alone with reasons.

Rebuilding the converted structure from the original architecture (no weights needed): for every entry
of ``layers``, replace the conv called ``name`` by

1. ``depthwise``: a conv of the same kind (``transposed``) from ``in_channels`` to ``in_channels * rank``
   channels, ``groups = in_channels``, the original ``kernel``/``stride``/``dilation``/``pads``/
   ``padding_mode``/``output_padding``, bias only if ``depthwise_bias``;
2. ``pointwise``: a regular 1x1 conv from ``in_channels * rank`` to ``out_channels`` with ``groups``,
   bias if ``pointwise_bias``;

and drop the BatchNorm named in ``bn_folded`` (its affine transform lives in the pointwise bias). Then
load the converted weights (ONNX initializers ``<name>/depthwise.weight``, ``<name>/pointwise.weight``,
``<name>/pointwise.bias``; or the converted state_dict) into that structure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.core.records import SCHEMA_VERSION, ConvSpec, Report

MANIFEST_SUFFIX = ".manifest.json"
KIND = "sepconv-convert-manifest"


def manifest_path(output: str) -> str:
    """Where the manifest of ``output`` goes: ``model.sep.onnx`` -> ``model.sep.onnx.manifest.json``."""
    return output + MANIFEST_SUFFIX


@dataclass(frozen=True)
class ManifestInputs:
    """What a manifest is made of: the analysed source, the realised plan, the re-analysed output (if
    any), the options used (plain JSON values) and the verification summary (plain JSON, or None)."""

    before: Report
    plan: Plan
    output_path: str
    output_format: str
    options: dict
    after: Report | None = None
    verification: dict | None = None
    calibration: dict | None = None


def _geometry(spec: ConvSpec) -> dict:
    """The original conv's geometry as JSON values."""
    return {
        "in_channels": spec.in_channels, "out_channels": spec.out_channels, "kernel": list(spec.kernel),
        "stride": list(spec.stride), "dilation": list(spec.dilation), "groups": spec.groups,
        "pads": list(spec.pads), "padding": spec.padding_text, "padding_mode": spec.padding_mode,
        "transposed": spec.transposed, "bias": spec.has_bias,
    }


def _layer(planned: PlannedLayer, before: Report, depthwise_bias: bool) -> dict:
    """One converted layer: plan figures, original geometry and the two replacement convs."""
    row = before.layer(planned.name)
    spec = row.conv
    entry: dict[str, Any] = {"name": planned.name, "op": row.op, **asdict(planned)}
    if spec is None:
        return entry
    mid = spec.in_channels * planned.rank
    pointwise_bias = planned.pointwise_bias
    if pointwise_bias is None:
        pointwise_bias = spec.has_bias or planned.bn_folded is not None
    entry.update({
        "original": _geometry(spec),
        "depthwise": {"op": row.op, "in_channels": spec.in_channels, "out_channels": mid,
                      "groups": spec.in_channels, "kernel": list(spec.kernel), "bias": depthwise_bias},
        "pointwise": {"op": "Conv", "in_channels": mid, "out_channels": spec.out_channels,
                      "groups": spec.groups, "kernel": [1] * len(spec.kernel), "bias": pointwise_bias},
        "depthwise_bias": depthwise_bias, "pointwise_bias": pointwise_bias,
    })
    return entry


def _side(report: Report | None, path: str, fmt: str) -> dict:
    """Totals of one model (params in elements, MACs, file size in bytes)."""
    if report is None:
        return {"path": path, "format": fmt}
    return {"path": path, "format": fmt, "params": report.params, "macs": report.macs,
            "file_size": report.model.file_size}


def build(inputs: ManifestInputs) -> dict:
    """The manifest as a JSON-ready dict."""
    plan = inputs.plan
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "source": _side(inputs.before, inputs.before.model.path, inputs.before.model.format),
        "output": _side(inputs.after, inputs.output_path, inputs.output_format),
        "options": inputs.options,
        "init": plan.init,
        "depthwise_bias": plan.depthwise_bias,
        "layers": [_layer(p, inputs.before, plan.depthwise_bias) for p in plan.layers],
        "skipped": [{"name": s.name, "reason": s.reason} for s in plan.skipped],
        "params_saved": plan.params_saved,
        "macs_saved": plan.macs_saved,
        "verification": inputs.verification,
        "calibration": inputs.calibration,
        "rebuild": ("replace each conv in 'layers' by 'depthwise' then 'pointwise' (same stride, padding, "
                    "dilation on the depthwise conv), drop the BatchNorm named in 'bn_folded', then load "
                    "the converted weights"),
    }


def dumps(inputs: ManifestInputs) -> str:
    """The manifest as indented JSON text."""
    return json.dumps(build(inputs), indent=2, sort_keys=False) + "\n"


def load(path: str) -> dict:
    """Read a manifest back (plain dict)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
