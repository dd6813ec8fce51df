"""Parsing of --target-* values: factors, shares and absolute amounts, with one-line usage errors."""

from __future__ import annotations

import pytest

from sepconv_cli.errors import UsageError
from sepconv_cli.planner.targets import Metric, parse_output_error, parse_target


@pytest.mark.parametrize(("metric", "text", "original", "budget"), [
    (Metric.LATENCY, "2x", 10.0, 5.0),
    (Metric.LATENCY, "1.5X", 3.0, 2.0),
    (Metric.LATENCY, "50%", 8.0, 4.0),
    (Metric.LATENCY, "3ms", 1.0, 0.003),
    (Metric.LATENCY, "800us", 1.0, 0.0008),
    (Metric.LATENCY, "0.5s", 1.0, 0.5),
    (Metric.MACS, "4x", 1000, 250),
    (Metric.MACS, "25%", 1000, 250),
    (Metric.MACS, "500M", 1e12, 5e8),
    (Metric.PARAMS, "1.2M", 1e9, 1.2e6),
    (Metric.PARAMS, "1x", 7, 7),
])
def test_budgets(metric, text, original, budget):
    assert parse_target(metric, text).budget(original) == pytest.approx(budget)


@pytest.mark.parametrize(("metric", "text", "words"), [
    (Metric.MACS, "0.5x", "at least 1x"),
    (Metric.MACS, "0%", "within"),
    (Metric.MACS, "150%", "within"),
    (Metric.MACS, "lots", "--target-macs"),
    (Metric.LATENCY, "5M", "time"),
    (Metric.PARAMS, "0", "positive"),
    (Metric.PARAMS, "-3M", "--target-params"),
])
def test_nonsense_is_a_usage_error(metric, text, words):
    with pytest.raises(UsageError, match=words):
        parse_target(metric, text)


def test_describe_and_flags():
    assert parse_target(Metric.LATENCY, " 2x ").describe() == "--target-latency 2x"
    assert {m.flag for m in Metric} == {"--target-latency", "--target-macs", "--target-params"}


def test_output_error_range():
    assert parse_output_error(None) is None
    assert parse_output_error(0.05) == 0.05
    for bad in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(UsageError, match="--max-output-error"):
            parse_output_error(bad)
