"""Budgets on a model's size and cost, and their evaluation (pure: no I/O, no torch, no onnx).

A budget is a limit on one metric, named like its flag without the dashes (``max-params``). Each metric
is a registry entry: how to read its value from a ``Report`` (plus the model file size in bytes), what
kind of quantity it is (elements, bytes, share) and whether the limit is an upper or a lower bound.

Metrics:

- ``max-params``: trainable weight elements (``Report.params``).
- ``max-macs`` / ``max-flops``: multiply-accumulates of the counted rows / 2 x MACs.
- ``max-file-size``: bytes of the model file on disk.
- ``max-weight-bytes``: bytes of all stored weights, every dtype together.
- ``max-layer-macs``: MACs of the most expensive single row.
- ``max-uncounted``: share of graph rows whose MACs sepconv could not count (see ``uncounted_share``).
- ``min-separable-coverage``: share of convolution MACs already in depthwise-separable form
  (see ``separable_coverage``).

Baseline growth compares params, MACs, file size and weight bytes with a recorded report and fails when
any grew by more than the allowed fraction.

A metric that rows with unknown shapes leave out (MACs of a model with dynamic dims) is never passed on
what was counted: its outcome is ``unknown`` (a failure) naming how many rows are missing. Ops without a
MAC formula do not make it unknown; ``max-uncounted`` is the budget on those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sepconv_cli.core.checks import Budget, BudgetOutcome
from sepconv_cli.core.records import Report, rows_not_counted
from sepconv_cli.core.units import Kind, Raw, UnitError, format_value, parse
from sepconv_cli.errors import ConfigError, UsageError


@dataclass(frozen=True)
class Metric:
    """One budgetable quantity: its kind, direction (``upper`` limit or lower) and value function."""

    kind: Kind
    value: Callable[[Report, int], float]
    upper: bool = True
    description: str = ""
    missing: Callable[[Report], tuple] | None = None
    """Rows the value leaves out because their shapes are unknown (None: the value never misses any)."""


def layer_macs_max(report: Report) -> int:
    """MACs of the single most expensive counted row (0 for a model without counted rows)."""
    return max((layer.macs for layer in report.layers if layer.macs is not None), default=0)


def uncounted_share(report: Report) -> float:
    """Share of graph rows whose MACs are not counted: ops without a formula plus rows whose shapes
    stayed unknown. Both make ``max-macs`` a lower bound, which is what this budget guards against.

    No-formula ops are taken from ``Report.uncounted`` (node counts); when a loader lists them only
    there and not as rows, they are added to the row total. An empty model has share 0.
    """
    no_formula = sum(u.count for u in report.uncounted)
    no_formula_rows = sum(1 for layer in report.layers if layer.macs is None and layer.note == "no formula")
    total = len(report.layers) + max(0, no_formula - no_formula_rows)
    missing = max(no_formula, no_formula_rows) + len(report.unknown_rows)
    return missing / total if total else 0.0


def is_separable_conv(layer) -> bool:
    """A conv row that is already one half of a separable pair: depthwise (one input channel per
    group, ``ConvSpec.is_depthwise``) or pointwise (1x1 kernel, any groups)."""
    spec = layer.conv
    return spec is not None and (spec.is_depthwise or spec.kernel_elems == 1)


def separable_coverage(report: Report) -> float:
    """Share of convolution MACs spent in depthwise or 1x1 convolutions.

    ``sum(MACs of conv rows that are depthwise or 1x1) / sum(MACs of all conv rows)``, counting only
    rows with a ``ConvSpec`` and known MACs (regular and transposed convs; Gemm/MatMul are not convs).
    1.0 means nothing is left for ``sepconv convert`` to separate; a model without convolutions has
    nothing to separate either, so its coverage is 1.0.
    """
    convs = [(layer.macs, is_separable_conv(layer)) for layer in report.layers
             if layer.conv is not None and layer.macs is not None]
    total = sum(macs for macs, _ in convs)
    if total == 0:
        return 1.0
    return sum(macs for macs, separable in convs if separable) / total


def _unknown_rows(report: Report) -> tuple:
    return report.unknown_rows


def _unknown_conv_rows(report: Report) -> tuple:
    return tuple(layer for layer in report.unknown_rows if layer.conv is not None)


def not_counted(rows: int) -> str:
    """Why a metric is unknown when ``rows`` rows were left out ("" when none were)."""
    return f"{rows_not_counted(rows)}: pin dynamic dims with --input-shape" if rows else ""


METRICS: dict[str, Metric] = {
    "max-params": Metric(Kind.COUNT, lambda r, _: r.params, description="trainable weight elements"),
    "max-macs": Metric(Kind.COUNT, lambda r, _: r.macs, description="multiply-accumulates", missing=_unknown_rows),
    "max-flops": Metric(Kind.COUNT, lambda r, _: r.flops, description="FLOPs (2 x MACs)", missing=_unknown_rows),
    "max-file-size": Metric(Kind.BYTES, lambda _, size: size, description="model file bytes"),
    "max-weight-bytes": Metric(Kind.BYTES, lambda r, _: r.total_weight_bytes, description="stored weight bytes"),
    "max-layer-macs": Metric(Kind.COUNT, lambda r, _: layer_macs_max(r), description="MACs of the largest row",
                             missing=_unknown_rows),
    "max-uncounted": Metric(Kind.FRACTION, lambda r, _: uncounted_share(r),
                            description="share of rows without counted MACs"),
    "min-separable-coverage": Metric(Kind.FRACTION, lambda r, _: separable_coverage(r), upper=False,
                                     description="share of conv MACs in depthwise or 1x1 convs",
                                     missing=_unknown_conv_rows),
}

# Baseline growth: growth figure -> metric; the baseline stores the same four figures.
GROWTH_METRICS: dict[str, Metric] = {
    "params": METRICS["max-params"],
    "macs": METRICS["max-macs"],
    "file-size": METRICS["max-file-size"],
    "weight-bytes": METRICS["max-weight-bytes"],
}

GROWTH_PREFIX = "growth-"
FRACTION_LIMITED = frozenset({"max-uncounted", "min-separable-coverage"})


def metric_kind(metric: str) -> Kind:
    """The quantity kind of a budget or growth metric name (for display)."""
    if metric.startswith(GROWTH_PREFIX):
        return GROWTH_METRICS[metric[len(GROWTH_PREFIX):]].kind
    return METRICS[metric].kind


def parse_limit(metric: str, raw: Raw, kind: Kind) -> float:
    """Parse one limit; shares of a whole must lie in [0, 1] and counts be whole (``1.5M`` is, ``1.5``
    is not). Raises ``UnitError``."""
    limit = parse(raw, kind)
    if metric in FRACTION_LIMITED and limit > 1:
        raise UnitError(f"{raw!r} is a share above 100%")
    if kind is Kind.COUNT:
        whole = round(limit)
        if abs(limit - whole) > 1e-9 * max(1.0, limit):
            raise UnitError(f"{raw!r} is not a whole number (a count of elements or MACs; e.g. 1.5M)")
        return float(whole)
    return limit


def make_budget(metric: str, raw: Raw, source: str = "cli") -> Budget:
    """A ``Budget`` from a metric name and its raw text; errors name ``source`` and the key."""
    if metric not in METRICS:
        raise ConfigError(f"{source}: unknown budget {metric!r} (known: {', '.join(METRICS)})")
    try:
        return Budget(metric, parse_limit(metric, raw, METRICS[metric].kind), source)
    except UnitError as exc:
        if source == "cli":
            raise UsageError(f"--{metric}: {exc}") from None
        raise ConfigError(f"{source}: key {metric!r}: {exc}") from None


def budgets_from_mapping(mapping: Mapping[str, Raw], source: str) -> dict[str, Budget]:
    """Budgets keyed by metric from a ``{"max-params": "5M", ...}`` mapping (TOML table or flags)."""
    return {metric: make_budget(metric, raw, source) for metric, raw in mapping.items()}


def _unknown_outcome(model: str, metric: str, value: float, limit: float, reason: str) -> BudgetOutcome:
    kind = metric_kind(metric)
    message = f"{metric}: unknown ({reason}), limit {format_value(limit, kind)}"
    return BudgetOutcome(model=model, metric=metric, value=value, limit=limit, passed=False, message=message,
                     unknown=reason)


def _outcome(model: str, metric: str, value: float, limit: float, upper: bool) -> BudgetOutcome:
    passed = value <= limit if upper else value >= limit
    kind = metric_kind(metric)
    relation = ("<=" if passed else ">") if upper else (">=" if passed else "<")
    message = f"{metric}: {format_value(value, kind)} {relation} {format_value(limit, kind)}"
    return BudgetOutcome(model=model, metric=metric, value=value, limit=limit, passed=passed, message=message)


def evaluate(report: Report, budgets: Mapping[str, Budget], file_size: int | None = None,
             model: str | None = None) -> tuple[BudgetOutcome, ...]:
    """One outcome per budget, in registry order. ``file_size`` (bytes) defaults to the report's and
    ``model`` (the name outcomes carry) to the report's model path."""
    size = report.model.file_size if file_size is None else file_size
    out = []
    unknown = unknown_figures(report, METRICS)
    for metric, spec in METRICS.items():
        if metric not in budgets:
            continue
        value, limit = float(spec.value(report, size)), budgets[metric].limit
        if unknown.get(metric):
            out.append(_unknown_outcome(model or report.model.path, metric, value, limit, unknown[metric]))
        else:
            out.append(_outcome(model or report.model.path, metric, value, limit, spec.upper))
    return tuple(out)


