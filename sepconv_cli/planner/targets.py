"""Budgets as targets for ``convert``: ``--target-latency 2x``, ``--target-macs 4x|25%|500M``,
``--target-params 1M``, and ``--max-output-error E`` (end-to-end) (pure: parsing and arithmetic only).

A target names a metric and how much of it the converted model may have, in one of three forms:

- a speed-up factor ``"2x"``: at most 1/2 of the original (for latency: twice as fast);
- a share ``"25%"``: at most a quarter of the original;
- an absolute amount: ``"500M"`` MACs, ``"1.2M"`` params, ``"3ms"`` / ``"800us"`` / ``"0.5s"`` latency.

Units: MACs and params in elements, latency in seconds (one inference at batch 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from sepconv_cli.core.units import UnitError, parse_count
from sepconv_cli.errors import UsageError


class Metric(str, Enum):
    """What a target limits."""

    LATENCY = "latency"
    MACS = "macs"
    PARAMS = "params"

    @property
    def flag(self) -> str:
        """The command-line flag setting this target."""
        return f"--target-{self.value}"


_TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_FACTOR = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)\s*[xX]\s*$")
_SHARE = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)\s*%\s*$")
_TIME = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)\s*(s|ms|us|µs)\s*$")


@dataclass(frozen=True)
class Target:
    """A limit on ``metric``: ``share`` of the original (factor ``2x`` -> 0.5, ``25%`` -> 0.25) or an
    ``absolute`` amount (elements, or seconds for latency). ``text`` is what the user typed."""

    metric: Metric
    text: str
    share: float | None = None
    absolute: float | None = None

    def budget(self, original: float) -> float:
        """The most the converted model may have, given the original's amount."""
        return original * self.share if self.share is not None else float(self.absolute or 0.0)

    def describe(self) -> str:
        """The target in flag words."""
        return f"{self.metric.flag} {self.text}"


def _absolute(metric: Metric, text: str) -> float:
    """An absolute amount: seconds for latency, elements otherwise."""
    if metric is Metric.LATENCY:
        match = _TIME.match(text)
        if not match:
            raise UsageError(f"{metric.flag} {text!r}: give a speed-up (2x), a share (50%) or a time (3ms)")
        return float(match.group(1)) * _TIME_UNITS[match.group(3)]
    try:
        return parse_count(text)
    except UnitError as exc:
        raise UsageError(f"{metric.flag} {text!r}: give a factor (4x), a share (25%) or an amount (500M): "
                         f"{exc}") from None


def parse_target(metric: Metric, text: str) -> Target:
    """``text`` as a target on ``metric``; UsageError for nonsense (0x, 0%, 150%, a negative amount)."""
    factor, share = _FACTOR.match(text), _SHARE.match(text)
    if factor:
        value = float(factor.group(1))
        if value < 1.0:
            raise UsageError(f"{metric.flag} {text!r}: a factor is how many times smaller, at least 1x")
        return Target(metric, text.strip(), share=1.0 / value)
    if share:
        value = float(share.group(1)) / 100.0
        if not 0.0 < value <= 1.0:
            raise UsageError(f"{metric.flag} {text!r}: a share must be within (0%, 100%]")
        return Target(metric, text.strip(), share=value)
    amount = _absolute(metric, text)
    if amount <= 0:
        raise UsageError(f"{metric.flag} {text!r}: the amount must be positive")
    return Target(metric, text.strip(), absolute=amount)


def parse_output_error(value: float | None) -> float | None:
    """``--max-output-error``: an end-to-end relative L2 error within (0, 1), or None."""
    if value is None:
        return None
    if not 0.0 < value < 1.0:
        raise UsageError(f"--max-output-error must be within (0, 1), got {value:g}")
    return float(value)
