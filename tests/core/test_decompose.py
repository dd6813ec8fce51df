"""Per-channel SVD: exact recomposition, energies, error bounds, BN folding, and the factors as real convs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sepconv_cli.core.decompose import (
    Factors,
    Spectrum,
    decompose,
    fold_batchnorm,
    random_factors,
    recompose,
    spectrum,
)
from sepconv_cli.core.records import ConvSpec
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
from sepconv_cli.errors import ShapeError


@st.composite
def kernels(draw):
    """(weight, groups, transposed) over 1-D/2-D/3-D kernels, groups and both conv kinds."""
    groups = draw(st.integers(1, 3))
    cin_g = draw(st.integers(1, 3))
    cout_g = draw(st.integers(1, 5))
    dims = draw(st.integers(1, 3))
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=dims, max_size=dims)))
    transposed = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    lead, second = (cin_g * groups, cout_g) if transposed else (cout_g * groups, cin_g)
    weight = np.random.default_rng(seed).normal(size=(lead, second, *kernel))
    return weight, groups, transposed


@settings(max_examples=60, deadline=None)
@given(kernels())
def test_full_rank_recompose_reproduces_kernel(case):
    weight, groups, transposed = case
    full = spectrum(weight, groups, transposed).max_rank
    factors = decompose(weight, groups, full, transposed)
    np.testing.assert_allclose(recompose(factors, groups, transposed), weight, rtol=0, atol=1e-12)
    assert spectrum(weight, groups, transposed).relative_error(full) == 0.0


@settings(max_examples=60, deadline=None)
@given(kernels(), st.integers(1, 15))
def test_error_and_energy_match_recomposition_at_every_rank(case, rank):
    weight, groups, transposed = case
    spec = spectrum(weight, groups, transposed)
    rank = min(rank, spec.max_rank)
    approx = recompose(decompose(weight, groups, rank, transposed), groups, transposed)
    measured = np.linalg.norm(weight - approx) / np.linalg.norm(weight)
    assert spec.relative_error(rank) == pytest.approx(measured, abs=1e-9)
    assert spec.energy(rank) == pytest.approx(1.0 - measured**2, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(kernels())
def test_energy_is_monotonic_and_ends_at_one(case):
    spec = spectrum(*case)
    energies = spec.energies()
    assert np.all(np.diff(energies) >= 0.0)
    assert energies[-1] == 1.0
    assert np.all(np.diff(spec.errors()) <= 0.0)
    assert spec.rank_for_energy(1.0) <= spec.max_rank


def test_spectrum_values_are_descending_per_channel():
    weight = np.random.default_rng(1).normal(size=(16, 4, 3, 3))
    values = spectrum(weight, 1).values
    assert values.shape == (4, 9)
    assert np.all(np.diff(values, axis=1) <= 0.0)


def test_exactly_separable_kernel_keeps_all_energy_at_rank_one():
    rng = np.random.default_rng(2)
    pointwise = rng.normal(size=(8, 5))  # P[o, i]
    depthwise = rng.normal(size=(5, 3, 3))  # D[i]
    weight = pointwise[:, :, None, None] * depthwise[None]
    spec = spectrum(weight, 1)
    assert spec.energy(1) == pytest.approx(1.0, abs=1e-12)
    assert spec.relative_error(1) == pytest.approx(0.0, abs=1e-6)
    assert spec.rank_for_energy(0.999999) == 1
    rebuilt = recompose(decompose(weight, 1, 1), 1)
    np.testing.assert_allclose(rebuilt, weight, atol=1e-12)


def test_literal_spectrum_numbers():
    # Column energies 3^2+4^2 = 25 and 1^2+0^2 = 1, total 26.
    spec = Spectrum(values=np.array([[3.0, 1.0], [4.0, 0.0]]))
    assert spec.energy(1) == pytest.approx(25 / 26)
    assert spec.energy(2) == 1.0
    assert spec.energy(5) == 1.0
    assert spec.relative_error(1) == pytest.approx((1 / 26) ** 0.5)
    assert spec.rank_for_energy(0.96) == 1
    assert spec.rank_for_energy(0.97) == 2
    assert spec.rank_for_error(0.2) == 1
    assert spec.rank_for_error(0.19) == 2
    assert spec.rank_for_error(0.0) == 2


def test_zero_kernel_keeps_full_energy_by_definition():
    spec = spectrum(np.zeros((4, 2, 3, 3)), 1)
    assert spec.energy(1) == 1.0
    assert spec.relative_error(1) == 0.0
    assert spec.rank_for_energy(0.9) == 1


def test_bad_arguments_are_refused():
    weight = np.ones((4, 2, 3, 3))
    with pytest.raises(ShapeError):
        spectrum(weight, 3)
    with pytest.raises(ShapeError):
        spectrum(np.ones((4, 2)), 1)
    with pytest.raises(ValueError):
        decompose(weight, 1, 5)  # min(Cout, K) = 4
    with pytest.raises(ValueError):
        decompose(weight, 1, 0)
    with pytest.raises(ValueError):
        spectrum(weight, 1).rank_for_energy(1.5)


def _separable_conv(x, factors: Factors, cin: int, groups: int, conv_kwargs: dict):
    depthwise = torch.from_numpy(factors.depthwise)
    pointwise = torch.from_numpy(factors.pointwise)
    dims = x.dim() - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    hidden = conv(x, depthwise, None, groups=cin, **conv_kwargs)
    return conv(hidden, pointwise, None, groups=groups)


def _separable_conv_transpose(x, factors: Factors, cin: int, groups: int, conv_kwargs: dict):
    hidden = F.conv_transpose2d(x, torch.from_numpy(factors.depthwise), None, groups=cin, **conv_kwargs)
    return F.conv2d(hidden, torch.from_numpy(factors.pointwise), None, groups=groups)


@pytest.mark.parametrize(
    "shape,groups,kwargs",
    [
        ((6, 4, 3), 2, {"stride": 2, "padding": 1}),
        ((8, 3, 3, 3), 1, {"padding": 2, "dilation": 2}),
        ((6, 2, 3, 3), 3, {"stride": 2}),
        ((4, 2, 2, 3, 3), 2, {"padding": 1}),
    ],
)
def test_factors_compute_the_same_conv(shape, groups, kwargs):
    rng = np.random.default_rng(3)
    weight = rng.normal(size=shape)
    cin = shape[1] * groups
    factors = decompose(weight, groups, min(shape[0] // groups, int(np.prod(shape[2:]))))
    x = torch.from_numpy(rng.normal(size=(2, cin) + (7,) * (len(shape) - 2)))
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(shape)]
    expected = conv(x, torch.from_numpy(weight), None, groups=groups, **kwargs)
    got = _separable_conv(x, factors, cin, groups, kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("groups", [1, 2])
def test_transposed_factors_compute_the_same_conv_transpose(groups):
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(4, 3, 3, 3))  # Cin=4, Cout/g=3
    kwargs = {"stride": 2, "padding": 1, "output_padding": 1}
    factors = decompose(weight, groups, 3, transposed=True)
    x = torch.from_numpy(rng.normal(size=(2, 4, 5, 5)))
    expected = F.conv_transpose2d(x, torch.from_numpy(weight), None, groups=groups, **kwargs)
    got = _separable_conv_transpose(x, factors, 4, groups, kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def _bn(rng, channels):
    return BatchNormParams(
        name="bn",
        gamma=rng.uniform(0.5, 2.0, channels),
        beta=rng.normal(size=channels),
        mean=rng.normal(size=channels),
        var=rng.uniform(0.1, 3.0, channels),
        eps=1e-3,
    )


def _apply_bn(y, bn: BatchNormParams):
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    return F.batch_norm(y, t(bn.mean), t(bn.var), t(bn.gamma), t(bn.beta), training=False, eps=bn.eps)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_fold_batchnorm_matches_conv_then_bn(with_bias, groups):
    rng = np.random.default_rng(5)
    weight = rng.normal(size=(6, 4 // groups, 3, 3)).astype(np.float32)
    bias = rng.normal(size=6).astype(np.float32) if with_bias else None
    bn = _bn(rng, 6)
    x = torch.from_numpy(rng.normal(size=(2, 4, 6, 6)))
    raw = F.conv2d(x, torch.from_numpy(weight.astype(np.float64)),
                   None if bias is None else torch.from_numpy(bias.astype(np.float64)), padding=1, groups=groups)
    folded_w, folded_b = fold_batchnorm(ConvWeights(weight, bias, bn), groups)
    assert folded_w.dtype == np.float64 and folded_b is not None
    got = F.conv2d(x, torch.from_numpy(folded_w), torch.from_numpy(folded_b), padding=1, groups=groups)
    torch.testing.assert_close(got, _apply_bn(raw, bn), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("groups", [1, 2])
def test_fold_batchnorm_transposed(groups):
    rng = np.random.default_rng(6)
    weight = rng.normal(size=(4, 3, 3, 3))  # Cin=4, Cout = 3*groups
    cout = 3 * groups
    bn = _bn(rng, cout)
    bias = rng.normal(size=cout)
    x = torch.from_numpy(rng.normal(size=(2, 4, 5, 5)))
    raw = F.conv_transpose2d(x, torch.from_numpy(weight), torch.from_numpy(bias), stride=2, groups=groups)
    folded_w, folded_b = fold_batchnorm(ConvWeights(weight, bias, bn), groups, transposed=True)
    got = F.conv_transpose2d(x, torch.from_numpy(folded_w), torch.from_numpy(folded_b), stride=2, groups=groups)
    torch.testing.assert_close(got, _apply_bn(raw, bn), rtol=1e-10, atol=1e-10)


def test_fold_batchnorm_without_bn_copies_as_float64():
    weight = np.ones((2, 1, 3, 3), dtype=np.float32)
    folded_w, folded_b = fold_batchnorm(ConvWeights(weight), 1)
    assert folded_w.dtype == np.float64 and folded_b is None
    folded_w[0] = 5.0
    assert weight[0, 0, 0, 0] == 1.0


def test_fold_batchnorm_refuses_channel_mismatch():
    rng = np.random.default_rng(7)
    with pytest.raises(ShapeError, match="BatchNorm 'bn'"):
        fold_batchnorm(ConvWeights(np.ones((4, 2, 3, 3)), None, _bn(rng, 5)), 1)


@pytest.mark.parametrize("transposed", [False, True])
def test_random_factors_have_decomposition_shapes_and_are_seeded(transposed):
    spec = ConvSpec(in_channels=4, out_channels=6, kernel=(3, 3), stride=(1, 1), dilation=(1, 1), groups=2,
                    transposed=transposed)
    shape = (4, 3, 3, 3) if transposed else (6, 2, 3, 3)
    reference = decompose(np.random.default_rng(8).normal(size=shape), 2, 2, transposed)
    first = random_factors(spec, 2, seed=0)
    assert first.depthwise.shape == reference.depthwise.shape
    assert first.pointwise.shape == reference.pointwise.shape
    assert np.array_equal(first.pointwise, random_factors(spec, 2, seed=0).pointwise)
    assert not np.array_equal(first.pointwise, random_factors(spec, 2, seed=1).pointwise)
    assert np.abs(first.depthwise).max() <= 1 / 3  # 1/sqrt(K), K = 9
    assert np.abs(first.pointwise).max() <= 1 / 2  # 1/sqrt(Cin/g * T) = 1/sqrt(4)
