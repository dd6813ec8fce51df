"""Pure planning: candidates, rank rules, selection and plans (no framework, no I/O).

The package re-exports the names callers use, so ``from sepconv_cli.planner import make_plan`` works.
"""

from sepconv_cli.planner.options import CandidateOptions, Init, PlanOptions, RankBy
from sepconv_cli.planner.plan import (
           NO_WEIGHTS,
           NOT_CONSTANT,
           RISK_THRESHOLDS,
           find_candidates,
           make_plan,
)

__all__ = ["NOT_CONSTANT", "NO_WEIGHTS", "RISK_THRESHOLDS", "CandidateOptions", "Init", "PlanOptions", "RankBy",
           "find_candidates", "make_plan"]
