"""Budgets checked from Python (``sepconv_cli.api.check``): load each model, evaluate its budgets and,
with a baseline report, its growth. The CLI's `check` adds configuration files, globs and printing on
top of the same evaluation. No printing: loader warnings stay in the reports. Units: elements, MACs,
bytes, shares.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.core.budget import budgets_from_mapping, current_figures, evaluate, evaluate_growth, unknown_figures
from sepconv_cli.core.checks import Budget, BudgetOutcome, CheckResult, ModelError
from sepconv_cli.core.records import Report
from sepconv_cli.core.units import Kind, parse
from sepconv_cli.errors import SepconvError, UsageError

if TYPE_CHECKING:
    from sepconv_cli.pipeline.baseline import Baseline


def file_size(report: Report, path: str) -> int:
    """Bytes of the model on disk: the report's figure (external data included), else the file's size."""
    if report.model.file_size or not os.path.isfile(path):
        return report.model.file_size
    return os.path.getsize(path)


@dataclass(frozen=True)
class Evaluated:
    """One model's outcomes: its budgets, then its growth over the baseline (empty without one);
    ``missing``: figures the baseline does not record (their growth is not checked)."""

    budgets: tuple[BudgetOutcome, ...]
    growth: tuple[BudgetOutcome, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def outcomes(self) -> tuple[BudgetOutcome, ...]:
        return self.budgets + self.growth


def evaluate_report(report: Report, path: str, limits: Mapping[str, Budget], base: Baseline | None,
                    max_growth: float) -> Evaluated:
    """The budgets ``limits`` and, with ``base``, growth of at most ``max_growth`` (a share) for the model
    at ``path`` whose report is ``report``."""
    size = file_size(report, path)
    budgets = evaluate(report, limits, size, model=path)
    if base is None:
        return Evaluated(budgets)
    figures = current_figures(report, size)
    unknown = {**base.unknown, **unknown_figures(report)}
    growth = evaluate_growth(figures, base.figures, max_growth, path, unknown)
    return Evaluated(budgets, growth, tuple(base.missing(figures)))


def check_models(paths: Sequence[str], budgets: Mapping[str, Any], baseline: str | None,
                 max_growth: float | str | None, load: LoadOptions) -> CheckResult:
    """Every model's outcomes (see module docstring); a model that cannot be loaded is an error entry."""
    from sepconv_cli.backends.registry import load as load_model
    from sepconv_cli.pipeline.baseline import load_baseline

    limits = budgets_from_mapping(budgets, "api")
    base = load_baseline(baseline) if baseline else None
    if base is None and max_growth is not None:
        raise UsageError("max_growth needs a baseline report")
    if not limits and base is None:
        raise UsageError("no budget given")
    growth = 0.0 if max_growth is None else parse(max_growth, Kind.FRACTION)
    results: list[BudgetOutcome] = []
    errors: list[ModelError] = []
    for path in paths:
        try:
            report = load_model(path, load).report
        except SepconvError as exc:
            errors.append(ModelError(path, str(exc)))
            continue
        results.extend(evaluate_report(report, path, limits, base, growth).outcomes)
    return CheckResult(tuple(results), tuple(errors))
