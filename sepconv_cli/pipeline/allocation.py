"""What the allocator may do with each layer, and at what cost: per-rank plans, error curves, costs.

``offers`` plans every selected convolution at each rank worth trying (the planner's own figures: params
and MACs after, with a folded BatchNorm's params leaving, energy kept). ``choices`` turns them into the
allocator's ``LayerChoices`` for one metric: cost per choice in MACs, params or measured seconds, and the
predicted error per rank (a squared relative output error: calibrated when curves are given, otherwise
``1 - energy kept``, the squared relative weight error). ``assemble`` builds the Plan of an allocation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sepconv_cli import planner
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.core.records import Excluded, Report
from sepconv_cli.core.weights import ModelHandle
from sepconv_cli.planner.allocate import Allocation, Choice, LayerChoices
from sepconv_cli.planner.targets import Metric

RANKS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 12, 16)
"""Ranks the allocator tries (each must also be below the layer's break-even rank T*)."""

LEFT_ALONE = "left alone by the allocator (converting it costs more error than its saving is worth)"


@dataclass(frozen=True)
class Offer:
    """One convertible layer: its plan at every rank worth trying (rank -> PlannedLayer)."""

    name: str
    plans: dict[int, PlannedLayer]

    @property
    def ranks(self) -> tuple[int, ...]:
        """The ranks on offer, ascending."""
        return tuple(sorted(self.plans))

    def data_free_error(self, rank: int) -> float:
        """Squared relative weight error at ``rank`` (1 - energy kept); 1.0 without weights."""
        energy = self.plans[rank].energy
        return 1.0 if energy is None else max(0.0, 1.0 - energy)


@dataclass(frozen=True)
class Offers:
    """Every convertible layer's offer (model order) and the selected convs that can't be converted."""

    layers: tuple[Offer, ...]
    skipped: tuple[Excluded, ...]
    init: str
    depthwise_bias: bool

    def names(self) -> tuple[str, ...]:
        """Names of the convertible layers, model order."""
        return tuple(o.name for o in self.layers)


def offers(report: Report, handle: ModelHandle | None, base: planner.PlanOptions,
           ranks: tuple[int, ...] = RANKS) -> Offers:
    """Plan every selected conv at each of ``ranks`` (below its break-even rank) with ``base``'s selection,
    init, BN folding and bias options; a conv no rank can convert keeps the planner's reason."""
    by_name: dict[str, dict[int, PlannedLayer]] = {}
    skipped: dict[str, Excluded] = {}
    first: Plan | None = None
    for rank in ranks:
        plan = planner.make_plan(report, handle, replace(base, rank=rank, energy=None, max_error=None,
                                                         full_rank=False))
        first = first or plan
        for layer in plan.layers:
            by_name.setdefault(layer.name, {})[rank] = layer
        for excluded in plan.skipped:
            skipped.setdefault(excluded.name, excluded)
        if not plan.layers:
            break
    order = [layer.name for layer in report.layers if layer.name in by_name]
    layers = tuple(Offer(name, by_name[name]) for name in order)
    left = tuple(e for name, e in skipped.items() if name not in by_name)
    init = first.init if first else base.init
    return Offers(layers, left, init, base.depthwise_bias)


# metric -> (cost of leaving the layer alone, cost at a rank); None when unknown
_BEFORE: dict[Metric, Callable[[PlannedLayer], float | None]] = {
    Metric.MACS: lambda p: p.macs_before,
    Metric.PARAMS: lambda p: p.params_before,
}
_AFTER: dict[Metric, Callable[[PlannedLayer], float | None]] = {
    Metric.MACS: lambda p: p.macs_after,
    Metric.PARAMS: lambda p: p.params_after,
}


@dataclass(frozen=True)
class Seconds:
    """Measured latency of one layer (seconds at batch 1): ``original`` and the fastest form per rank."""

    original: float
    by_rank: dict[int, float]


def _layer_costs(offer: Offer, metric: Metric, seconds: Mapping[str, Seconds] | None
                 ) -> tuple[float, dict[int, float]] | None:
    """(cost left alone, cost per rank) of one layer for ``metric``; None when it cannot be costed."""
    if metric is Metric.LATENCY:
        timing = (seconds or {}).get(offer.name)
        if timing is None:
            return None
        return timing.original, {r: timing.by_rank[r] for r in offer.ranks if r in timing.by_rank}
    any_plan = offer.plans[offer.ranks[0]]
    before = _BEFORE[metric](any_plan)
    after = {r: _AFTER[metric](p) for r, p in offer.plans.items()}
    if before is None or any(v is None for v in after.values()):
        return None
    return float(before), {r: float(v) for r, v in after.items() if v is not None}


def choices(found: Offers, metric: Metric, errors: Mapping[str, Mapping[int, float]] | None = None,
            seconds: Mapping[str, Seconds] | None = None) -> tuple[list[LayerChoices], float]:
    """The allocator's options for every layer that can be costed, and the summed original cost of those
    layers (subtract it from the model total to get the fixed part). ``errors``: calibrated squared
    errors per layer and rank (a layer missing there falls back to its data-free error)."""
    out: list[LayerChoices] = []
    total = 0.0
    for offer in found.layers:
        costed = _layer_costs(offer, metric, seconds)
        if costed is None:
            continue
        before, after = costed
        curve = (errors or {}).get(offer.name, {})
        options = [Choice(None, before, 0.0)] + [
            Choice(rank, cost, float(curve.get(rank, offer.data_free_error(rank)))) for rank, cost in after.items()]
        out.append(LayerChoices(offer.name, tuple(options)))
        total += before
    return out, total


def assemble(found: Offers, allocation: Allocation, reason: str = LEFT_ALONE) -> Plan:
    """The Plan of ``allocation``: chosen layers at their ranks (model order), the rest skipped with ``reason``."""
    layers = tuple(o.plans[allocation.ranks[o.name]] for o in found.layers if o.name in allocation.ranks)
    alone = tuple(Excluded(o.name, reason) for o in found.layers if o.name not in allocation.ranks)
    return Plan(layers=layers, skipped=found.skipped + alone, init=found.init, depthwise_bias=found.depthwise_bias)
