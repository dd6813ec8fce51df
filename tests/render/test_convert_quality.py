"""The quality sections of `convert`'s report at 80 columns and in JSON: top-1 agreement with its 95%
interval, the evidence label with advice when weak, the residual part's error of a residual output, the
labelled evaluation (accuracy or PSNR before -> after) and distillation (held-back error before -> after)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from sepconv_cli.backends.torch.distill import DistillReport
from sepconv_cli.pipeline.evaluate import EvalKind, Evaluation
from sepconv_cli.pipeline.evidence import random_source
from sepconv_cli.pipeline.verify import verify
from sepconv_cli.render.convert_quality import (
    agreement_text,
    distill_lines,
    distillation_dict,
    evaluation_dict,
    evaluation_lines,
    output_extra,
    share_interval,
    verification_extra,
    verify_lines,
)

WIDTH = 80


def _fits(lines: list[str]) -> None:
    assert all(len(line) <= WIDTH for line in lines), "\n".join(lines)


def _logits(samples: int, flipped: int = 0):
    a = np.random.default_rng(0).standard_normal((samples, 10))
    b = a.copy()
    b[:flipped] = -b[:flipped]
    return {"logits": a}, {"logits": b}


def test_agreement_reads_with_its_interval():
    assert agreement_text(1.0, 0.9434, 1.0, 64) == "top-1 agreement 100.0% (95% CI 94.3-100%, 64 samples)"
    assert share_interval(0.0, 0.2775) == "0-27.8%" and share_interval(None, None) == "?-?%"


def test_held_back_classifier_verification_is_strong_and_shows_the_interval():
    ref, got = _logits(64)
    v = verify(ref, got, "calib.npz", tolerance=0.01, role="held-back calibration")
    lines = verify_lines(SimpleNamespace(verification=v, output="o.onnx"), WIDTH)
    _fits(lines)
    body = " ".join(" ".join(lines).split())
    assert "evidence: strong (64 held-back calibration samples)" in body
    assert "top-1 agreement 100.0% (95% CI 94.3-100%, 64 samples)" in body
    assert "relative error 0 within tolerance 0.01" in body


def test_random_or_small_verification_is_weak_with_advice():
    ref, got = _logits(4, flipped=1)
    lines = verify_lines(SimpleNamespace(verification=verify(ref, got, random_source(0)), output="o.onnx"), WIDTH)
    _fits(lines)
    assert lines[1].startswith("  evidence: WEAK (random inputs") and "--calibrate or --inputs" in " ".join(lines)
    small = verify(*_logits(8), "val.npz")
    text = " ".join(verify_lines(SimpleNamespace(verification=small, output="o.onnx"), WIDTH))
    assert "WEAK (only 8 sample(s), under 32)" in text and "at least 32" in text


def _residual_case(tolerance: float | None = 0.1):
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8))
    noise = 0.1 * rng.standard_normal(x.shape)
    return verify({"denoised": x - noise}, {"denoised": x - 0.7 * noise}, "noisy.npz", tolerance,
                  role="held-back calibration", inputs={"noisy": x})


def test_residual_output_line_and_verdict_on_the_residual_part():
    v = _residual_case()
    lines = verify_lines(SimpleNamespace(verification=v, output="o.onnx"), WIDTH)
    _fits(lines)
    text = " ".join(" ".join(lines).split())
    assert "output = noisy + residual: residual part rel L2 0.3 (the tolerance applies to it)" in text
    assert "residual relative error 0.3 EXCEEDS tolerance 0.1 (the file was written anyway)" in text


def test_verification_json_adds_keys():
    v = _residual_case()
    extra = verification_extra(v)
    assert extra["error"] == pytest.approx(0.3) and extra["error_on"] == "residual"
    assert extra["evidence"] == {"strength": "strong", "reason": "40 held-back calibration samples"}
    out = output_extra(v.outputs[0])
    assert out["residual_of"] == "noisy" and out["residual_rel_l2"] == pytest.approx(0.3)
    assert out["error_on"] == "residual" and out["top1_samples"] == 0
    json.dumps({**extra, **out})


ACCURACY = Evaluation("eval.npz", EvalKind.CLASSIFICATION, "logits", 597, 0.9916, 0.9849, 0.9805, 0.9964,
                      0.9718, 0.9920)
PSNR = Evaluation("test_noisy.npz", EvalKind.REGRESSION, "denoised", 256, mse_before=1.7e-3, mse_after=2.1e-3,
                  psnr_before=27.70, psnr_after=26.78, peak=1.0, peak_rule="targets in [0, 1]")


def test_evaluation_blocks():
    lines = evaluation_lines(ACCURACY, WIDTH)
    _fits(lines)
    assert lines[0] == "evaluation on eval.npz (597 samples, labels, output logits):"
    assert lines[1].startswith("  accuracy: 99.2% -> 98.5% (-0.67 pt); 95% CI 98.0-99.6% -> 97.2-99.2%")
    lines = evaluation_lines(PSNR, WIDTH)
    _fits(lines)
    text = " ".join(" ".join(lines).split())
    assert "PSNR: 27.70 dB -> 26.78 dB (-0.92 dB); peak 1 (targets in [0, 1])" in text
    assert lines[-1] == "  MSE: 0.0017 -> 0.0021"
    assert evaluation_lines(None, WIDTH) == []


def test_evaluation_json():
    data = evaluation_dict(ACCURACY)
    assert data["kind"] == "labels" and data["change"] == pytest.approx(-0.67)
    assert data["accuracy_before"] == 0.9916 and data["psnr_before"] is None
    perfect = evaluation_dict(Evaluation("e.npz", EvalKind.REGRESSION, "y", 4, mse_before=0.0, mse_after=0.0,
                                         psnr_before=float("inf"), psnr_after=float("inf"), peak=1.0))
    assert perfect["psnr_before"] is None and perfect["change"] is None
    json.dumps(data, allow_nan=False)
    assert evaluation_dict(None) is None


def test_distillation_block_and_json():
    kept = DistillReport(300, 192, 64, "holdout", 0.655, 0.466, True, 0.39, 0.19, 6.5)
    lines = distill_lines(kept, WIDTH)
    _fits(lines)
    assert lines[0] == "distillation: 300 steps on 192 fit input(s) in 6.50s"
    assert " ".join(lines[1:]).split() == "output error on held-back inputs: 0.655 (before) -> 0.466 (distilled), kept".split()
    undone = DistillReport(5, 192, 64, "holdout", 0.655, 0.9, False, 0.39, 2.0, 0.1)
    assert "not kept: no better, calibrated weights restored" in " ".join(" ".join(distill_lines(undone, WIDTH)).split())
    data = distillation_dict(kept)
    assert data["gain"] == pytest.approx(0.655 / 0.466) and data["kept"] and distillation_dict(undone)["gain"] == 1.0
    assert distill_lines(None, WIDTH) == [] and distillation_dict(None) is None
