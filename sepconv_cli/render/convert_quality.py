"""How good the converted model is, for `convert`'s report: verification (errors, top-1 agreement with its
95% interval, the strength of the evidence, the residual part of residual outputs), labelled evaluation
(accuracy, or PSNR and MSE, before -> after) and distillation (held-back error before -> after).

Text lines fit the report's width (80 columns in a terminal); the ``*_dict`` functions give the same
figures as JSON-ready dicts. The records are read by attribute (``pipeline.verify.Verification``,
``pipeline.evaluate.Evaluation``, ``backends.torch.distill.DistillReport``). Units: errors are relative L2
(dimensionless), accuracies shares (shown as %), PSNR in dB, MSE in squared output units, times in seconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from sepconv_cli.pipeline.evaluate import EvalKind, Evaluation
from sepconv_cli.pipeline.verify import Verification, headline_error
from sepconv_cli.render import text

# What to try when the evidence is weak, by its reason's first word.
WEAK_ADVICE = {"random": "verify on real inputs (--calibrate or --inputs)",
               "in-sample": "give more calibration inputs so that some are held back",
               "only": "give at least 32 verification inputs"}


def share_interval(low: float | None, high: float | None) -> str:
    """``94.3-100%``: a share's interval in percent, an end at exactly 0 or 1 without decimals."""
    def end(value: float | None) -> str:
        if value is None:
            return "?"
        return f"{100 * value:.0f}" if value in (0.0, 1.0) else f"{100 * value:.1f}"
    return f"{end(low)}-{end(high)}%"


def agreement_text(share: float | None, low: float | None, high: float | None, samples: int) -> str:
    """``top-1 agreement 100.0% (95% CI 94.3-100%, 64 samples)``."""
    return f"top-1 agreement {text.percent(share)} (95% CI {share_interval(low, high)}, {samples} samples)"


def _output_lines(o: Any, width: int) -> list[str]:
    parts = [f"max abs {o.max_abs:.3g}", f"rel L2 {o.rel_l2:.3g}", f"cosine {o.cosine:.6f}"]
    if o.top1 is not None:
        parts.append(agreement_text(o.top1, o.top1_low, o.top1_high, o.top1_samples))
    lines = text.wrap_parts(f"  {o.name}: ", parts, width)
    if o.residual_rel_l2 is not None:
        lines += text.wrap_parts("    ", [f"output = {o.residual_of} + residual: residual part rel L2",
                                         f"{o.residual_rel_l2:.3g} (the tolerance applies to it)"], width, sep=" ")
    return lines


def _evidence_lines(v: Verification, width: int) -> list[str]:
    evidence = v.evidence
    if not evidence.weak:
        return [f"  evidence: strong ({evidence.reason})"]
    advice = WEAK_ADVICE.get(evidence.reason.split()[0], "")
    parts = [f"WEAK ({evidence.reason})"] + ([f"- {advice}"] if advice else [])
    return text.wrap_parts("  evidence: ", parts, width, sep=" ")


def verify_lines(result: Any, width: int) -> list[str]:
    """The verification section of the report (``result``: a ``ConversionResult``)."""
    v = result.verification
    if v is None:
        return [] if result.output is None else ["verification: skipped (--no-verify)"]
    if v.inputs_role:
        lines = text.wrap_parts("verification on ", [f"{v.samples} {v.inputs_role} input(s)", f"({v.inputs_source}):"],
                                width, sep=" ", indent="  ")
    else:
        lines = [f"verification on {v.inputs_source}, {v.samples} sample(s):"]
    lines += _evidence_lines(v, width)
    for o in v.outputs:
        lines += _output_lines(o, width)
    if v.tolerance is not None:
        error, on = headline_error(v)
        verdict = "within" if v.passed else "EXCEEDS"
        label = "relative error" if on == "output" else "residual relative error"
        parts = [f"{label} {error:.3g} {verdict} tolerance {v.tolerance:g}"]
        lines += text.wrap_parts("  ", parts + ([] if v.passed else ["(the file was written anyway)"]), width,
                                 sep=" ")
    return lines


def _signed(value: float, unit: str) -> str:
    return f"{value:+.2f} {unit}"


def evaluation_lines(ev: Evaluation | None, width: int) -> list[str]:
    """The labelled-evaluation section (empty without ``--eval``)."""
    if ev is None:
        return []
    lines = text.wrap_parts("evaluation on ", [ev.path, f"({ev.samples} samples, {ev.kind.value}, output {ev.output}):"],
                            width, sep=" ", indent="  ")
    if ev.kind is EvalKind.CLASSIFICATION:
        lines += text.wrap_parts("  accuracy: ", [
            f"{text.percent(ev.accuracy_before)} -> {text.percent(ev.accuracy_after)} ({_signed(ev.change, 'pt')})",
            f"95% CI {share_interval(ev.accuracy_before_low, ev.accuracy_before_high)} -> "
            f"{share_interval(ev.accuracy_after_low, ev.accuracy_after_high)}"], width, sep="; ")
        return lines
    lines += text.wrap_parts("  PSNR: ", [
        f"{ev.psnr_before:.2f} dB -> {ev.psnr_after:.2f} dB ({_signed(ev.change, 'dB')})",
        f"peak {ev.peak:g} ({ev.peak_rule})"], width, sep="; ")
    lines.append(f"  MSE: {ev.mse_before:.4g} -> {ev.mse_after:.4g}")
    return lines


BASIS = {"holdout": "held-back inputs", "fit": "fit inputs"}


def distill_lines(report: Any, width: int) -> list[str]:
    """The distillation section (empty when none ran); ``report``: a ``DistillReport``."""
    if report is None:
        return []
    verdict = "kept" if report.kept else "not kept: no better, calibrated weights restored"
    lines = [f"distillation: {report.steps} steps on {report.samples_fit} fit input(s) in {report.seconds:.2f}s"]
    lines += text.wrap_parts(f"  output error on {BASIS.get(report.basis, report.basis)}: ", [
        f"{report.error_before:.3g} (before) -> {report.error_after:.3g} (distilled),", verdict], width, sep=" ")
    return lines


def verification_extra(v: Verification) -> dict:
    """Keys added to the verification JSON: the error the tolerance applies to and the evidence."""
    error, on = headline_error(v)
    return {"error": error, "error_on": on,
            "evidence": {"strength": v.evidence.strength.value, "reason": v.evidence.reason}}


def output_extra(o: Any) -> dict:
    """Keys added to each verified output's JSON: agreement interval and the residual part's error."""
    return {"top1_low": o.top1_low, "top1_high": o.top1_high, "top1_samples": o.top1_samples,
            "residual_of": o.residual_of, "residual_rel_l2": o.residual_rel_l2, "error_on": o.error_on}


def evaluation_dict(ev: Evaluation | None) -> dict | None:
    """The evaluation as JSON (``kind``: ``labels`` or ``targets``; ``change`` in points or dB)."""
    if ev is None:
        return None
    data = {**asdict(ev), "kind": ev.kind.value, "change": ev.change}
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in data.items()}


def distillation_dict(report: Any) -> dict | None:
    """The distillation report as JSON (``gain`` = error before / after as kept)."""
    if report is None:
        return None
    return {**asdict(report), "gain": report.gain}
