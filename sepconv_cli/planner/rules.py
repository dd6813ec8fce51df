"""Rank rules of ``convert``: fixed T, full rank, energy kept, or maximum relative weight error.

Each rule kind maps to one function choosing T from the layer geometry and its spectrum (registry, no
if-chain). Every rule but full rank must land below the break-even rank T* = K*Cout/(K*g+Cout)
(DESIGN §4); otherwise the layer is left alone: :func:`choose_rank` raises :class:`RankRefused`, whose
message is the reason. Pure: no torch, no onnx.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sepconv_cli.core import costs
from sepconv_cli.core.decompose import Spectrum
from sepconv_cli.core.records import ConvSpec
from sepconv_cli.errors import UsageError

DEFAULT_ENERGY = 0.9


class RankRefused(Exception):
    """No rank under the rule makes this layer worth converting; ``str(exc)`` is the reason (a plan's
    normal outcome for that layer, not a user error)."""


class RuleKind(str, Enum):
    """How the rank T of a converted layer is chosen."""

    FIXED = "rank"
    FULL = "full"
    ENERGY = "energy"
    MAX_ERROR = "max-error"


@dataclass(frozen=True)
class RankRule:
    """One rule and its value (T for FIXED, a fraction for ENERGY / MAX_ERROR, unused for FULL)."""

    kind: RuleKind
    value: float = 0.0

    def describe(self) -> str:
        """The rule in flag words, for reasons."""
        return {
            RuleKind.FIXED: f"--rank {int(self.value)}",
            RuleKind.FULL: "--rank full",
            RuleKind.ENERGY: f"{self.value:.0%} energy",
            RuleKind.MAX_ERROR: f"--max-error {self.value:g}",
        }[self.kind]


def rank_rule(options) -> RankRule:
    """The single rank rule of PlanOptions-like ``options`` (energy 0.9 when none is given)."""
    given = [
        (options.full_rank, RankRule(RuleKind.FULL)),
        (options.rank is not None, RankRule(RuleKind.FIXED, options.rank or 0)),
        (options.energy is not None, RankRule(RuleKind.ENERGY, options.energy or 0.0)),
        (options.max_error is not None, RankRule(RuleKind.MAX_ERROR, options.max_error or 0.0)),
    ]
    chosen = [rule for flag, rule in given if flag]
    if len(chosen) > 1:
        raise UsageError("give one rank rule: --rank, --rank full, --energy or --max-error")
    rule = chosen[0] if chosen else RankRule(RuleKind.ENERGY, DEFAULT_ENERGY)
    _validate(rule)
    return rule


def _validate(rule: RankRule) -> None:
    if rule.kind is RuleKind.FIXED and (rule.value < 1 or rule.value != int(rule.value)):
        raise UsageError(f"--rank must be a positive integer or 'full', got {rule.value:g}")
    if rule.kind is RuleKind.ENERGY and not 0.0 < rule.value <= 1.0:
        raise UsageError(f"--energy must be within (0, 1], got {rule.value:g}")
    if rule.kind is RuleKind.MAX_ERROR and not 0.0 <= rule.value < 1.0:
        raise UsageError(f"--max-error must be within [0, 1), got {rule.value:g}")


def _weighed(rule: RankRule, found: Spectrum | None) -> Spectrum:
    """The spectrum a data-driven rule reads; RankRefused when the layer has no weights to read."""
    if found is None:
        raise RankRefused(f"{rule.describe()} needs weights to choose a rank")
    return found


_Chooser = Callable[[RankRule, ConvSpec, Spectrum | None], int]

_CHOOSERS: dict[RuleKind, _Chooser] = {
    RuleKind.FIXED: lambda rule, spec, found: int(rule.value),
    RuleKind.FULL: lambda rule, spec, found: costs.max_rank(spec),
    RuleKind.ENERGY: lambda rule, spec, found: _weighed(rule, found).rank_for_energy(rule.value),
    RuleKind.MAX_ERROR: lambda rule, spec, found: _weighed(rule, found).rank_for_error(rule.value),
}


def choose_rank(rule: RankRule, spec: ConvSpec, found: Spectrum | None) -> int:
    """T for this layer under ``rule``; RankRefused (with the reason) when the layer is left alone."""
    rank = _CHOOSERS[rule.kind](rule, spec, found)
    t_star = costs.break_even_rank(spec)
    if rule.kind is not RuleKind.FULL and rank >= t_star:
        raise RankRefused(f"T={rank} for {rule.describe()} is not below break-even T*={t_star:.3g}")
    return rank
