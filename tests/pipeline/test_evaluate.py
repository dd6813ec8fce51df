"""`--eval data.npz`: accuracy before/after on a trained classifier and PSNR/MSE on a residual denoiser, both
run in onnxruntime from ONNX graphs built here, checked against independent recomputations; each kind of
bad file refused with one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_builders import model, save, vinfo

from sepconv_cli.backends.onnx.rewriter import BACKEND
from sepconv_cli.core.records import TensorInfo
from sepconv_cli.errors import InputError
from sepconv_cli.pipeline.evaluate import EvalKind, evaluate, peak_of, psnr

DIGITS = TensorInfo("x", ("N", 64), "float32")
IMAGE = TensorInfo("x", ("N", 1, 8, 8), "float32")


def _linear(w: np.ndarray, b: np.ndarray):
    """logits = x @ w + b as an ONNX graph (one Gemm)."""
    inits = [numpy_helper.from_array(w.astype(np.float32), "w"), numpy_helper.from_array(b.astype(np.float32), "b")]
    node = helper.make_node("Gemm", ["x", "w", "b"], ["logits"])
    return model([node], [vinfo("x", ["N", w.shape[0]])], [vinfo("logits", ["N", w.shape[1]])], inits)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A linear classifier trained (ridge regression on one-hot classes) on sklearn's digits, and a
    rank-2 truncation of its weights (the 'converted' model), as ONNX files; plus the held-out split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1200], order[1200:]
    design = np.hstack([x[train], np.ones((len(train), 1))]).astype(np.float64)
    solved = np.linalg.solve(design.T @ design + 1e-1 * np.eye(65), design.T @ np.eye(10)[y[train]])
    w, b = solved[:64], solved[64]
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    low = (u[:, :2] * s[:2]) @ vt[:2]
    folder = tmp_path_factory.mktemp("digits")
    before, after = save(_linear(w, b), folder, "before.onnx"), save(_linear(low, b), folder, "after.onnx")
    return {"before": before, "after": after, "x": x[test], "y": y[test], "w": (w, b), "low": (low, b),
            "folder": folder}


def _accuracy(weights, x, y) -> float:
    w, b = weights
    return float(np.mean(np.argmax(x.astype(np.float64) @ w + b, 1) == y))


def _runners(before: str, after: str):
    return BACKEND.runner(before, threads=1), BACKEND.runner(after, threads=1)


def test_accuracy_before_and_after_match_independent_scores(digits):
    path = str(digits["folder"] / "eval.npz")
    np.savez(path, x=digits["x"], labels=digits["y"])
    result = evaluate(*_runners(digits["before"], digits["after"]), path, (DIGITS,))
    assert result.kind is EvalKind.CLASSIFICATION and result.samples == len(digits["y"]) and result.output == "logits"
    assert result.accuracy_before == pytest.approx(_accuracy(digits["w"], digits["x"], digits["y"]))
    assert result.accuracy_before > 0.9  # trained: the figures mean something
    assert result.accuracy_after == pytest.approx(_accuracy(digits["low"], digits["x"], digits["y"]))
    assert result.accuracy_after < result.accuracy_before - 0.2  # rank 2 of 10 classes loses a lot
    assert result.change == pytest.approx(100 * (result.accuracy_after - result.accuracy_before))
    assert result.accuracy_before_low < result.accuracy_before < result.accuracy_before_high
    assert result.psnr_before is None and result.mse_before is None


def test_inputs_by_any_single_name_and_fixed_batch_chunks(digits, tmp_path):
    path = str(tmp_path / "eval.npz")
    np.savez(path, images=digits["x"][:40], labels=digits["y"][:40].astype(np.int32))
    result = evaluate(*_runners(digits["before"], digits["after"]), path, (DIGITS,), batch=8)
    assert result.samples == 40
    assert result.accuracy_before == pytest.approx(_accuracy(digits["w"], digits["x"][:40], digits["y"][:40]))
    with pytest.raises(InputError, match="fixed batch of 16"):
        evaluate(*_runners(digits["before"], digits["after"]), path, (DIGITS,), batch=16)


def _denoiser(weight: np.ndarray):
    """y = x - conv3x3(x): a residual-output denoiser."""
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["f"], pads=[1, 1, 1, 1]), helper.make_node("Sub", ["x", "f"], ["y"])]
    return model(nodes, [vinfo("x", ["N", 1, 8, 8])], [vinfo("y", ["N", 1, 8, 8])], inits)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_psnr_and_mse_on_a_residual_denoiser(tmp_path, scale):
    rng = np.random.default_rng(0)
    grid = np.arange(8) / 8
    phase = rng.random((32, 1, 1, 1)) * 2 * np.pi
    clean = scale * (0.5 + 0.4 * np.sin(phase + grid[:, None] + grid[None, :]))  # smooth: blurring keeps it
    noisy = (clean + 0.1 * scale * rng.standard_normal(clean.shape)).astype(np.float32)
    # x - (x - box_blur(x)) = blur: subtracting the high-pass part is the denoiser.
    box = np.full((1, 1, 3, 3), 1 / 9)
    identity = np.zeros((1, 1, 3, 3))
    identity[0, 0, 1, 1] = 1
    before = save(_denoiser(identity - box), tmp_path, "before.onnx")
    after = save(_denoiser(0.5 * (identity - box)), tmp_path, "after.onnx")
    path = str(tmp_path / "eval.npz")
    np.savez(path, x=noisy, targets=clean)
    result = evaluate(*_runners(before, after), path, (IMAGE,))
    assert result.kind is EvalKind.REGRESSION and result.peak == scale
    assert result.peak_rule == ("targets in [0, 1]" if scale == 1 else "targets in [0, 255]")
    for model_path, mse_got, psnr_got in ((before, result.mse_before, result.psnr_before),
                                          (after, result.mse_after, result.psnr_after)):
        out = BACKEND.run(model_path, {"x": noisy})["y"].astype(np.float64)
        mse = float(np.mean((out - clean) ** 2))
        assert mse_got == pytest.approx(mse, rel=1e-6)
        assert psnr_got == pytest.approx(10 * math.log10(scale ** 2 / mse), rel=1e-6)
    assert result.psnr_before != result.psnr_after
    assert result.change == pytest.approx(result.psnr_after - result.psnr_before)
    assert result.accuracy_before is None


def test_peak_rules():
    assert peak_of(np.array([0.0, 0.5, 1.0])) == (1.0, "targets in [0, 1]")
    assert peak_of(np.array([0.0, 200.0]))[0] == 255.0
    peak, rule = peak_of(np.array([-1.0, 3.0]))
    assert peak == 4.0 and "-1..3" in rule
    assert psnr(0.0, 1.0) == float("inf") and psnr(0.01, 1.0) == pytest.approx(20.0)


BAD = {
    "count": (dict(labels=np.zeros(5, np.int64)), "'labels' holds 5 sample"),
    "float": (dict(labels=np.full(10, 0.5)), "must hold integer classes, found float64"),
    "nan labels": (dict(labels=np.full(10, np.nan)), "must hold integer classes"),
    "range": (dict(labels=np.arange(10) + 1), "range 1..10, output 'logits' has 10 classes"),
    "negative": (dict(labels=np.arange(10) - 1), "range -1..8"),
    "shape": (dict(labels=np.zeros((10, 1), np.int64)), "shape \\(N,\\)"),
    "targets": (dict(targets=np.zeros((10, 3))), "'targets' have shape 10x3, output 'logits' has shape 10x10"),
    "nan targets": (dict(targets=np.full((10, 10), np.nan)), "'targets' contains NaN"),
    "neither": ({}, "holds neither of 'labels'"),
    "both": (dict(labels=np.zeros(10, np.int64), targets=np.zeros((10, 10))), "holds both"),
    "nan inputs": (dict(labels=np.zeros(10, np.int64), x=np.full((10, 64), np.nan, np.float32)), "NaN or Inf"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_one_line_input_errors(digits, tmp_path, case):
    arrays, message = BAD[case]
    path = str(tmp_path / "eval.npz")
    np.savez(path, **{"x": digits["x"][:10], **arrays})
    with pytest.raises(InputError, match=message) as err:
        evaluate(*_runners(digits["before"], digits["after"]), path, (DIGITS,))
    assert "\n" not in str(err.value) and str(err.value).startswith(path)


def test_labels_need_a_classifier_output(tmp_path):
    box = np.full((1, 1, 3, 3), 1 / 9)
    before = save(_denoiser(box), tmp_path, "d.onnx")
    path = str(tmp_path / "eval.npz")
    np.savez(path, x=np.zeros((4, 1, 8, 8), np.float32), labels=np.zeros(4, np.int64))
    with pytest.raises(InputError, match="need a classifier output \\(N, classes\\); output 'y' has shape 4x1x8x8"):
        evaluate(*_runners(before, before), path, (IMAGE,))
