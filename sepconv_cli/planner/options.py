"""The user's planning choices: candidate ranking, weight init, and the plan options (enums and frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RankBy(str, Enum):
    """Order of the candidate list."""

    MACS = "macs"
    PARAMS = "params"
    ENERGY = "energy"


class Init(str, Enum):
    """Where the separable weights come from."""

    SVD = "svd"
    RANDOM = "random"


@dataclass(frozen=True)
class CandidateOptions:
    """``energy``: target for the per-candidate rank; ``depthwise_bias``: count a bias on the depthwise conv
    too; ``fold_bn``: take the spectrum of the kernel with its following BatchNorm folded in."""

    energy: float = 0.9
    rank_by: RankBy = RankBy.MACS
    depthwise_bias: bool = False
    fold_bn: bool = True


@dataclass(frozen=True)
class PlanOptions:
    """Selection (globs, top N, minimum MACs fraction saved) and one rank rule (DESIGN §4, issue 5)."""

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    top: int | None = None
    min_saving: float = 0.0
    rank: int | None = None
    full_rank: bool = False
    energy: float | None = None
    max_error: float | None = None
    init: str = "svd"
    fold_bn: bool = True
    depthwise_bias: bool = False
