"""How much a verification can be trusted: strong or weak evidence, and why.

A conversion checked on seeded random inputs says little about the data the model was trained for
(random inputs reach activations real data never does, and vice versa); one checked on the very samples
calibration fitted is in-sample; and a handful of samples cannot separate "always agrees" from "agrees
nine times in ten". Each rule below names one such weakness; the first that applies is the reason
given. Verification inputs are called random when their source reads ``random (seed S)``, as
``random_source`` writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

MIN_SAMPLES = 32
"""Fewer verification samples than this are weak evidence (at 32 agreeing samples the 95% Wilson
interval of top-1 agreement still reaches down to 89%)."""

RANDOM_PREFIX = "random (seed "


class Strength(Enum):
    """How far the verification figures speak for the model on real data."""

    STRONG = "strong"
    WEAK = "weak"


@dataclass(frozen=True)
class Evidence:
    """The strength of a verification and the reason, e.g. ``weak: random inputs ...``."""

    strength: Strength
    reason: str

    @property
    def weak(self) -> bool:
        """True for weak evidence."""
        return self.strength is Strength.WEAK

    def __str__(self) -> str:
        return f"{self.strength.value} ({self.reason})"


def random_source(seed: int) -> str:
    """How seeded random verification inputs are named (the one spelling ``is_random`` recognises)."""
    return f"{RANDOM_PREFIX}{seed})"


def is_random(source: str) -> bool:
    """Whether verification inputs named ``source`` are seeded random ones."""
    return source.startswith(RANDOM_PREFIX)


@dataclass(frozen=True)
class Basis:
    """What a verification ran on: the inputs' ``source``, their ``role`` (e.g. ``held-back
    calibration``) and the sample count."""

    source: str
    role: str
    samples: int


# Each rule: the reason the evidence is weak, or None when the rule does not apply. First match wins.
WEAK_RULES: tuple[Callable[[Basis], str | None], ...] = (
    lambda b: ("random inputs, not data like the model's" if is_random(b.source) else None),
    lambda b: ("in-sample: the inputs calibration fitted" if b.role.startswith("in-sample") else None),
    lambda b: (f"only {b.samples} sample(s), under {MIN_SAMPLES}" if b.samples < MIN_SAMPLES else None),
)


def assess(source: str, role: str, samples: int) -> Evidence:
    """The evidence a verification on ``samples`` inputs from ``source`` (in ``role``) gives."""
    basis = Basis(source, role, samples)
    for rule in WEAK_RULES:
        reason = rule(basis)
        if reason:
            return Evidence(Strength.WEAK, reason)
    kind = f"{role} " if role else ""
    return Evidence(Strength.STRONG, f"{samples} {kind}samples")
