"""Calibration as a step of the `convert` pipeline (``ConvertRequest.after_rewrite``).

``CalibrationHook(path, options)`` loads the calibration inputs, refits the converted model with the
backend's driver (chosen by source format in ``DRIVERS``, imported lazily: the ONNX path never imports
torch) and returns the converted model with the plan as calibration left it. The report of the run is
kept on the hook (``hook.report``) for the renderers and the manifest, and the inputs calibration did not
fit on are offered for verification (``hook.verification_feed()``), so that its figures are out of sample.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sepconv_cli.backends.base import Converted, LoadedModel
from sepconv_cli.calibration.curves import CurveCandidate, LayerCurve
from sepconv_cli.calibration.loop import CalibResult, replan
from sepconv_cli.calibration.solve import CalibOptions, split_samples
from sepconv_cli.core.calibrated import CalibrationReport
from sepconv_cli.core.decompose import fold_batchnorm
from sepconv_cli.core.records import Report
from sepconv_cli.core.weights import ModelHandle
from sepconv_cli.errors import UsageError
from sepconv_cli.pipeline.inputs import load_calibration_inputs

# source format -> "module:function" (original, converted, plan, inputs, options) -> CalibResult
DRIVERS: dict[str, str] = {
    "onnx": "sepconv_cli.backends.onnx.calibrate:calibrate_onnx",
    "state_dict": "sepconv_cli.backends.torch.calibrate:calibrate_torch",
    "pickle": "sepconv_cli.backends.torch.calibrate:calibrate_torch",
    "entrypoint": "sepconv_cli.backends.torch.calibrate:calibrate_torch",
    "pt2": "sepconv_cli.backends.torch.calibrate:calibrate_pt2",
}

# source format -> "module:function" (original, candidates, inputs, options) -> {name: LayerCurve}
CURVES: dict[str, str] = {
    "onnx": "sepconv_cli.backends.onnx.curves:layer_curves_onnx",
    "state_dict": "sepconv_cli.backends.torch.curves:layer_curves_torch",
    "pickle": "sepconv_cli.backends.torch.curves:layer_curves_torch",
    "entrypoint": "sepconv_cli.backends.torch.curves:layer_curves_torch",
    "pt2": "sepconv_cli.backends.torch.curves:layer_curves_pt2",
}

REFUSED: dict[str, str] = {
    "torchscript": "TorchScript models cannot be converted; export them to ONNX and calibrate that",
}


def _original(loaded: LoadedModel) -> Any:
    """What the driver reads the original from: ONNX models holding external data go by path."""
    if loaded.report.model.format == "onnx":
        from sepconv_cli.backends.onnx.edit import has_external_data

        if loaded.native is None or has_external_data(loaded.native):
            return loaded.report.model.path
    return loaded.native


def _entry(table: dict[str, str], fmt: str):
    if fmt in REFUSED:
        raise UsageError(REFUSED[fmt])
    if fmt not in table:
        raise UsageError(f"calibration is not available for models of format {fmt!r}")
    module, func = table[fmt].split(":")
    return getattr(importlib.import_module(module), func)


def driver_for(fmt: str):
    """The calibration entry point for a source format (UsageError naming the supported route if none)."""
    return _entry(DRIVERS, fmt)


def curves_for(fmt: str):
    """The rank-curve entry point for a source format (UsageError naming the supported route if none)."""
    return _entry(CURVES, fmt)


def curve_candidates(report: Report, handle: ModelHandle, ranks: Mapping[str, Sequence[int]],
                     fold_bn: bool = True) -> list[CurveCandidate]:
    """Candidates for ``layer_curves`` from a loaded model: ``ranks`` maps each layer to the ranks to
    evaluate (empty: every rank below break-even); the BatchNorm that follows is folded when ``fold_bn``.
    Layers without readable constant weights are left out."""
    out = []
    for name, wanted in ranks.items():
        row, weights = report.layer(name), handle.conv_weights(name)
        if row.conv is None or weights is None:
            continue
        bn = row.bn_follows if fold_bn and weights.bn is not None else None
        folded = weights if bn else replace(weights, bn=None)
        weight, bias = fold_batchnorm(folded, row.conv.groups, row.conv.transposed)
        out.append(CurveCandidate(name, weight, row.conv.groups, bias, row.conv.transposed, tuple(wanted), bn))
    return out


def layer_curves(loaded: LoadedModel, candidates: Sequence[CurveCandidate], path: str,
                 options: CalibOptions = CalibOptions(), notes: list | None = None) -> dict[str, LayerCurve]:
    """``{layer name: LayerCurve}`` of ``candidates`` from one pass of the original over the calibration
    inputs at ``path`` (split fit / held back as calibration splits them)."""
    curves = curves_for(loaded.report.model.format)
    inputs = load_calibration_inputs(path, loaded.report.model.inputs, options.samples, notes)
    return curves(_original(loaded), candidates, inputs, options)


@dataclass
class CalibrationHook:
    """``after_rewrite`` hook: calibrate on the inputs at ``path``; ``report``/``result``/``inputs`` (by
    input name) are set after a run, ``notes`` collects what loading the inputs changed (dtype casts)."""

    path: str
    options: CalibOptions = CalibOptions()
    report: CalibrationReport | None = None
    result: CalibResult | None = None
    inputs: dict | None = None
    notes: list = field(default_factory=list)
    distillation: Any = None  # a DistillingHook's report; calibration alone never distills

    def __call__(self, loaded: LoadedModel, converted: Converted, backend: Any = None) -> Converted:
        fmt = loaded.report.model.format
        calibrate = driver_for(fmt)
        inputs = load_calibration_inputs(self.path, loaded.report.model.inputs, self.options.samples, self.notes)
        self.inputs = inputs
        self.result = calibrate(_original(loaded), converted.native, converted.plan, inputs, self.options)
        self.report = self.result.report
        plan = replan(converted.plan, loaded.report, self.result)
        return replace(converted, native=self.result.model, plan=plan)

    def verification_feed(self) -> tuple[dict, str, str]:
        """(inputs, source, role) to verify on: the samples held back from the fit (split as the drivers
        split them), or all of them, said so, when none were held back."""
        if self.inputs is None:
            raise RuntimeError("verification_feed needs a calibration run first")
        count = min(len(a) for a in self.inputs.values())
        fit, held = split_samples(count, self.options.holdout, self.options.seed)
        chosen, role = (held, "held-back calibration") if len(held) else (fit, "in-sample calibration")
        return {name: a[chosen] for name, a in self.inputs.items()}, self.path, role
