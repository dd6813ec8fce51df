"""Candidate views for the renderers: each candidate with its savings as shares of the model, the
``--top`` cut, and the whole model after converting the candidates (at T=1, and at the energy-chosen
ranks). Units: params are tensor elements, MACs are multiply-accumulates, shares are fractions of the
model totals. Nothing here prints or imports rich.
"""

from __future__ import annotations

from dataclasses import dataclass

from sepconv_cli.core.records import Candidate, Report
from sepconv_cli.render.views import share_of


def top_candidates(report: Report, top: int | None) -> tuple[Candidate, ...]:
    """The report's candidates in the planner's order; with ``top``, only the ``top`` saving the most MACs
    at T=1 (what ``convert --top`` would pick), still in the planner's order."""
    cands = report.candidates
    if top is None or top >= len(cands):
        return cands
    ranked = sorted(range(len(cands)), key=lambda i: (-cands[i].macs_saved, -cands[i].params_saved, i))
    chosen = set(ranked[:top])
    return tuple(c for i, c in enumerate(cands) if i in chosen)


@dataclass(frozen=True)
class Outcome:
    """The whole model after a set of conversions: params and MACs, and the ratios now/after."""

    label: str
    converted: int
    params: int
    macs: int

    def ratios(self, report: Report) -> tuple[float | None, float | None]:
        """(params now / after, MACs now / after); None where a figure is 0 (nothing counted)."""
        return _ratio(report.params, self.params), _ratio(report.macs, self.macs)


def _ratio(before: int, after: int) -> float | None:
    return before / after if before and after else None


def _outcome(report: Report, label: str, savings: list[tuple[int, int]]) -> Outcome:
    return Outcome(label=label, converted=len(savings), params=report.params - sum(p for p, _ in savings),
                   macs=report.macs - sum(m for _, m in savings))


def rank_saving(cand: Candidate) -> tuple[int, int] | None:
    """(params saved, MACs saved) at the energy-chosen rank, None when no rank was chosen."""
    if cand.rank is None or cand.params_at_rank is None:
        return None
    macs = 0
    if cand.macs is not None and cand.macs_at_rank is not None:
        macs = cand.macs - cand.macs_at_rank
    return cand.params - cand.params_at_rank, macs


def summary(report: Report, top: int | None = None) -> tuple[Outcome, ...]:
    """Whole-model outcomes: every convertible candidate (of the ``top`` shown) at T=1, and at its
    energy-chosen rank (only when some rank was chosen: a model without weights has none)."""
    convertible = [c for c in top_candidates(report, top) if c.convertible]
    outcomes = [_outcome(report, "T=1", [(c.params_saved, c.macs_saved) for c in convertible])]
    at_rank = [s for s in (rank_saving(c) for c in convertible) if s is not None]
    if at_rank:
        target = report.energy_target if report.energy_target is not None else 0.0
        outcomes.append(_outcome(report, f"energy {target:g}", at_rank))
    return tuple(outcomes)


def has_energy(report: Report) -> bool:
    """True when at least one candidate carries a spectrum (the model has weights)."""
    return any(c.energy_t1 is not None for c in report.candidates)


def excluded_by_reason(report: Report) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Exclusions condensed: (reason, names) in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for item in report.excluded:
        groups.setdefault(item.reason, []).append(item.name)
    return tuple((reason, tuple(names)) for reason, names in groups.items())


@dataclass(frozen=True)
class CandidateView:
    """A candidate with its savings as shares of the model totals (fractions): at T=1 and at the
    energy-chosen rank (``None`` when no rank was chosen)."""

    cand: Candidate
    macs_share_t1: float | None
    params_share_t1: float
    macs_share_rank: float | None
    params_share_rank: float | None


def candidate_views(report: Report, top: int | None = None) -> tuple[CandidateView, ...]:
    """The report's candidates (the ``top`` ones, see ``top_candidates``), in the planner's order, with
    their shares of the model totals."""
    out = []
    for cand in top_candidates(report, top):
        at_rank = rank_saving(cand)
        params = report.params + _fed_at_run_time(report, cand)
        out.append(CandidateView(
            cand=cand,
            macs_share_t1=None if cand.macs is None else share_of(cand.macs_saved, report.macs),
            params_share_t1=share_of(cand.params_saved, params),
            macs_share_rank=None if at_rank is None else share_of(at_rank[1], report.macs),
            params_share_rank=None if at_rank is None else share_of(at_rank[0], params),
        ))
    return tuple(out)


def _fed_at_run_time(report: Report, cand: Candidate) -> int:
    """Kernel elements of a candidate whose weight is a run-time input: not among the model's params, so
    its shares are taken of the model plus that kernel (never above 100%)."""
    if cand.convertible:
        return 0
    return max(0, cand.params - report.layer(cand.name).params)
