"""Quantities with suffixes: parsing (counts, bytes, fractions), refusals, and display."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sepconv_cli.core import units
from sepconv_cli.core.units import Kind, UnitError


@pytest.mark.parametrize("text, expected", [
    ("5M", 5_000_000), ("1.2G", 1_200_000_000), ("300k", 300_000), ("300K", 300_000), ("2T", 2e12),
    ("1186378", 1_186_378), (" 7 ", 7), ("1e6", 1_000_000), (".5k", 500), (42, 42), (2.5, 2.5),
])
def test_parse_count(text, expected):
    assert units.parse_count(text) == pytest.approx(expected)


@pytest.mark.parametrize("text, expected", [
    ("20MB", 20_000_000), ("20MiB", 20 * 1024 * 1024), ("1KiB", 1024), ("1KB", 1000), ("1kB", 1000),
    ("3GB", 3e9), ("2GiB", 2 * 2**30), ("512", 512), ("512B", 512), ("4.5 MiB", 4.5 * 2**20), ("5M", 5e6),
])
def test_parse_bytes(text, expected):
    assert units.parse_bytes(text) == pytest.approx(expected)


@pytest.mark.parametrize("text, expected", [("5%", 0.05), ("0.01", 0.01), ("150%", 1.5), (0, 0.0), ("0%", 0.0)])
def test_parse_fraction(text, expected):
    assert units.parse_fraction(text) == pytest.approx(expected)


@pytest.mark.parametrize("kind, text, fragment", [
    (Kind.COUNT, "5Q", "unknown suffix 'Q'"),
    (Kind.COUNT, "5MB", "unknown suffix 'MB'"),
    (Kind.BYTES, "5Qb", "unknown suffix 'Qb'"),
    (Kind.FRACTION, "5M", "unknown suffix 'M'"),
    (Kind.COUNT, "-5M", "negative"),
    (Kind.BYTES, "-1", "negative"),
    (Kind.FRACTION, "-1%", "negative"),
    (Kind.COUNT, -3, "negative"),
    (Kind.COUNT, "", "not a number"),
    (Kind.COUNT, "M", "not a number"),
    (Kind.COUNT, "five", "not a number"),
    (Kind.COUNT, float("nan"), "not a finite number"),
    (Kind.COUNT, True, "not a number"),
])
def test_bad_quantities_are_one_line_errors(kind, text, fragment):
    with pytest.raises(UnitError) as info:
        units.parse(text, kind)
    message = str(info.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("value, text", [
    (1_186_378, "1.19M"), (640, "640"), (12_500, "12.5k"), (2.4e9, "2.4G"), (999_600, "1000k"), (0, "0"),
    (-186_378, "-186k"),
])
def test_format_count(value, text):
    assert units.format_count(value) == text


@pytest.mark.parametrize("value, text", [
    (4_745_512, "4.53 MiB"), (512, "512 B"), (20 * 2**20, "20 MiB"), (704_392, "688 KiB"), (1023, "1023 B"),
    (1024, "1 KiB"), (-1_234_567, "-1.18 MiB"), (3 * 2**50, "3072 TiB"),
])
def test_format_bytes(value, text):
    assert units.format_bytes(value) == text


@pytest.mark.parametrize("value, text", [(0.0512, "5.12%"), (1.0, "100%"), (0.0, "0%"), (0.5, "50%")])
def test_format_fraction(value, text):
    assert units.format_fraction(value) == text


def test_every_kind_has_a_parser_and_a_formatter():
    assert set(units.PARSERS) == set(Kind)
    assert set(units.FORMATTERS) == set(Kind)


@given(st.integers(min_value=0, max_value=10**15))
def test_formatted_counts_parse_back_within_display_precision(n):
    parsed = units.parse_count(units.format_count(n))
    assert parsed == pytest.approx(n, rel=5e-3, abs=0.5)


@given(st.integers(min_value=0, max_value=10**13))
def test_formatted_bytes_parse_back_within_display_precision(n):
    parsed = units.parse_bytes(units.format_bytes(n).replace(" ", ""))
    assert parsed == pytest.approx(n, rel=5e-3, abs=0.5)
