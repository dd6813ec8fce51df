"""Honest verification figures: top-1 agreement with its Wilson interval, the strength of the evidence, and
the error of the residual part of a residual output (a denoiser returning x - f(x), run in onnxruntime),
which is the error the tolerance applies to."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper, numpy_helper
from onnx_builders import model, save, vinfo

from sepconv_cli.backends.onnx.rewriter import BACKEND
from sepconv_cli.core.stats import wilson_interval
from sepconv_cli.pipeline.evidence import MIN_SAMPLES, Strength, assess, is_random, random_source
from sepconv_cli.pipeline.verify import compare, headline_error, residual_input, verify


def test_wilson_interval_known_values():
    low, high = wilson_interval(64, 64)
    assert round(100 * low, 1) == 94.3 and high == 1.0
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_holds_the_share_and_narrows_with_samples(case):
    k, n = case
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    low4, high4 = wilson_interval(4 * k, 4 * n)
    assert high4 - low4 < high - low


def test_agreement_carries_its_interval_and_row_count():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((64, 10))
    same = compare("logits", logits, logits + 1e-6)
    assert (same.top1, same.top1_samples, same.top1_high) == (1.0, 64, 1.0)
    assert round(100 * same.top1_low, 1) == 94.3
    flipped = logits.copy()
    flipped[:8] = -flipped[:8]  # 8 of 64 rows now pick another class
    cmp = compare("logits", logits, flipped)
    assert cmp.top1 == pytest.approx(56 / 64)
    assert (cmp.top1_low, cmp.top1_high) == pytest.approx(wilson_interval(56, 64))
    image = compare("map", np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4)))
    assert (image.top1, image.top1_low, image.top1_samples) == (None, None, 0)


@pytest.mark.parametrize(("source", "role", "samples", "strength", "reason"), [
    (random_source(0), "", 4, Strength.WEAK, "random inputs"),
    (random_source(7), "", 1000, Strength.WEAK, "random inputs"),
    ("c.npz", "in-sample calibration", 200, Strength.WEAK, "in-sample"),
    ("c.npz", "held-back calibration", MIN_SAMPLES - 1, Strength.WEAK, f"only {MIN_SAMPLES - 1} sample(s), under 32"),
    ("c.npz", "held-back calibration", MIN_SAMPLES, Strength.STRONG, "32 held-back calibration samples"),
    ("inputs.npz", "", 64, Strength.STRONG, "64 samples"),
])
def test_evidence_rules(source, role, samples, strength, reason):
    evidence = assess(source, role, samples)
    assert evidence.strength is strength and reason in evidence.reason
    assert evidence.weak == (strength is Strength.WEAK) and str(evidence).startswith(strength.value)


def test_verification_reports_its_evidence():
    out = {"y": np.ones((40, 3))}
    assert verify(out, out, random_source(0)).evidence.weak
    assert not verify(out, out, "val.npz", role="held-back calibration").evidence.weak
    assert verify({"y": np.ones((8, 3))}, {"y": np.ones((8, 3))}, "val.npz").evidence.weak
    assert is_random("random (seed 3)") and not is_random("random.npz")


def _denoiser(weight: np.ndarray) -> object:
    """y = x - conv3x3(x) (a residual output, DnCNN-style)."""
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["f"], pads=[1, 1, 1, 1]), helper.make_node("Sub", ["x", "f"], ["y"])]
    return model(nodes, [vinfo("x", ["N", 1, 16, 16])], [vinfo("y", ["N", 1, 16, 16])], inits)


@pytest.fixture(scope="module")
def denoised(tmp_path_factory):
    """A residual denoiser and a 'converted' one whose residual branch is off by 20%, run in onnxruntime
    on noisy smooth images."""
    folder = tmp_path_factory.mktemp("denoiser")
    rng = np.random.default_rng(0)
    kernel = np.zeros((1, 1, 3, 3))
    kernel[0, 0, 1, 1] = 1.0
    kernel -= 1 / 9  # the high-pass part: x - highpass(x) = blur(x)
    before = save(_denoiser(kernel), folder, "before.onnx")
    after = save(_denoiser(0.8 * kernel), folder, "after.onnx")
    grid = np.arange(16) / 16
    clean = 0.5 + 0.4 * np.sin(rng.random((48, 1, 1, 1)) * 6 + grid[:, None] + grid[None, :])
    x = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
    ref, got = (BACKEND.run(p, {"x": x}) for p in (before, after))
    return x, ref, got


def test_residual_output_reports_the_residual_error_and_judges_by_it(denoised):
    x, ref, got = denoised
    result = verify(ref, got, "noisy.npz", tolerance=0.1, role="held-back calibration", inputs={"x": x})
    out = result.outputs[0]
    assert out.residual_of == "x" and out.error_on == "residual"
    y, y2, x64 = (np.asarray(a, np.float64) for a in (ref["y"], got["y"], x))
    expected = np.linalg.norm((y2 - x64) - (y - x64)) / np.linalg.norm(y - x64)
    assert out.residual_rel_l2 == pytest.approx(expected, rel=1e-6)
    assert out.residual_rel_l2 == pytest.approx(0.2, abs=1e-3)  # the residual branch is off by 20%
    assert out.rel_l2 < 0.1  # ... which the output's own error hides
    assert headline_error(result) == (pytest.approx(out.residual_rel_l2), "residual")
    assert result.error_on == "residual" and not result.passed  # rel L2 alone would have passed
    assert result.rel_l2 == out.rel_l2  # the old field keeps its meaning


def test_without_inputs_or_for_other_outputs_the_output_error_applies(denoised):
    x, ref, got = denoised
    plain = verify(ref, got, "noisy.npz", tolerance=0.1)
    assert plain.outputs[0].residual_of is None and headline_error(plain) == (plain.rel_l2, "output") and plain.passed
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 10))
    result = verify({"p": logits}, {"p": logits * 1.1}, "f.npz", inputs={"x": rng.standard_normal((4, 10))})
    assert result.outputs[0].residual_of is None and headline_error(result)[1] == "output"
    assert headline_error(verify({}, {}, "f.npz")) == (0.0, "output")


def test_residual_rule_edges():
    x = np.ones((2, 4))
    assert residual_input(x * 1.4, {"x": x}) == "x"  # ||y - x|| = 0.29 ||y||
    assert residual_input(x * 2.1, {"x": x}) is None  # = 0.52 ||y||: the input does not dominate
    assert residual_input(x, {"x": np.ones((2, 5))}) is None  # other shape
    assert residual_input(x, {"ids": np.ones((2, 4), np.int64)}) is None  # integer input
    assert residual_input(np.zeros((2, 4)), {"x": x}) is None
    assert residual_input(x, {"far": x * 1.3, "near": x * 1.1}) == "near"


def test_output_error_is_the_headline_error(denoised):
    from sepconv_cli.pipeline.verify import output_error

    x, ref, got = denoised
    expected = verify(ref, got, "f.npz", inputs={"x": x}).outputs[0].residual_rel_l2
    assert output_error(ref, got, {"x": x}) == pytest.approx(expected)
    assert output_error(ref, got, {}) == pytest.approx(verify(ref, got, "f.npz").rel_l2)
