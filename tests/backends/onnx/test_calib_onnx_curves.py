"""Rank curves of an ONNX model from one pass, checked against an independent numpy recomputation."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from calib_builders import dncnn, smooth_images
from onnx import TensorProto, helper

from sepconv_cli.backends.onnx.curves import layer_curves_onnx
from sepconv_cli.backends.registry import load
from sepconv_cli.calibration.curves import CurveCandidate
from sepconv_cli.calibration.solve import CalibOptions, split_samples
from sepconv_cli.core.decompose import decompose
from sepconv_cli.pipeline.calibrate import CURVES, DRIVERS, curve_candidates, curves_for, layer_curves


def _tensors(model: onnx.ModelProto, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, {"x": x})


def _depthwise_numpy(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3, pad 1, stride 1 depthwise conv with multiplier T = kernel.shape[0] // channels (float64)."""
    n, cin, h, w = x.shape
    t = kernel.shape[0] // cin
    pad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, cin * t, h, w))
    for i in range(cin):
        for j in range(t):
            for dy in range(3):
                for dx in range(3):
                    out[:, i * t + j] += kernel[i * t + j, 0, dy, dx] * pad[:, i, dy:dy + h, dx:dx + w]
    return out


def _rows(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1]).astype(np.float64)


def test_curves_equal_an_independent_least_squares_recomputation(tmp_path):
    path = str(tmp_path / "dncnn.onnx")
    onnx.save(dncnn(depth=4, channels=8), path)
    loaded = load(path)
    x = smooth_images(40)
    (cand,) = curve_candidates(loaded.report, loaded.handle, {"conv1": (1, 2, 3, 8)})
    assert cand.bn_folded == "conv1.bn"
    curve = layer_curves_onnx(loaded.native, [cand], {"x": x}, CalibOptions(ridge=0.0))["conv1"]
    relu0, target = _tensors(loaded.native, ["conv0.relu", "conv1.bn"], x)
    fit, held = split_samples(40, 0.25, 0)
    assert curve.samples_fit == len(fit) and curve.samples_holdout == len(held) and curve.on == "holdout"
    for i, rank in enumerate(curve.ranks):
        factors = decompose(cand.weight, 1, rank)
        z1 = np.concatenate([_rows(_depthwise_numpy(relu0, factors.depthwise)), np.ones((40 * 144, 1))], axis=1)
        z1 = z1.reshape(40, 144, -1)
        y = _rows(target).reshape(40, 144, -1)
        svd = np.concatenate([factors.pointwise[:, :, 0, 0].T, cand.bias[None]], axis=0)
        p = np.linalg.lstsq(z1[fit].reshape(-1, z1.shape[2]), y[fit].reshape(-1, 8), rcond=None)[0]

        def err(coef, idx, y=y, z1=z1):
            return np.linalg.norm(y[idx] - z1[idx] @ coef) / np.linalg.norm(y[idx])

        assert curve.error_svd[i] == pytest.approx(err(svd, held), rel=1e-4, abs=1e-6)
        best = p if curve.refit_kept[i] else svd
        assert curve.error_refit[i] == pytest.approx(err(best, held), rel=1e-3, abs=1e-6)
        assert curve.error_refit_fit[i] == pytest.approx(err(best, fit), rel=1e-3, abs=1e-6)
    assert curve.refit_kept[0] and curve.error_refit[0] < curve.error_svd[0]  # the lstsq branch is exercised
    assert curve.ranks[-1] == 8 and curve.error_svd[-1] < 1e-5 and curve.error_refit[-1] < 1e-5  # full rank: exact
    assert curve.energy[-1] == pytest.approx(1.0) and curve.weight_error[-1] == pytest.approx(0.0, abs=1e-7)


def test_curves_fall_with_rank_for_every_candidate_from_one_pass(tmp_path):
    path = str(tmp_path / "dncnn.onnx")
    onnx.save(dncnn(depth=5, channels=8, seed=3), path)
    loaded = load(path)
    names = [p.name for p in loaded.report.layers if p.conv is not None and p.conv.out_channels == 8]
    candidates = curve_candidates(loaded.report, loaded.handle, {n: () for n in names})
    seen = []
    options = CalibOptions(batch_size=6, progress=lambda n, d, t: seen.append(n))
    curves = layer_curves_onnx(path, candidates, {"x": smooth_images(30)}, options)
    assert sorted(curves) == sorted(names) == sorted(seen) and len(names) == 4
    for curve in curves.values():
        assert curve.ranks == (1, 2, 3, 4)  # below break-even T* = 72/17 for 8 -> 8 channels, 3x3
        for series in (curve.error_svd, curve.error_refit, curve.error_refit_fit):
            assert all(b <= a * 1.02 + 1e-9 for a, b in zip(series, series[1:])), series
        assert all(r <= s + 1e-9 for r, s in zip(curve.error_refit, curve.error_svd))
        assert curve.squared() == {r: e * e for r, e in zip(curve.ranks, curve.error_refit)}


def test_every_calibratable_format_has_a_curve_route(tmp_path):
    assert set(CURVES) == set(DRIVERS)
    path = str(tmp_path / "dncnn.onnx")
    onnx.save(dncnn(depth=4, channels=8), path)
    loaded = load(path)
    np.savez(tmp_path / "calib.npz", x=smooth_images(12))
    candidates = curve_candidates(loaded.report, loaded.handle, {"conv2": (1, 2)})
    curves = layer_curves(loaded, candidates, str(tmp_path / "calib.npz"), CalibOptions(samples=12))
    assert curves["conv2"].ranks == (1, 2) and curves_for("onnx") is layer_curves_onnx
    assert isinstance(candidates[0], CurveCandidate)
