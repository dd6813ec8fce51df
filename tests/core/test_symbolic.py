"""Exact polynomial fits in symbolic dims (core/symbolic.py): interpolation, lattices, verification."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from sepconv_cli.core.symbolic import Lattice, fit, matches


def _values(lattice: Lattice, degree: int, count) -> dict:
    return {p: count(**lattice.sizes(p)) for p in lattice.grid(degree)}


def _two_strided_convs(H: int, W: int) -> int:
    """A 3x3 stride-2 conv 3->16 (pad 1), then a 3x3 stride-2 conv 16->32: sizes floor-divide."""
    h1, w1 = (H - 1) // 2 + 1, (W - 1) // 2 + 1
    h2, w2 = (h1 - 1) // 2 + 1, (w1 - 1) // 2 + 1
    return 16 * h1 * w1 * 27 + 32 * h2 * w2 * 16 * 9


def test_conv_stack_on_its_stride_lattice_is_exact():
    lattice = Lattice(("H", "W"), 4)
    poly = fit(lattice, 1, _values(lattice, 1, _two_strided_convs))
    assert poly.expression() == "396·H·W"  # 16*27/4 + 32*144/16
    for h, w in [(4, 4), (20, 8), (224, 224), (96, 128)]:
        assert matches(poly, {"H": h, "W": w}, _two_strided_convs(h, w))


def test_a_lattice_too_fine_fails_its_check_point():
    lattice = Lattice(("H", "W"), 2)
    poly = fit(lattice, 1, _values(lattice, 1, _two_strided_convs))
    check = lattice.sizes(lattice.check_point(1))
    assert check == {"H": 6, "W": 8}
    assert not matches(poly, check, _two_strided_convs(**check))


def test_quadratic_sequence_length_and_constant_terms():
    def attention(T):  # QK^T and AV (heads*T*T*dh twice) plus projections (4*T*d*d) plus a 10-class head
        return 2 * 4 * T * T * 8 + 4 * T * 32 * 32 + 320

    lattice = Lattice(("T",), 1)
    poly = fit(lattice, 2, _values(lattice, 2, attention))
    assert poly.expression() == "64·T^2 + 4,096·T + 320"
    assert matches(poly, {"T": 1000}, attention(1000))
    record = poly.record(lattice, {"T": 4})
    assert [(t.coefficient, t.powers, t.denominator) for t in record.terms] == [
        (64, (("T", 2),), 1), (4096, (("T", 1),), 1), (320, (), 1)]
    assert record.valid_when == "T is any size" and record.checked_at == (("T", 4),)


def test_fractional_coefficients_keep_their_denominator():
    lattice = Lattice(("H", "W"), 32)
    poly = fit(lattice, 1, _values(lattice, 1, lambda H, W: (H // 32) * (W // 32) * 5 + 7 * H))
    assert poly.expression() == "5·H·W/1,024 + 7·H"
    terms = poly.record(lattice, {}).terms
    assert (terms[0].coefficient, terms[0].denominator) == (5, 1024)


def test_lattice_descriptions():
    assert Lattice(("H", "W"), 32).describe() == "H and W multiples of 32, at least 32"
    assert Lattice(("D", "H", "W"), 4, 2).describe() == "D, H and W multiples of 4, at least 8"
    assert Lattice(("T",), 320).describe() == "T a multiple of 320, at least 320"
    assert Lattice(("T",), 1, 3).describe() == "T is any size, at least 3"


def test_a_constant_needs_no_interpolation():
    lattice = Lattice(("H", "W"), 8)
    poly = fit(lattice, 2, {p: 12 for p in lattice.grid(2)})
    assert poly.expression() == "12" and poly.terms == (((0, 0), Fraction(12)),)
    assert fit(lattice, 1, {p: 0 for p in lattice.grid(1)}).is_zero


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=9, max_size=9), st.sampled_from([1, 2, 16, 32]),
       st.integers(1, 3))
def test_any_biquadratic_polynomial_is_recovered_exactly(coefficients, step, start):
    powers = [(i, j) for i in range(3) for j in range(3)]

    def count(H, W):
        return sum(c * H ** i * W ** j for c, (i, j) in zip(coefficients, powers))

    lattice = Lattice(("H", "W"), step, start)
    poly = fit(lattice, 2, _values(lattice, 2, count))
    assert dict(poly.terms) == {p: Fraction(c) for p, c in zip(powers, coefficients) if c}
    check = lattice.sizes(lattice.check_point(2))
    assert matches(poly, check, count(**check))
