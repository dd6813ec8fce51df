"""Budgets checked from Python (``sepconv_cli.api.check``): load each model, evaluate its budgets and,
with a baseline report, its growth. The CLI's `check` adds configuration files, globs and printing on
top of the same evaluation. No printing: loader warnings stay in the reports. Units: elements, MACs,
bytes, shares.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.core.budget import budgets_from_mapping, current_figures, evaluate, evaluate_growth, unknown_figures
from sepconv_cli.core.records import BudgetOutcome, CheckResult, ModelError
from sepconv_cli.core.units import Kind, parse
from sepconv_cli.errors import SepconvError, UsageError


def _file_size(report, path: str) -> int:
    if report.model.file_size or not os.path.isfile(path):
        return report.model.file_size
    return os.path.getsize(path)


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
        size = _file_size(report, path)
        results.extend(evaluate(report, limits, size, model=path))
        if base is not None:
            unknown = {**base.unknown, **unknown_figures(report)}
            results.extend(evaluate_growth(current_figures(report, size), base.figures, growth, path, unknown))
    return CheckResult(tuple(results), tuple(errors))
