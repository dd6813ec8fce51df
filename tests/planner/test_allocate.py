"""The budget allocator: exact on small problems (checked by brute force), feasible whenever a plan is,
never dominated, and consistent between its budget and error forms."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepconv_cli.planner.allocate import Choice, Front, LayerChoices, allocate


def _layer(name: str, original: int, options: list[tuple[int, int, float]]) -> LayerChoices:
    """A layer left alone at cost ``original``, or converted at (rank, cost, error)."""
    return LayerChoices(name, (Choice(None, original, 0.0),) + tuple(Choice(r, c, e) for r, c, e in options))


@st.composite
def problems(draw) -> list[LayerChoices]:
    layers = []
    for i in range(draw(st.integers(1, 5))):
        original = draw(st.integers(10, 1000))
        options = [(r, draw(st.integers(0, 1200)), draw(st.floats(0, 1, allow_nan=False)))
                   for r in range(1, draw(st.integers(1, 4)) + 1)]
        layers.append(_layer(f"l{i}", original, options))
    return layers


def _plans(layers: list[LayerChoices]):
    """Every combination: (ranks, cost, error)."""
    for combo in itertools.product(*(layer.choices for layer in layers)):
        ranks = {layer.name: c.rank for layer, c in zip(layers, combo) if c.rank is not None}
        yield ranks, sum(c.cost for c in combo), sum(c.error * layer.weight for layer, c in zip(layers, combo))


@settings(max_examples=150, deadline=None)
@given(problems(), st.integers(0, 5000))
def test_budget_met_exactly_when_feasible_and_optimal(layers, budget):
    plans = list(_plans(layers))
    feasible = [p for p in plans if p[1] <= budget]
    found = allocate(layers, budget)
    if not feasible:
        assert found is None
        return
    assert found is not None and found.cost <= budget
    assert found.error == pytest.approx(min(p[2] for p in feasible), abs=1e-9)
    # the reported totals are those of the ranks it returns
    match = [p for p in plans if p[0] == found.ranks]
    assert any(p[1] == pytest.approx(found.cost) and p[2] == pytest.approx(found.error) for p in match)


@settings(max_examples=150, deadline=None)
@given(problems(), st.integers(0, 5000))
def test_never_dominated(layers, budget):
    found = allocate(layers, budget)
    if found is None:
        return
    for _, cost, error in _plans(layers):
        cheaper_or_equal, better = cost <= found.cost, error < found.error - 1e-12
        assert not (cheaper_or_equal and better)
        assert not (cost < found.cost and error <= found.error - 1e-12)


@settings(max_examples=100, deadline=None)
@given(problems(), st.floats(0, 3, allow_nan=False))
def test_error_limit_gives_the_cheapest_plan_within_it(layers, limit):
    found = Front(layers).within_error(limit)
    within = [p for p in _plans(layers) if p[2] <= limit]
    assert found.error <= limit
    assert found.cost == pytest.approx(min(p[1] for p in within))


def test_front_is_strictly_monotone_and_spans_both_ends():
    layers = [_layer("a", 100, [(1, 20, 0.5), (2, 40, 0.2), (3, 120, 0.1)]),
              _layer("b", 50, [(1, 10, 0.3), (2, 30, 0.05)])]
    front = Front(layers).frontier()
    costs = [a.cost for a in front]
    errors = [a.error for a in front]
    assert costs == sorted(costs) and all(x > y for x, y in zip(errors, errors[1:]))
    assert front[0].cost == 30 and front[0].ranks == {"a": 1, "b": 1}
    assert front[-1].error == 0 and front[-1].ranks == {}
    # rank 3 of "a" costs more than leaving it alone: never chosen
    assert all(a.ranks.get("a") != 3 for a in front)


def test_fixed_cost_counts_against_the_budget():
    layers = [_layer("a", 100, [(1, 20, 0.5)])]
    assert allocate(layers, 119, fixed=100) is None
    assert allocate(layers, 120, fixed=100).ranks == {"a": 1}
    assert allocate(layers, 200, fixed=100).ranks == {}


def test_weights_scale_errors():
    layers = [LayerChoices("a", (Choice(None, 10, 0), Choice(1, 1, 0.1)), weight=10.0),
              LayerChoices("b", (Choice(None, 10, 0), Choice(1, 1, 0.5)))]
    assert allocate(layers, 11 + 1).ranks == {"b": 1}


def test_thinned_front_stays_feasible_and_monotone():
    layers = [_layer(f"l{i}", 1000 + i, [(r, 1000 // (r + 1) + i, 1.0 / (r + i + 1)) for r in range(1, 6)])
              for i in range(40)]
    front = Front(layers, cap=64)
    assert len(front.points) <= 64
    cheapest = front.cheapest()
    assert cheapest.cost == pytest.approx(sum(min(c.cost for c in layer.choices) for layer in layers))
    assert front.within_budget(cheapest.cost - 1) is None
    plans = front.frontier()
    assert all(x.error > y.error for x, y in zip(plans, plans[1:]))


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="rank None"):
        Front([LayerChoices("a", (Choice(1, 1, 0.1),))])
    with pytest.raises(ValueError, match="non-negative"):
        Front([LayerChoices("a", (Choice(None, 1, 0), Choice(1, -1, 0.1)))])