def unknown_figures(report: Report, metrics: Mapping[str, Metric] = GROWTH_METRICS) -> dict[str, str]:
    """Figure name -> why ``report`` cannot establish it (``not_counted``), for the figures it cannot."""
    reasons = {name: not_counted(len(spec.missing(report))) for name, spec in metrics.items() if spec.missing}
    return {name: reason for name, reason in reasons.items() if reason}


def current_figures(report: Report, file_size: int | None = None) -> dict[str, float]:
    """The four growth figures of ``report``: params, macs (elements/MACs), file-size, weight-bytes (bytes)."""
    size = report.model.file_size if file_size is None else file_size
    return {name: float(spec.value(report, size)) for name, spec in GROWTH_METRICS.items()}


def evaluate_growth(current: Mapping[str, float], baseline: Mapping[str, float], max_growth: float,
                    model: str, unknown: Mapping[str, str] | None = None) -> tuple[BudgetOutcome, ...]:
    """One outcome per figure present in both: passes when ``current <= baseline * (1 + max_growth)``.

    Figures missing from the baseline are skipped (the caller reports them); the limit is absolute, so
    headroom reads in the figure's own unit. A figure named in ``unknown`` (figure -> reason, for the
    current model or the baseline) gets an unknown outcome.
    """
    out = []
    reasons = unknown or {}
    for name in GROWTH_METRICS:
        if name in current and name in baseline:
            limit = baseline[name] * (1.0 + max_growth)
            if reasons.get(name):
                outcome = _unknown_outcome(model, GROWTH_PREFIX + name, current[name], limit, reasons[name])
                out.append(replace(outcome, baseline=baseline[name]))
            else:
                out.append(_growth_outcome(model, name, current[name], baseline[name], limit))
    return tuple(out)


def _growth_outcome(model: str, name: str, value: float, base: float, limit: float) -> BudgetOutcome:
    outcome = _outcome(model, GROWTH_PREFIX + name, value, limit, True)
    change = (value - base) / base if base else (0.0 if value == 0 else float("inf"))
    detail = f" ({'+' if change >= 0 else ''}{change * 100:.2f}% vs baseline {format_value(base, metric_kind(outcome.metric))})"
    return BudgetOutcome(model, outcome.metric, value, limit, outcome.passed, outcome.message + detail, baseline=base)
