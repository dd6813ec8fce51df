"""Quantities with suffixes, both ways: ``"5M"`` -> 5,000,000 and 5,000,000 -> ``"5M"``.

Every command displays numbers through this module: counts with SI prefixes (``1.19M``), sizes in binary
units (``4.53 MiB``, as ``analyze`` has always shown them), shares as percentages.

Three kinds of quantity, each an ``Enum`` member mapped to a parser and a formatter:

- ``COUNT`` (elements, MACs, FLOPs): plain numbers or ``k``/``M``/``G``/``T`` (powers of 1000).
- ``BYTES``: plain numbers (bytes), ``B``, ``KB``/``MB``/``GB``/``TB`` (powers of 1000) or
  ``KiB``/``MiB``/``GiB``/``TiB`` (powers of 1024); the bare count suffixes ``k``/``M``/``G`` mean x1000.
- ``FRACTION`` (shares and growth): ``"5%"`` -> 0.05, or a plain number ``0.05``.

Every parser raises ``UnitError`` (a ``ValueError``) with a one-line message; callers add the file and
the key to it. Negative quantities and non-finite numbers are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from enum import Enum

Raw = str | int | float


class UnitError(ValueError):
    """A quantity that cannot be parsed; ``str(err)`` is one line without file or key."""


class Kind(str, Enum):
    """What a quantity measures, which decides its suffixes and how it is displayed."""

    COUNT = "count"
    BYTES = "bytes"
    FRACTION = "fraction"


COUNT_SUFFIXES: dict[str, int] = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
BYTE_SUFFIXES: dict[str, int] = {
    "B": 1, "KB": 10**3, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
    **COUNT_SUFFIXES,
}
_NUMBER = re.compile(r"^\s*(?P<num>[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)\s*(?P<suffix>[A-Za-z%]*)\s*$")


def _split(text: Raw) -> tuple[float, str]:
    """``"1.5 MiB"`` -> ``(1.5, "MiB")``; numbers pass through with an empty suffix."""
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a number")
    if isinstance(text, (int, float)):
        value, suffix = float(text), ""
    else:
        match = _NUMBER.match(str(text))
        if not match:
            raise UnitError(f"{text!r} is not a number with an optional suffix (e.g. 5M, 20MB, 5%)")
        value, suffix = float(match["num"]), match["suffix"]
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite number")
    if value < 0:
        raise UnitError(f"{text!r} is negative")
    return value, suffix


def _scaled(text: Raw, suffixes: dict[str, int], hint: str) -> float:
    value, suffix = _split(text)
    if suffix not in suffixes:
        raise UnitError(f"{text!r} has an unknown suffix {suffix!r} (use {hint})")
    if not math.isfinite(value * suffixes[suffix]):  # e.g. 1e300T: an infinite limit would pass anything
        raise UnitError(f"{text!r} is not a finite number")
    return value * suffixes[suffix]


def parse_count(text: Raw) -> float:
    """Elements, MACs or FLOPs: ``"5M"`` -> 5e6, ``"1.2G"`` -> 1.2e9, ``"300k"`` -> 3e5."""
    return _scaled(text, COUNT_SUFFIXES, "k, M, G or T")


def parse_bytes(text: Raw) -> float:
    """Bytes: ``"20MB"`` -> 2e7, ``"20MiB"`` -> 20 * 2**20, ``"512"`` -> 512."""
    return _scaled(text, BYTE_SUFFIXES, "B, KB, MB, GB, KiB, MiB or GiB")


def parse_fraction(text: Raw) -> float:
    """A share: ``"5%"`` -> 0.05, ``"0.05"`` -> 0.05 (no upper bound: growth may exceed 100%)."""
    value, suffix = _split(text)
    if suffix == "%":
        return value / 100.0
    if suffix:
        raise UnitError(f"{text!r} has an unknown suffix {suffix!r} (use a plain number or a percentage)")
    return value


def _trim(number: float) -> str:
    """About three significant digits without trailing zeros: 1.19, 12.5, 512, 4096."""
    digits = 2 if abs(number) < 10 else 1 if abs(number) < 100 else 0
    text = f"{number:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _format_scaled(value: float, steps: tuple[tuple[float, str], ...], base_unit: str) -> str:
    for factor, unit in steps:
        if abs(value) >= factor:
            return f"{_trim(value / factor)}{unit}"
    if float(value).is_integer():
        return f"{int(value)}{base_unit}"
    return f"{_trim(value)}{base_unit}"


def format_count(value: float) -> str:
    """1_186_378 -> ``"1.19M"``; 640 -> ``"640"`` (SI prefixes, powers of 1000)."""
    return _format_scaled(value, ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")), "")


BINARY_STEPS = ((2**40, " TiB"), (2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB"))


def format_bytes(value: float) -> str:
    """Bytes in binary units, the one size format of every command (the parser reads it back):
    4_745_512 -> ``"4.53 MiB"``, 704_392 -> ``"688 KiB"``, 512 -> ``"512 B"``."""
    return _format_scaled(value, BINARY_STEPS, " B")


def format_fraction(value: float) -> str:
    """0.0512 -> ``"5.12%"``."""
    return f"{_trim(value * 100)}%"


PARSERS: dict[Kind, Callable[[Raw], float]] = {
    Kind.COUNT: parse_count,
    Kind.BYTES: parse_bytes,
    Kind.FRACTION: parse_fraction,
}

FORMATTERS: dict[Kind, Callable[[float], str]] = {
    Kind.COUNT: format_count,
    Kind.BYTES: format_bytes,
    Kind.FRACTION: format_fraction,
}


def parse(text: Raw, kind: Kind) -> float:
    """Parse ``text`` as a quantity of ``kind``."""
    return PARSERS[kind](text)


def format_value(value: float, kind: Kind) -> str:
    """Human display of ``value`` as a quantity of ``kind``."""
    return FORMATTERS[kind](value)
