"""Cost formulas: literal numbers from the seed tutorial and hand arithmetic, plus break-even properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepconv_cli.core import costs
from sepconv_cli.core.records import ConvSpec


def conv(cin, cout, k=3, groups=1, bias=False, dims=2, transposed=False) -> ConvSpec:
    return ConvSpec(in_channels=cin, out_channels=cout, kernel=(k,) * dims, stride=(1,) * dims,
                    dilation=(1,) * dims, groups=groups, has_bias=bias, transposed=transposed)


def test_seed_three_to_thirty_two_without_bias():
    spec = conv(3, 32)
    assert costs.conv_params(spec) == 864
    assert costs.separable_params(spec, 1) == 123  # 3*3*3 + 32*3


def test_seed_three_to_sixty_four_with_bias():
    spec = conv(3, 64, bias=True)
    assert costs.conv_params(spec) == 1_792
    assert costs.separable_params(spec, 1) == 283  # Keras SeparableConv2D: one bias, on the pointwise conv
    assert costs.separable_params(spec, 1, depthwise_bias=True) == 286


SEED_VGG = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]


def test_seed_vgg_layer_by_layer():
    regular = [costs.conv_params(conv(a, b, bias=True)) for a, b in SEED_VGG]
    separable = [costs.separable_params(conv(a, b, bias=True), 1) for a, b in SEED_VGG]
    dense = 4 * 4 * 256 * 10 + 10
    assert separable == [283, 4_736, 8_896, 17_664, 34_176, 68_096]
    assert dense == 40_970
    assert sum(regular) + dense == 1_186_378
    assert sum(separable) + dense == 174_821


def test_seed_vgg_first_conv_macs_at_32x32():
    spec = conv(3, 64, bias=True)
    assert costs.spec_macs(spec, 1, (32, 32), (32, 32)) == 64 * 1024 * 3 * 9  # 1,769,472
    # depthwise 3*1024*9 + pointwise 64*1024*3
    assert costs.separable_macs(spec, 1, 1, (32, 32), (32, 32)) == 27_648 + 196_608


def test_grouped_conv_by_hand():
    spec = conv(8, 12, groups=4)  # Cin/g = 2, Cout/g = 3
    assert costs.conv_params(spec) == 12 * 2 * 9 == 216
    assert costs.spec_macs(spec, 1, (10, 10), (10, 10)) == 12 * 100 * 2 * 9 == 21_600
    assert costs.separable_params(spec, 1) == 8 * 9 + 12 * 2 == 96
    assert costs.separable_macs(spec, 1, 1, (10, 10), (10, 10)) == 8 * 100 * 9 + 12 * 100 * 2 == 9_600
    assert costs.break_even_rank(spec) == pytest.approx(9 * 12 / (9 * 4 + 12))  # 2.25
    assert costs.max_rank(spec) == 3


def test_conv_transpose_by_hand():
    # ConvTranspose2d(8 -> 16, 3x3, stride 2, groups 2, bias) on 5x5 -> 11x11; weight (8, 8, 3, 3).
    spec = conv(8, 16, groups=2, bias=True, transposed=True)
    assert costs.conv_params(spec) == 8 * 8 * 9 + 16 == 592
    assert costs.spec_macs(spec, 1, (5, 5), (11, 11)) == 8 * 25 * 8 * 9 == 14_400
    # depthwise transposed: 8 channels x 2 kernels each over the 5x5 input; pointwise 16 x (8*2/2) on 11x11
    assert costs.separable_macs(spec, 2, 1, (5, 5), (11, 11)) == 8 * 25 * 2 * 9 + 16 * 121 * 8 == 19_088
    assert costs.separable_params(spec, 2) == 8 * 2 * 9 + 16 * 8 + 16 == 288
    assert costs.break_even_rank(spec) == pytest.approx(144 / 34)


def test_conv1d_and_conv3d_by_hand():
    spec1 = conv(4, 6, k=5, dims=1, bias=True)
    assert costs.conv_params(spec1) == 6 * 4 * 5 + 6 == 126
    assert costs.separable_params(spec1, 2) == 4 * 2 * 5 + 6 * 8 + 6 == 94
    spec3 = conv(2, 4, k=3, dims=3)
    assert costs.spec_macs(spec3, 2, (4, 4, 4), (2, 2, 2)) == 2 * 4 * 8 * 2 * 27 == 3_456
    assert costs.separable_macs(spec3, 1, 2, (4, 4, 4), (2, 2, 2)) == 2 * 2 * 8 * 27 + 2 * 4 * 8 * 2 == 992


def test_output_size_and_matmul():
    assert costs.conv_output_size(32, 3, 1, 1, 2) == 32
    assert costs.conv_output_size(224, 7, 2, 1, 6) == 112
    assert costs.conv_output_size(10, 3, 1, 2, 0) == 6
    assert costs.gemm_macs(2, 3, 4) == 24
    assert costs.matmul_macs((5, 2, 3), (3, 4)) == 5 * 2 * 3 * 4
    assert costs.matmul_macs((3,), (3,)) == 3
    with pytest.raises(ValueError):
        costs.matmul_macs((2, 3), (4, 5))
    with pytest.raises(ValueError):
        costs.matmul_macs((2, 2, 3), (3, 3, 4))


@st.composite
def specs(draw):
    groups = draw(st.integers(1, 4))
    spec = ConvSpec(
        in_channels=groups * draw(st.integers(1, 16)),
        out_channels=groups * draw(st.integers(1, 64)),
        kernel=tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=3))),
        stride=(1,), dilation=(1,), groups=groups,
        has_bias=draw(st.booleans()), transposed=draw(st.booleans()),
    )
    return spec, draw(st.integers(1, 80))


@settings(max_examples=300, deadline=None)
@given(specs())
def test_separable_params_below_regular_exactly_when_rank_below_break_even(case):
    spec, rank = case
    cheaper = costs.separable_params(spec, rank) < costs.conv_params(spec)
    assert cheaper == (rank < costs.break_even_rank(spec))


@settings(max_examples=300, deadline=None)
@given(specs(), st.integers(1, 3), st.integers(1, 9))
def test_separable_macs_below_regular_exactly_when_rank_below_break_even(case, batch, size):
    spec, rank = case
    if spec.transposed:
        spec = ConvSpec(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.dilation, spec.groups)
    grid = (size,) * len(spec.kernel)
    cheaper = costs.separable_macs(spec, rank, batch, grid, grid) < costs.spec_macs(spec, batch, grid, grid)
    assert cheaper == (rank < costs.break_even_rank(spec))


@settings(max_examples=200, deadline=None)
@given(specs())
def test_break_even_is_below_full_rank(case):
    spec, _ = case
    assert costs.break_even_rank(spec) < costs.max_rank(spec)
