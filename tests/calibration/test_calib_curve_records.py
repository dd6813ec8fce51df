"""Pure parts of the rank curves: walking order of layer blocks, and curve records."""

from __future__ import annotations

import numpy as np
import pytest

from sepconv_cli.calibration.curves import CurveCandidate, LayerCurve, blocks


def test_blocks_keep_overlapping_layers_together_and_cut_between_closed_ones():
    # layer 0 opens at 0 and closes at 5; layer 1 opens at 3 (inside), closes at 8; layer 2 stands alone
    events = [(5, 1, 0), (0, 0, 0), (3, 0, 1), (8, 1, 1), (10, 0, 2), (12, 1, 2)]
    assert blocks(events) == [[(0, 0, 0), (3, 0, 1), (5, 1, 0), (8, 1, 1)], [(10, 0, 2), (12, 1, 2)]]
    assert blocks([]) == []


def test_candidate_ranks_default_to_those_below_break_even():
    c = CurveCandidate("conv", np.zeros((64, 64, 3, 3)), 1)
    assert c.rank_list() == list(range(1, 8)) and c.top == 7
    assert CurveCandidate("conv", np.zeros((8, 8, 3, 3)), 1, ranks=(4, 2, 2)).rank_list() == [2, 4]
    assert c.depthwise().shape == (64 * 7, 1, 3, 3)


def test_curve_lookups():
    curve = LayerCurve("c", (1, 2), (0.5, 0.2), (0.3, 0.1), (0.25, 0.08), (True, True), (0.7, 0.9), (0.55, 0.3))
    assert curve.error(2) == 0.1 and curve.error(1, refitted=False) == 0.5
    assert curve.squared() == pytest.approx({1: 0.09, 2: 0.01})
    assert curve.squared(refitted=False) == pytest.approx({1: 0.25, 2: 0.04})
