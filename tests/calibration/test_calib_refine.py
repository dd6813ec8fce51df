"""Depthwise refit by alternating least squares and the post-ReLU fit, checked against direct numpy."""

from __future__ import annotations

import numpy as np
import pytest

from sepconv_cli.calibration.als import (
    alternate,
    fits_in_memory,
    identity_kernel,
    pointwise_equations,
    solve_depthwise,
)
from sepconv_cli.calibration.relu import ReluPass
from sepconv_cli.calibration.solve import NormalEquations, pack


def _depthwise(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3, pad 1 depthwise conv with multiplier ``kernel.shape[0] // channels``, float64, by loops."""
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


def _pointwise(z: np.ndarray, weight: np.ndarray, bias: np.ndarray, groups: int) -> np.ndarray:
    n, d, h, w = z.shape
    cout = weight.shape[0]
    out = np.einsum("ngdhw,gcd->ngchw", z.reshape(n, groups, d // groups, h, w),
                    weight[:, :, 0, 0].reshape(groups, cout // groups, -1))
    return out.reshape(n, cout, h, w) + bias[None, :, None, None]


def _layer(seed=0, groups=2, cin=4, cout=6, rank=2):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal((12, cin, 6, 6)), axis=3)
    v = rng.standard_normal((cin * rank, 1, 3, 3))
    w = rng.standard_normal((cout, cin * rank // groups, 1, 1))
    b = rng.standard_normal(cout)
    return x, v, w, b


def test_identity_kernel_gives_the_im2col_patches():
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    patches = _depthwise(x, identity_kernel(3, (3, 3)))
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i, k in ((0, 0), (1, 4), (2, 8)):
        dy, dx = divmod(k, 3)
        np.testing.assert_allclose(patches[:, i * 9 + k], pad[:, i, dy:dy + 5, dx:dx + 5])


def test_pointwise_equations_from_patches_equal_those_of_the_depthwise_outputs():
    groups, rank = 2, 2
    x, v, w, b = _layer(groups=groups, rank=rank)
    y = _pointwise(_depthwise(x, v), w, b, groups)
    patches = NormalEquations(groups, 2 * 9, 3)
    patches.add(_depthwise(x, identity_kernel(4, (3, 3))), y)
    direct = NormalEquations(groups, 2 * rank, 3)
    direct.add(_depthwise(x, v), y)
    derived = pointwise_equations(patches, v, rank)
    np.testing.assert_allclose(derived.zz, direct.zz, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(derived.zy, direct.zy, rtol=1e-10, atol=1e-8)
    assert derived.relative_error(pack(w, b, groups)) < 1e-6


def test_depthwise_solve_recovers_the_kernel_and_alternation_reaches_an_exact_layer():
    groups, rank = 2, 2
    x, v, w, b = _layer(seed=2, groups=groups, rank=rank)
    y = _pointwise(_depthwise(x, v), w, b, groups)
    patches = NormalEquations(groups, 2 * 9, 3)
    patches.add(_depthwise(x, identity_kernel(4, (3, 3))), y)
    np.testing.assert_allclose(solve_depthwise(patches, pack(w, b, groups), rank, (3, 3), 0.0), v, atol=1e-8)
    start = np.random.default_rng(3).standard_normal(v.shape)
    p0 = pointwise_equations(patches, start, rank).solve(1e-12)
    before = pointwise_equations(patches, start, rank).relative_error(p0)
    new_v, new_p = alternate(patches, start, p0, rank, 1e-12, steps=20)
    after = pointwise_equations(patches, new_v, rank).relative_error(new_p)
    assert before > 0.1 and after < 1e-4
    assert fits_in_memory(1, 64, 4, 9) and not fits_in_memory(1, 512, 4, 9)


def test_relu_pass_measures_post_relu_error_and_solves_the_clipped_targets():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 6, 4, 4)).astype(np.float32)
    y = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    fit = NormalEquations(1, 6, 3)
    fit.add(z[:4], y[:4])
    p = fit.solve(0.0)
    step = ReluPass(p)
    step.add(z[:4], y[:4], False)
    step.add(z[4:], y[4:], True)
    rows = np.concatenate([np.moveaxis(z, 1, -1).reshape(5, 16, 6), np.ones((5, 16, 1))], axis=2).astype(np.float64)
    targets = np.moveaxis(y, 1, -1).reshape(5, 16, 3).astype(np.float64)
    pred = rows @ p[0]
    for held, idx in ((False, slice(0, 4)), (True, slice(4, 5))):
        want = np.linalg.norm(np.maximum(targets[idx], 0) - np.maximum(pred[idx], 0)) / \
            np.linalg.norm(np.maximum(targets[idx], 0))
        assert step.error(held) == pytest.approx(want, rel=1e-9)
    clipped = np.where(targets[:4] > 0, targets[:4], np.minimum(pred[:4], 0))
    expected = np.linalg.lstsq(rows[:4].reshape(-1, 7), clipped.reshape(-1, 3), rcond=None)[0]
    np.testing.assert_allclose(step.next_coefficients(fit, 0.0)[0], expected, rtol=1e-7, atol=1e-9)
