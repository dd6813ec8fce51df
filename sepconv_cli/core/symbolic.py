"""Exact polynomials in a model's symbolic dims (H, W, T...), fitted from counts at pinned sizes.

A conv's output size floor-divides its input size, so a count such as MACs is a polynomial in the input
dims only on a *lattice*: sizes that are multiples of the model's total stride (``H = 32·a`` for a
ResNet), from some smallest multiple on. There every intermediate size is affine in ``a`` and the count
is a polynomial of small degree in each dim. ``fit`` interpolates that polynomial exactly (rational
arithmetic, tensor-product Vandermonde) from counts on a grid of lattice points; ``matches`` checks it
against a count at an extra point off the grid, which is how the backend knows the lattice was right.

Pure: ints and ``Fraction`` in, records out. Units are the caller's (MACs in multiply-accumulates).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import product
from math import prod

from sepconv_cli.core.records import SymbolicMacs, SymbolicTerm

MAX_DEGREE = 2
"""Highest power of one dim a fit tries (attention over a sequence is quadratic in its length)."""


@dataclass(frozen=True)
class Lattice:
    """Sizes ``step·a`` for each symbol (its own step, or ``step`` for all), ``a >= start``: where a fitted
    polynomial is exact."""

    symbols: tuple[str, ...]
    step: int = 1
    start: int = 1
    steps: tuple[int, ...] = ()

    def step_of(self, index: int) -> int:
        """The step of symbol ``index``."""
        return self.steps[index] if self.steps else self.step

    def sizes(self, multiples: tuple[int, ...]) -> dict[str, int]:
        """``{symbol: step·a}`` for lattice coordinates ``multiples``."""
        return {s: self.step_of(i) * a for i, (s, a) in enumerate(zip(self.symbols, multiples))}

    def grid(self, degree: int) -> list[tuple[int, ...]]:
        """Lattice coordinates of the ``(degree+1)^k`` fitting points, ``start..start+degree`` per symbol."""
        axis = range(self.start, self.start + degree + 1)
        return list(product(axis, repeat=len(self.symbols)))

    def check_point(self, degree: int, which: int = 0) -> tuple[int, ...]:
        """Coordinates off the grid (a different multiple per symbol), where a fit is verified; ``which``
        picks a further one (a floor that is affine on a few multiples rarely stays so on the next ones)."""
        return tuple(self.start + degree + 1 + 2 * which + i for i in range(len(self.symbols)))

    def describe(self) -> str:
        """``"H and W multiples of 32, at least 32"``; ``"N is any size; T a multiple of 320, at least 320"``."""
        groups: dict[int, list[str]] = {}
        for index, symbol in enumerate(self.symbols):
            groups.setdefault(self.step_of(index), []).append(symbol)
        return "; ".join(self._group(tuple(names), step) for step, names in sorted(groups.items()))

    def _group(self, names: tuple[str, ...], step: int) -> str:
        many = len(names) > 1
        if step == 1:
            where = f"{_and(names)} {'are' if many else 'is'} any size"
        else:
            where = f"{_and(names)} {'multiples' if many else 'a multiple'} of {step}"
        low = step * self.start
        return where + (f", at least {low}" if low > 1 else "")


def _and(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Polynomial:
    """``sum(coefficient · prod(symbol^power))`` with exact rational coefficients; ``terms`` maps a
    powers tuple (one exponent per symbol, in ``symbols`` order) to its non-zero coefficient."""

    symbols: tuple[str, ...]
    terms: tuple[tuple[tuple[int, ...], Fraction], ...]

    def __call__(self, sizes: dict[str, int]) -> Fraction:
        """The value at ``sizes`` (``{symbol: int}``)."""
        return sum((c * prod(sizes[s] ** e for s, e in zip(self.symbols, powers)) for powers, c in self.terms),
                   Fraction(0))

    def __add__(self, other: Polynomial) -> Polynomial:
        merged: dict[tuple[int, ...], Fraction] = dict(self.terms)
        for powers, c in other.terms:
            merged[powers] = merged.get(powers, Fraction(0)) + c
        return _polynomial(self.symbols, merged)

    @property
    def is_zero(self) -> bool:
        """True when every coefficient is 0."""
        return not self.terms

    def expression(self) -> str:
        """``"81,453·H·W + 12·H - 3"``: highest total degree first, ``·`` between factors, ``/d`` for fractions."""
        if not self.terms:
            return "0"
        text = ""
        for index, (powers, c) in enumerate(self.terms):
            body = _term_text(self.symbols, powers, abs(c))
            sign = ("-" if c < 0 else "") if index == 0 else (" - " if c < 0 else " + ")
            text += sign + body
        return text

    def record(self, lattice: Lattice, checked: dict[str, int]) -> SymbolicMacs:
        """The polynomial as a report record: expression, where it holds, terms with integer numerators."""
        terms = tuple(SymbolicTerm(coefficient=c.numerator, denominator=c.denominator,
                                   powers=tuple((s, e) for s, e in zip(self.symbols, powers) if e))
                      for powers, c in self.terms)
        return SymbolicMacs(expression=self.expression(), valid_when=lattice.describe(), terms=terms,
                            symbols=self.symbols, checked_at=tuple(checked.items()))


def _term_text(symbols: tuple[str, ...], powers: tuple[int, ...], c: Fraction) -> str:
    factors = [s if e == 1 else f"{s}^{e}" for s, e in zip(symbols, powers) if e]
    number = f"{c.numerator:,}"
    if not factors:
        return number + (f"/{c.denominator:,}" if c.denominator != 1 else "")
    head = "" if c.numerator == 1 else number + "·"
    return head + "·".join(factors) + (f"/{c.denominator:,}" if c.denominator != 1 else "")


def _polynomial(symbols: tuple[str, ...], coefficients: dict[tuple[int, ...], Fraction]) -> Polynomial:
    kept = [(p, c) for p, c in coefficients.items() if c != 0]
    kept.sort(key=lambda item: (-sum(item[0]), tuple(-e for e in item[0])))
    return Polynomial(symbols, tuple(kept))


@lru_cache(maxsize=64)
def _inverse(nodes: tuple[int, ...]) -> tuple[tuple[Fraction, ...], ...]:
    """Inverse of the Vandermonde matrix ``[x^j]`` at ``nodes`` (exact Gauss-Jordan), cached."""
    size = len(nodes)
    rows = [[Fraction(x) ** j for j in range(size)] + [Fraction(int(i == r)) for i in range(size)]
            for r, x in enumerate(nodes)]
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(size):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    return tuple(tuple(row[size:]) for row in rows)


def _solve_axis(nodes: tuple[int, ...], values: list[Fraction]) -> list[Fraction]:
    """Monomial coefficients ``c_0..c_d`` with ``sum(c_j · x^j) = value`` at each node."""
    if all(v == values[0] for v in values):
        return [values[0]] + [Fraction(0)] * (len(values) - 1)
    return [sum((c * v for c, v in zip(row, values)), Fraction(0)) for row in _inverse(nodes)]


def fit(lattice: Lattice, degree: int, values: dict[tuple[int, ...], int]) -> Polynomial:
    """The polynomial of degree <= ``degree`` in each symbol taking ``values`` (lattice coordinates ->
    count) on ``lattice.grid(degree)``; its coefficients are in the symbols themselves (``H = step·a``)."""
    k = len(lattice.symbols)
    axis = list(range(lattice.start, lattice.start + degree + 1))
    values_seen = set(values.values())
    if len(values_seen) == 1:  # the common case (0 MACs, a fixed size): a constant
        return _polynomial(lattice.symbols, {(0,) * k: Fraction(values_seen.pop())})
    table: dict[tuple[int, ...], Fraction] = {p: Fraction(values[p]) for p in lattice.grid(degree)}
    for dim in range(k):  # interpolate one axis at a time: values -> coefficients along that axis
        out: dict[tuple[int, ...], Fraction] = {}
        others = {key[:dim] + key[dim + 1:] for key in table}
        for rest in others:
            line = [table[rest[:dim] + (a,) + rest[dim:]] for a in axis]
            nodes = tuple(lattice.step_of(dim) * a for a in axis)
            for power, c in enumerate(_solve_axis(nodes, line)):
                out[rest[:dim] + (power,) + rest[dim:]] = c
        table = out  # axes after ``dim`` still hold lattice coordinates, axes up to it hold powers
    return _polynomial(lattice.symbols, table)


def matches(poly: Polynomial, sizes: dict[str, int], count: int) -> bool:
    """True when ``poly`` gives exactly ``count`` at ``sizes``."""
    return poly(sizes) == count


__all__ = ["MAX_DEGREE", "Lattice", "Polynomial", "fit", "matches"]
