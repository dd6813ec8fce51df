"""Budget parsing and evaluation on hand-built reports, with expected values computed in the test."""

from __future__ import annotations

import pytest

from sepconv_cli.core import budget
from sepconv_cli.core.records import ConvSpec, Layer, ModelInfo, Report, Uncounted
from sepconv_cli.errors import ConfigError, UsageError


def conv(name, cin, cout, k, groups=1, hw=8):
    """A conv row whose MACs are N * Cout * H * W * (Cin/g) * k*k, computed here independently."""
    spec = ConvSpec(cin, cout, (k, k), (1, 1), (1, 1), groups=groups)
    macs = 1 * cout * hw * hw * (cin // groups) * k * k
    params = cout * (cin // groups) * k * k
    return Layer(name=name, op="Conv", params=params, macs=macs, conv=spec)


LAYERS = (
    conv("stem", 3, 16, 3),                    # 16*64*3*9   = 27,648 MACs, regular
    conv("dw", 16, 16, 3, groups=16),          # 16*64*1*9   =  9,216 MACs, depthwise
    conv("pw", 16, 32, 1),                     # 32*64*16*1  = 32,768 MACs, pointwise
    conv("grouped", 32, 32, 3, groups=4),      # 32*64*8*9   = 147,456 MACs, grouped: not separable
    Layer(name="relu", op="Relu", macs=0),
    Layer(name="fc", op="Gemm", params=32 * 10 + 10, macs=320),
    Layer(name="mystery", op="Custom", macs=None, note="no formula"),
    Layer(name="dyn", op="MatMul", macs=None, note="shape unknown: N"),
)
STATIC = LAYERS[:-1]  # without the row of unknown shape: MAC budgets can be decided
PARAMS = sum(layer.params for layer in LAYERS)
CONV_MACS = 27_648 + 9_216 + 32_768 + 147_456
MACS = CONV_MACS + 320


def make_report(layers=LAYERS, params=PARAMS, file_size=4_000, uncounted=(Uncounted("Custom", 1, ("mystery",)),)):
    return Report(model=ModelInfo("m.onnx", "onnx", file_size), layers=layers, params=params,
                  weight_bytes=(("float32", 4 * params), ("int8", 100)), uncounted=uncounted)


def test_hand_built_report_matches_independent_arithmetic():
    report = make_report()
    assert report.macs == MACS == 217_408
    assert budget.layer_macs_max(report) == 147_456
    assert budget.separable_coverage(report) == pytest.approx((9_216 + 32_768) / CONV_MACS)
    # 8 rows; "mystery" has no formula and "dyn" has an unknown shape: 2 of 8
    assert budget.uncounted_share(report) == pytest.approx(2 / 8)


EXPECTED = {
    "max-params": PARAMS, "max-macs": MACS, "max-flops": 2 * MACS, "max-file-size": 4_000,
    "max-weight-bytes": 4 * PARAMS + 100, "max-layer-macs": 147_456, "max-uncounted": 0.25,
    "min-separable-coverage": (9_216 + 32_768) / CONV_MACS,
}


def test_every_metric_has_an_expected_value_here():
    assert set(EXPECTED) == set(budget.METRICS)


@pytest.mark.parametrize("metric", sorted(EXPECTED))
@pytest.mark.parametrize("holds", [True, False])
def test_each_budget_passes_and_fails(metric, holds):
    value = EXPECTED[metric]
    upper = budget.METRICS[metric].upper
    slack = 1.01 if holds == upper else 0.99
    limit = value * slack
    report = make_report(STATIC if budget.METRICS[metric].missing else LAYERS)
    (outcome,) = budget.evaluate(report, {metric: budget.Budget(metric, limit)})
    assert outcome.value == pytest.approx(value)
    assert outcome.passed is holds
    assert outcome.limit == limit
    assert (outcome.headroom >= 0) is holds
    assert outcome.metric in outcome.message and "\n" not in outcome.message


def test_a_limit_equal_to_the_value_holds():
    report = make_report(STATIC)
    outcomes = budget.evaluate(report, budget.budgets_from_mapping({"max-params": PARAMS, "max-macs": MACS}, "t"))
    assert [o.passed for o in outcomes] == [True, True]
    assert [o.headroom for o in outcomes] == [0, 0]


def test_file_size_argument_overrides_the_report():
    (outcome,) = budget.evaluate(make_report(), {"max-file-size": budget.Budget("max-file-size", 5000)}, 6000)
    assert outcome.value == 6000 and not outcome.passed and outcome.headroom == -1000


def test_outcomes_follow_registry_order_and_carry_the_model_name():
    budgets = budget.budgets_from_mapping({"min-separable-coverage": "10%", "max-params": "1M"}, "t")
    outcomes = budget.evaluate(make_report(), budgets, model="shown.onnx")
    assert [o.metric for o in outcomes] == ["max-params", "min-separable-coverage"]
    assert {o.model for o in outcomes} == {"shown.onnx"}


def test_coverage_of_a_model_without_convs_is_one():
    report = make_report(layers=(Layer(name="fc", op="Gemm", params=10, macs=10),), params=10)
    assert budget.separable_coverage(report) == 1.0


def test_fully_separable_model_has_full_coverage():
    report = make_report(layers=(conv("dw", 8, 8, 3, groups=8), conv("pw", 8, 16, 1)), params=0)
    assert budget.separable_coverage(report) == 1.0


def test_uncounted_ops_listed_only_in_the_uncounted_table_are_added_to_the_total():
    layers = (Layer(name="a", op="Conv", macs=5), Layer(name="b", op="Relu", macs=0))
    report = make_report(layers=layers, uncounted=(Uncounted("Custom", 2),))
    assert budget.uncounted_share(report) == pytest.approx(2 / 4)
    assert budget.uncounted_share(make_report(layers=(), uncounted=())) == 0.0


@pytest.mark.parametrize("metric, raw, limit", [
    ("max-params", "5M", 5e6), ("max-macs", "1.5G", 1.5e9), ("max-file-size", "20MiB", 20 * 2**20),
    ("max-weight-bytes", "1KB", 1000), ("max-uncounted", "1%", 0.01), ("min-separable-coverage", 0.5, 0.5),
    ("max-layer-macs", 1000, 1000),
])
def test_budgets_from_mapping(metric, raw, limit):
    parsed = budget.budgets_from_mapping({metric: raw}, "pyproject.toml")
    assert parsed[metric].limit == pytest.approx(limit)
    assert parsed[metric].source == "pyproject.toml"


@pytest.mark.parametrize("metric, raw, fragment", [
    ("max-params", "5Q", "unknown suffix 'Q'"),
    ("max-params", "-5M", "negative"),
    ("max-file-size", "20Mb", "unknown suffix 'Mb'"),
    ("max-uncounted", "150%", "share above 100%"),
    ("min-separable-coverage", "2", "share above 100%"),
])
def test_bad_budgets_name_file_and_key(metric, raw, fragment):
    with pytest.raises(ConfigError) as info:
        budget.budgets_from_mapping({metric: raw}, "cfg/sepconv.toml")
    message = str(info.value)
    assert message.startswith("cfg/sepconv.toml") and repr(metric) in message and fragment in message
    with pytest.raises(UsageError, match=f"^--{metric}: .*{fragment}"):
        budget.make_budget(metric, raw, "cli")


def test_unknown_budget_names_the_key():
    with pytest.raises(ConfigError, match="unknown budget 'max-parms'"):
        budget.make_budget("max-parms", "5M", "sepconv.toml")


def test_growth_passes_within_and_fails_past_the_allowance():
    base = {"params": 1000.0, "macs": 2000.0, "file-size": 4000.0, "weight-bytes": 4000.0}
    current = {"params": 1050.0, "macs": 2101.0, "file-size": 3000.0, "weight-bytes": 4000.0}
    outcomes = budget.evaluate_growth(current, base, 0.05, "m.onnx")
    by_metric = {o.metric: o for o in outcomes}
    assert list(by_metric) == ["growth-params", "growth-macs", "growth-file-size", "growth-weight-bytes"]
    assert by_metric["growth-params"].passed and by_metric["growth-params"].limit == pytest.approx(1050)
    assert not by_metric["growth-macs"].passed
    assert by_metric["growth-macs"].headroom == pytest.approx(2100 - 2101)
    assert "+5.05% vs baseline 2k" in by_metric["growth-macs"].message
    assert by_metric["growth-file-size"].passed and "-25.00%" in by_metric["growth-file-size"].message


def test_growth_skips_figures_the_baseline_lacks_and_handles_zero():
    outcomes = budget.evaluate_growth({"params": 1.0, "macs": 0.0}, {"params": 0.0, "macs": 0.0}, 0.5, "m")
    assert [(o.metric, o.passed) for o in outcomes] == [("growth-params", False), ("growth-macs", True)]


def test_current_figures_read_the_report():
    figures = budget.current_figures(make_report(), 123)
    assert figures == {"params": PARAMS, "macs": MACS, "file-size": 123, "weight-bytes": 4 * PARAMS + 100}


def test_mac_budgets_over_rows_of_unknown_shape_are_unknown_never_passed():
    budgets = budget.budgets_from_mapping({"max-params": "1M", "max-macs": "1T", "max-layer-macs": "1T"}, "t")
    params, macs, layer = budget.evaluate(make_report(), budgets)   # the "dyn" row has an unknown shape
    assert params.verdict == "pass"
    for outcome in (macs, layer):
        assert outcome.verdict == "unknown" and outcome.passed is False
        assert outcome.unknown == "1 row not counted: pin dynamic dims with --input-shape"
        assert "unknown" in outcome.message
    growth = budget.evaluate_growth({"macs": 5.0}, {"macs": 5.0}, 0.0, "m", budget.unknown_figures(make_report()))
    assert [o.verdict for o in growth] == ["unknown"]


def test_count_limits_must_be_whole_numbers():
    assert budget.make_budget("max-params", "1.5M").limit == 1_500_000
    assert budget.make_budget("max-macs", "1.15M").limit == 1_150_000
    with pytest.raises(UsageError, match="--max-params: '1.5' is not a whole number"):
        budget.make_budget("max-params", "1.5")
    with pytest.raises(ConfigError, match="sepconv.toml: key 'max-flops'.*not a whole number"):
        budget.make_budget("max-flops", 2.5, "sepconv.toml")
    assert budget.make_budget("max-file-size", "1.5").limit == 1.5   # bytes and shares are not counts
