"""Budgets and their outcomes for `check`: one limit per metric, one outcome per model and budget, and
the models that could not be read. Plain data; units: elements, MACs, bytes, shares."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    """One limit on one metric. ``metric`` is the flag name without dashes (``"max-params"``)."""

    metric: str
    limit: float
    source: str = "cli"


@dataclass(frozen=True)
class BudgetOutcome:
    """The outcome of one budget on one model: value, limit, and whether it holds.

    ``unknown`` says why the value could not be established (``"3 rows not counted: ..."``), "" when it
    could; ``value`` then covers only what was counted. An unknown outcome never passes. ``baseline`` is
    the recorded figure a growth outcome compares with (None for other budgets).
    """

    model: str
    metric: str
    value: float
    limit: float
    passed: bool
    message: str = ""
    unknown: str = ""
    baseline: float | None = None

    @property
    def growth(self) -> float | None:
        """Growth over the baseline as a fraction (``0.021`` = +2.1%); None without a (non-zero) baseline."""
        if self.baseline is None or not self.baseline:
            return None
        return (self.value - self.baseline) / self.baseline

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"FAIL"`` (exceeded) or ``"unknown"`` (not established: fails too)."""
        if self.unknown:
            return "unknown"
        return "pass" if self.passed else "FAIL"

    @property
    def headroom(self) -> float:
        """limit - value for max-budgets, value - limit for min-budgets (negative = exceeded)."""
        if self.metric.startswith("min-"):
            return self.value - self.limit
        return self.limit - self.value


@dataclass(frozen=True)
class ModelError:
    """A model `check` could not load: its path and the one-line reason."""

    model: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    """All budget outcomes of one `check` run, and the models that could not be loaded."""

    results: tuple[BudgetOutcome, ...] = field(default_factory=tuple)
    errors: tuple[ModelError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every budget holds and every model loaded."""
        return not self.errors and all(r.passed for r in self.results)

    def count(self, verdict: str) -> int:
        """Outcomes with this ``BudgetOutcome.verdict`` (``"pass"``, ``"FAIL"``, ``"unknown"``)."""
        return sum(1 for r in self.results if r.verdict == verdict)

    @property
    def models(self) -> tuple[str, ...]:
        """Every model named, checked or not, in first-seen order."""
        return tuple(dict.fromkeys([*(r.model for r in self.results), *(e.model for e in self.errors)]))
