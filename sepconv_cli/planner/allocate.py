"""Budget allocation across layers: which convolutions to convert, at which rank (pure, no I/O).

Each layer offers choices ``(rank, cost, error)``: ``rank=None`` leaves it alone (its original cost, no error),
a rank T converts it (cost at T: MACs, params or measured seconds; predicted error at T: a squared relative
output error, calibrated or from kernel energy). A plan picks one choice per layer. We minimise the summed
weighted error subject to ``fixed + sum(cost) <= budget`` (a multiple-choice knapsack), or the summed cost
subject to ``sum(error) <= limit``.

The exact Pareto front of (total cost, total error) is built by merging layers one at a time and dropping
dominated points, so every answer is a front point: no other plan is both cheaper and more accurate, and a
budget is met whenever any plan meets it. Fronts of very large problems are thinned to ``FRONT_CAP``
points per merge (thinning keeps the cheapest, the most accurate and evenly spaced points between), which
keeps the answer feasible and undominated among the plans considered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FRONT_CAP = 4096
"""Most front points kept after each merge (beyond it, evenly thinned by cost)."""


@dataclass(frozen=True)
class Choice:
    """One option for a layer: ``rank`` (None = not converted), its ``cost`` (MACs, params or seconds, the
    same unit for every layer) and its predicted ``error`` (>= 0, additive across layers)."""

    rank: int | None
    cost: float
    error: float


@dataclass(frozen=True)
class LayerChoices:
    """A layer's options; they must include ``rank=None`` (leave it alone). ``weight`` scales its error."""

    name: str
    choices: tuple[Choice, ...]
    weight: float = 1.0

    def original(self) -> Choice:
        """The choice that leaves the layer alone."""
        return next(c for c in self.choices if c.rank is None)


@dataclass(frozen=True)
class Allocation:
    """A plan: the rank per converted layer, its total cost (``fixed`` included) and weighted error."""

    ranks: dict[str, int]
    cost: float
    error: float

    def converted(self) -> int:
        """Number of layers converted."""
        return len(self.ranks)


@dataclass(frozen=True)
class _Point:
    """A front point: total cost, total error, and how it was built (index of the parent point in the
    previous front, index of this layer's choice)."""

    cost: float
    error: float
    parent: int
    choice: int


def _useful(layer: LayerChoices) -> list[tuple[int, Choice]]:
    """A layer's choices without those dominated within the layer (never both costlier and worse)."""
    indexed = sorted(enumerate(layer.choices), key=lambda ic: (ic[1].cost, ic[1].error * layer.weight))
    kept: list[tuple[int, Choice]] = []
    for index, choice in indexed:
        if not kept or choice.error * layer.weight < kept[-1][1].error * layer.weight:
            kept.append((index, choice))
    return kept


def _prune(points: list[_Point]) -> list[_Point]:
    """Undominated points, cheapest first (error strictly falls as cost rises)."""
    points.sort(key=lambda p: (p.cost, p.error))
    kept: list[_Point] = []
    for point in points:
        if not kept or point.error < kept[-1].error:
            kept.append(point)
    return kept


def _thin(points: list[_Point], cap: int) -> list[_Point]:
    """At most ``cap`` points: both ends and points evenly spread by index between them."""
    if len(points) <= cap:
        return points
    step = (len(points) - 1) / (cap - 1)
    return [points[round(i * step)] for i in range(cap)]


class Front:
    """The Pareto front of whole-model (cost, error) over every combination of layer choices."""

    def __init__(self, layers: Sequence[LayerChoices], fixed: float = 0.0, cap: int = FRONT_CAP):
        """``fixed``: cost of everything that is not a candidate layer (added to every total)."""
        if cap < 2:
            raise ValueError("the front needs room for at least 2 points")
        self.layers = list(layers)
        for layer in self.layers:
            if not any(c.rank is None for c in layer.choices):
                raise ValueError(f"{layer.name}: choices must include leaving the layer alone (rank None)")
            if any(c.error < 0 or c.cost < 0 for c in layer.choices):
                raise ValueError(f"{layer.name}: costs and errors must be non-negative")
        self.history: list[list[_Point]] = []
        front = [_Point(float(fixed), 0.0, -1, -1)]
        for layer in self.layers:
            options = _useful(layer)
            merged = [_Point(p.cost + c.cost, p.error + c.error * layer.weight, i, j)
                      for i, p in enumerate(front) for j, c in options]
            front = _thin(_prune(merged), cap)
            self.history.append(front)
        self.points = front

    def _allocation(self, index: int) -> Allocation:
        """Walk the back pointers of final point ``index`` into a plan."""
        point = self.points[index]
        ranks: dict[str, int] = {}
        at = index
        for layer, front in zip(reversed(self.layers), reversed(self.history)):
            step = front[at]
            rank = layer.choices[step.choice].rank
            if rank is not None:
                ranks[layer.name] = rank
            at = step.parent
        return Allocation(ranks=dict(sorted(ranks.items())), cost=point.cost, error=point.error)

    def cheapest(self) -> Allocation:
        """The plan of least cost."""
        return self._allocation(0)

    def within_budget(self, budget: float) -> Allocation | None:
        """Least error with cost <= ``budget`` (None when even the cheapest plan costs more)."""
        best = None
        for index, point in enumerate(self.points):
            if point.cost <= budget:
                best = index
            else:
                break
        return None if best is None else self._allocation(best)

    def within_error(self, limit: float) -> Allocation:
        """Least cost with error <= ``limit`` (leaving every layer alone always qualifies)."""
        for index, point in enumerate(self.points):
            if point.error <= limit:
                return self._allocation(index)
        return self._allocation(len(self.points) - 1)

    def frontier(self) -> list[Allocation]:
        """Every front point as a plan, cheapest first."""
        return [self._allocation(i) for i in range(len(self.points))]


def allocate(layers: Sequence[LayerChoices], budget: float, fixed: float = 0.0) -> Allocation | None:
    """Least-error plan whose total cost (``fixed`` included) is at most ``budget``; None if none is."""
    return Front(layers, fixed).within_budget(budget)
