"""Least-squares refit of pointwise factors: exact recovery, never-worse guarantee, rank choice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepconv_cli.calibration.loop import nested_depthwise, search_ranks
from sepconv_cli.calibration.solve import (
    TOO_FEW_ROWS,
    NormalEquations,
    batches,
    choose_rank,
    pack,
    rank_columns,
    refit,
    split_samples,
    to_rows,
    unpack,
)
from sepconv_cli.core.decompose import decompose


def _pointwise_apply(z: np.ndarray, weight: np.ndarray, bias: np.ndarray, groups: int) -> np.ndarray:
    """Independent grouped 1x1 conv on (N, D*g, H, W) activations, written with einsum."""
    n, cin, h, w = z.shape
    cout, d = weight.shape[:2]
    zg = z.reshape(n, groups, d, h, w)
    wg = weight.reshape(groups, cout // groups, d)
    out = np.einsum("ngdhw,gcd->ngchw", zg, wg).reshape(n, cout, h, w)
    return out + bias.reshape(1, cout, 1, 1)


def _stats(z, y, groups, batch=3):
    stats = NormalEquations(groups, z.shape[1] // groups, y.shape[1] // groups)
    for i in range(0, len(z), batch):
        stats.add(z[i:i + batch], y[i:i + batch])
    return stats


@pytest.mark.parametrize("groups", [1, 2])
def test_exactly_separable_layer_plus_noise_recovers_true_pointwise(groups):
    rng = np.random.default_rng(0)
    d, cout = 6, 8
    z = rng.normal(size=(40, d * groups, 5, 5))
    true_w = rng.normal(size=(cout, d, 1, 1))
    true_b = rng.normal(size=cout)
    y = _pointwise_apply(z, true_w, true_b, groups) + 1e-3 * rng.normal(size=(40, cout, 5, 5))
    init = pack(true_w + 0.5 * rng.normal(size=true_w.shape), None, groups)  # a poor "SVD" start
    result = refit("conv", 1, (_stats(z, y, groups), None), init, ridge=1e-9)
    weight, bias = unpack(result.coefficients, 2)
    assert result.record.fell_back == ""
    np.testing.assert_allclose(weight, true_w, atol=2e-3)
    np.testing.assert_allclose(bias, true_b, atol=2e-3)
    assert result.record.fit_error_after < 1e-3 < result.record.fit_error_before


def test_accumulated_statistics_match_direct_least_squares_and_error():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(10, 4, 3, 3)), rng.normal(size=(10, 5, 3, 3))
    stats = _stats(z, y, 1, batch=4)
    z1 = np.concatenate([to_rows(z), np.ones((90, 1))], axis=1)
    direct = np.linalg.lstsq(z1, to_rows(y), rcond=None)[0]
    np.testing.assert_allclose(stats.solve(ridge=0.0)[0], direct, atol=1e-9)
    p = rng.normal(size=(1, 5, 5))
    resid = to_rows(y) - z1 @ p[0]
    expected = np.linalg.norm(resid) / np.linalg.norm(to_rows(y))
    assert stats.relative_error(p) == pytest.approx(expected, rel=1e-9)
    assert stats.rows == 90


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), groups=st.sampled_from([1, 2]), ridge=st.sampled_from([0.0, 1e-3, 10.0]),
       samples=st.integers(1, 6))
def test_refit_never_worse_than_svd_init_on_calibration_data(seed, groups, ridge, samples):
    rng = np.random.default_rng(seed)
    d, cout = 3, 4
    z = rng.normal(size=(samples, d * groups, 2, 2)) * rng.uniform(0.01, 100)
    y = rng.normal(size=(samples, cout, 2, 2))
    init = pack(rng.normal(size=(cout, d, 1, 1)), rng.normal(size=cout), groups)
    hold = _stats(rng.normal(size=(2, d * groups, 2, 2)), rng.normal(size=(2, cout, 2, 2)), groups)
    fit = _stats(z, y, groups)
    result = refit("conv", 1, (fit, hold), init, ridge)
    rec = result.record
    assert rec.fit_error_after <= rec.fit_error_before + 1e-12
    assert rec.holdout_error_after <= rec.holdout_error_before + 1e-12
    assert fit.relative_error(result.coefficients) == pytest.approx(rec.fit_error_after)
    if rec.fell_back:
        np.testing.assert_array_equal(result.coefficients, init)


def test_too_few_rows_falls_back_to_svd_weights_and_says_so():
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(1, 16, 1, 2)), rng.normal(size=(1, 3, 1, 2))
    init = pack(rng.normal(size=(3, 16, 1, 1)), None, 1)
    result = refit("block.conv", 1, (_stats(z, y, 1), None), init, ridge=1e-5)
    assert result.record.fell_back == TOO_FEW_ROWS.format(rows=2, unknowns=17)
    assert "too few calibration samples" in result.record.fell_back
    np.testing.assert_array_equal(result.coefficients, init)


def test_refit_that_overfits_holdout_is_refused():
    rng = np.random.default_rng(3)
    d, cout = 10, 2
    true_w = rng.normal(size=(cout, d, 1, 1))
    z_fit = rng.normal(size=(12, d, 1, 1))
    y_fit = rng.normal(size=(12, cout, 1, 1))  # pure noise: the fit learns nothing that generalises
    z_hold = rng.normal(size=(50, d, 1, 1))
    y_hold = _pointwise_apply(z_hold, true_w, np.zeros(cout), 1)
    init = pack(true_w, None, 1)
    result = refit("c", 1, (_stats(z_fit, y_fit, 1), _stats(z_hold, y_hold, 1)), init, ridge=0.0)
    assert result.record.fell_back.startswith("the refit raised the output error on held-back samples")
    assert result.record.holdout_error_after == pytest.approx(0.0, abs=1e-6)


def test_pack_unpack_round_trip_grouped():
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(6, 4, 1, 1)), rng.normal(size=6)
    p = pack(w, b, 3)
    assert p.shape == (3, 5, 2)
    w2, b2 = unpack(p, 2)
    np.testing.assert_array_equal(w2, w)
    np.testing.assert_array_equal(b2, b)


@pytest.mark.parametrize("groups,transposed", [(1, False), (2, False), (1, True)])
def test_lower_rank_factors_are_nested_column_subsets(groups, transposed):
    rng = np.random.default_rng(5)
    shape = (4, 6 // groups, 3, 3) if transposed else (6, 4 // groups, 3, 3)
    weight = rng.normal(size=shape)
    full, low = decompose(weight, groups, 3, transposed), decompose(weight, groups, 2, transposed)
    cin_g = 4 // groups
    np.testing.assert_allclose(full.pointwise[:, rank_columns(cin_g, 3, 2)], low.pointwise, atol=1e-12)
    np.testing.assert_allclose(nested_depthwise(full.depthwise, 3, 2, transposed), low.depthwise, atol=1e-12)


def test_choose_rank_takes_smallest_rank_meeting_the_target():
    rng = np.random.default_rng(6)
    cin, full, cout = 3, 3, 4
    z = rng.normal(size=(30, cin * full, 2, 2))
    true_w = np.zeros((cout, cin * full, 1, 1))
    true_w[:, rank_columns(cin, full, 2)] = rng.normal(size=(cout, cin * 2, 1, 1))
    y = _pointwise_apply(z, true_w, np.zeros(cout), 1)
    init = pack(np.zeros_like(true_w), None, 1)
    stats = (_stats(z[:20], y[:20], 1), _stats(z[20:], y[20:], 1))
    chosen = choose_rank("c", stats, init, [1, 2, 3], target=1e-4, ridge=1e-10)
    assert chosen.record.rank == 2 and chosen.coefficients.shape == (1, cin * 2 + 1, cout)
    assert "smallest rank" in chosen.record.note
    noisy = y + 0.1 * rng.normal(size=y.shape)
    stats = (_stats(z[:20], noisy[:20], 1), _stats(z[20:], noisy[20:], 1))
    impossible = choose_rank("c", stats, init, [1, 2, 3], target=1e-4, ridge=1e-10)
    assert impossible.record.rank == 3 and "no rank below break-even" in impossible.record.note


def test_search_ranks_stop_below_break_even():
    # 3x3, 8 -> 8: T* = 9*8/(9+8) = 4.24 -> T in 1..4; 3x3 64 -> 64: T* = 9*64/(9+64) = 7.89 -> 1..7.
    assert search_ranks(np.zeros((8, 8, 3, 3)), 1, False) == [1, 2, 3, 4]
    assert search_ranks(np.zeros((64, 64, 3, 3)), 1, False) == list(range(1, 8))
    assert search_ranks(np.zeros((2, 8, 3, 3)), 1, False) == [1]  # Cout/g = 2 caps T at 2; T* = 1.64


def test_split_is_seeded_disjoint_and_keeps_a_fit_sample():
    fit, hold = split_samples(10, 0.25, seed=0)
    assert len(hold) == 2 and len(fit) == 8 and not set(fit) & set(hold)
    assert np.array_equal(split_samples(10, 0.25, 0)[1], hold)
    assert len(split_samples(1, 0.5, 0)[0]) == 1
    assert len(split_samples(5, 0.0, 0)[1]) == 0
    assert [len(b) for b in batches(np.arange(7), 3)] == [3, 3, 1]
