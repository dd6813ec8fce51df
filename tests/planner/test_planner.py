"""Candidates and plans built from hand-made reports and an in-test weights handle."""

from __future__ import annotations

import numpy as np
import pytest
from repo_paths import REPO

from sepconv_cli import planner
from sepconv_cli.core.decompose import fold_batchnorm, spectrum
from sepconv_cli.core.records import ConvSpec, Layer, ModelInfo, Report
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
from sepconv_cli.errors import PlanError, UsageError
from sepconv_cli.planner import (
    CandidateOptions,
    PlanOptions,
    RankBy,
    find_candidates,
    make_plan,
)
from sepconv_cli.planner import rules as planner_rules

SEED_VGG = [("conv1", 3, 64, 32), ("conv2", 64, 64, 32), ("conv3", 64, 128, 16),
            ("conv4", 128, 128, 16), ("conv5", 128, 256, 8), ("conv6", 256, 256, 8)]


class Handle:
    """Weights by layer name, as a loader's handle gives them."""

    def __init__(self, table: dict[str, ConvWeights]):
        self.table = table

    def conv_weights(self, name: str):
        return self.table.get(name)


def conv_layer(name, cin, cout, size=8, k=3, groups=1, bias=True, **extra) -> Layer:
    spec = ConvSpec(in_channels=cin, out_channels=cout, kernel=(k, k), stride=(1, 1), dilation=(1, 1),
                    groups=groups, has_bias=bias)
    shape_in = (1, cin, size, size) if size else None
    shape_out = (1, cout, size, size) if size else None
    return Layer(name=name, op="Conv", input_shapes=(shape_in,), output_shapes=(shape_out,),
                 params=cout * (cin // groups) * k * k + (cout if bias else 0), conv=spec, **extra)


def report_of(*layers: Layer) -> Report:
    return Report(model=ModelInfo(path="model.onnx", format="onnx"), layers=tuple(layers),
                  params=sum(layer.params for layer in layers))


def seed_vgg() -> Report:
    return report_of(*(conv_layer(n, a, b, size) for n, a, b, size in SEED_VGG))


def separable_kernel(cout, cin, rank, seed=0, k=3) -> np.ndarray:
    """W[o, i] = sum_t P_t[o, i] * D_t[i]: every channel slice has rank ``rank``."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(rank, cout, cin))
    d = rng.normal(size=(rank, cin, k, k))
    return np.einsum("toi,tikl->oikl", p, d)


def test_seed_vgg_candidates_without_weights():
    result = find_candidates(seed_vgg(), None, CandidateOptions())
    by_name = {c.name: c for c in result.candidates}
    assert [by_name[n].params_separable for n, *_ in SEED_VGG] == [283, 4_736, 8_896, 17_664, 34_176, 68_096]
    assert by_name["conv1"].params == 1_792
    assert by_name["conv1"].macs == 64 * 1024 * 3 * 9
    assert by_name["conv1"].macs_separable == 3 * 1024 * 9 + 64 * 1024 * 3
    assert all(c.energy_t1 is None and c.rank is None and c.risk is None for c in result.candidates)
    assert all(c.convertible and c.reason == planner.NO_WEIGHTS for c in result.candidates)
    assert result.excluded == () and result.energy_target == 0.9
    saved = [c.macs_saved for c in result.candidates]
    assert saved == sorted(saved, reverse=True)


def test_depthwise_bias_counts_one_bias_per_depthwise_channel():
    result = find_candidates(seed_vgg(), None, CandidateOptions(depthwise_bias=True))
    assert {c.name: c.params_separable for c in result.candidates}["conv1"] == 286


def test_every_non_candidate_conv_has_a_reason():
    report = report_of(
        conv_layer("pointwise", 16, 32, k=1),
        conv_layer("depthwise", 16, 16, groups=16),
        conv_layer("single_output", 16, 1),  # T* = 9*1/(9+1) = 0.9
        conv_layer("regular", 16, 32),
    )
    result = find_candidates(report, None, CandidateOptions())
    assert [c.name for c in result.candidates] == ["regular"]
    assert {e.name: e.reason for e in result.excluded} == {
        "pointwise": "1x1 kernel: nothing to separate",
        "depthwise": "already depthwise",
        "single_output": "T=1 not below break-even T*=0.9",
    }


def test_non_constant_weight_is_flagged_not_convertible():
    report = report_of(conv_layer("fed", 8, 16, weight_constant=False))
    handle = Handle({"fed": ConvWeights(np.ones((16, 8, 3, 3)))})
    (candidate,) = find_candidates(report, handle, CandidateOptions()).candidates
    assert not candidate.convertible
    assert "not a constant" in candidate.reason
    assert candidate.energy_t1 is None
    plan = make_plan(report, handle, PlanOptions())
    assert plan.layers == () and "not a constant" in plan.skipped[0].reason


def test_unknown_shapes_give_params_but_no_macs():
    (candidate,) = find_candidates(report_of(conv_layer("c", 8, 16, size=0, macs=None)), None, CandidateOptions()).candidates
    assert candidate.macs is None and candidate.macs_separable is None and candidate.macs_saved == 0
    assert candidate.params_separable == 8 * 9 + 16 * 8 + 16


def test_energy_rank_and_risk_from_trained_like_kernels():
    report = report_of(conv_layer("rank1", 8, 32), conv_layer("rank2", 8, 32), conv_layer("noise", 8, 32))
    handle = Handle({
        "rank1": ConvWeights(separable_kernel(32, 8, 1)),
        "rank2": ConvWeights(separable_kernel(32, 8, 2, seed=1)),
        "noise": ConvWeights(np.random.default_rng(2).normal(size=(32, 8, 3, 3))),
    })
    by_name = {c.name: c for c in find_candidates(report, handle, CandidateOptions(energy=0.999)).candidates}
    assert by_name["rank1"].energy_t1 == pytest.approx(1.0) and by_name["rank1"].rank == 1
    assert by_name["rank1"].risk == "low"
    assert by_name["rank2"].rank == 2 and by_name["rank2"].energy_at_rank == pytest.approx(1.0)
    assert by_name["rank2"].params_at_rank == 8 * 2 * 9 + 32 * 16 + 32
    assert by_name["rank2"].macs_at_rank == 64 * (8 * 2 * 9 + 32 * 16)
    noise = by_name["noise"]
    expected = spectrum(handle.table["noise"].weight, 1).energy(1)
    assert noise.energy_t1 == pytest.approx(expected)
    assert noise.risk == ("medium" if expected >= 0.6 else "high")
    # 99.9% of a random kernel needs nearly full rank: past break-even T* = 9*32/41.
    assert noise.rank is None and "break-even" in noise.reason and noise.convertible


def test_risk_words_follow_the_thresholds():
    assert [planner.plan._risk(e) for e in (1.0, 0.9, 0.89, 0.6, 0.59, None)] == [
        "low", "low", "medium", "medium", "high", None]


def _bn(channels, seed=3):
    rng = np.random.default_rng(seed)
    return BatchNormParams("bn1", rng.uniform(0.1, 3.0, channels), rng.normal(size=channels),
                           rng.normal(size=channels), rng.uniform(0.5, 2.0, channels), 1e-5)


def test_energy_is_read_from_the_bn_folded_kernel():
    layer = conv_layer("conv", 4, 8, bn_follows="bn1", bias=False)
    bn_row = Layer(name="bn1", op="BatchNormalization", params=16, buffers=16)
    weights = ConvWeights(np.random.default_rng(4).normal(size=(8, 4, 3, 3)), None, _bn(8))
    report, handle = report_of(layer, bn_row), Handle({"conv": weights})
    folded = find_candidates(report, handle, CandidateOptions()).candidates[0]
    plain = find_candidates(report, handle, CandidateOptions(fold_bn=False)).candidates[0]
    assert folded.bn_folded == "bn1" and plain.bn_folded is None
    assert folded.energy_t1 == pytest.approx(spectrum(fold_batchnorm(weights, 1)[0], 1).energy(1))
    assert plain.energy_t1 == pytest.approx(spectrum(weights.weight, 1).energy(1))
    assert folded.energy_t1 != pytest.approx(plain.energy_t1)
    plan = make_plan(report, handle, PlanOptions(rank=1))
    (planned,) = plan.layers
    # The BN's gamma and beta leave with it; the folded conv gains a bias on its pointwise part.
    assert planned.bn_folded == "bn1"
    assert planned.params_before == 8 * 4 * 9 + 16
    assert planned.params_after == 4 * 9 + 8 * 4 + 8


def test_rank_by_orders():
    report = report_of(conv_layer("wide", 64, 64, size=4), conv_layer("big_map", 16, 16, size=64),
                       conv_layer("exact", 8, 16, size=8))
    handle = Handle({"wide": ConvWeights(np.random.default_rng(5).normal(size=(64, 64, 3, 3))),
                     "big_map": ConvWeights(np.random.default_rng(6).normal(size=(16, 16, 3, 3))),
                     "exact": ConvWeights(separable_kernel(16, 8, 1))})
    order = {by: [c.name for c in find_candidates(report, handle, CandidateOptions(rank_by=by)).candidates]
             for by in RankBy}
    assert order[RankBy.MACS] == ["big_map", "wide", "exact"]
    assert order[RankBy.PARAMS] == ["wide", "big_map", "exact"]
    assert order[RankBy.ENERGY][0] == "exact"
    by_text = find_candidates(report, handle, CandidateOptions(rank_by="params")).candidates
    assert [c.name for c in by_text] == order[RankBy.PARAMS]


def test_every_choice_enum_is_mapped():
    assert set(planner.plan._SORT_KEYS) == set(RankBy)
    assert set(planner_rules._CHOOSERS) == set(planner_rules.RuleKind)
    assert {rule.kind for rule in (planner_rules.RankRule(k, 1) for k in planner_rules.RuleKind)} == set(
        planner_rules.RuleKind)
    assert all(planner_rules.RankRule(k, 0.5).describe() for k in planner_rules.RuleKind)


def test_seed_vgg_plan_at_rank_one_with_random_init():
    plan = make_plan(seed_vgg(), None, PlanOptions(rank=1, init="random"))
    assert [p.params_after for p in plan.layers] == [283, 4_736, 8_896, 17_664, 34_176, 68_096]
    assert plan.params_saved == (1_186_378 - 40_970) - (174_821 - 40_970)
    assert all(p.energy is None and p.weight_error is None for p in plan.layers)
    assert plan.init == "random" and plan.skipped == ()
    assert plan.macs_saved == sum(p.macs_before - p.macs_after for p in plan.layers)


def test_svd_plan_without_weights_skips_with_reason():
    plan = make_plan(seed_vgg(), None, PlanOptions(rank=1))
    assert plan.layers == ()
    assert {e.reason for e in plan.skipped} == {"no weights to decompose (use --init random)"}


def _weighted_vgg():
    report = seed_vgg()
    table = {n: ConvWeights(separable_kernel(b, a, 1 + i % 3, seed=i)) for i, (n, a, b, _) in enumerate(SEED_VGG)}
    return report, Handle(table)


def test_energy_and_error_rules_choose_per_layer_ranks():
    report, handle = _weighted_vgg()
    by_energy = make_plan(report, handle, PlanOptions(energy=0.99999))
    assert [p.rank for p in by_energy.layers] == [1, 2, 3, 1, 2, 3]
    assert all(p.energy == pytest.approx(1.0) and p.weight_error < 1e-4 for p in by_energy.layers)
    default = make_plan(report, handle, PlanOptions())
    assert all(p.energy >= 0.9 for p in default.layers)
    by_error = make_plan(report, handle, PlanOptions(max_error=1e-6))
    assert [p.rank for p in by_error.layers] == [1, 2, 3, 1, 2, 3]


def test_selection_globs_top_and_min_saving():
    report, handle = _weighted_vgg()
    plan = make_plan(report, handle, PlanOptions(select=("conv[1-4]",), exclude=("conv2",), rank=1))
    assert [p.name for p in plan.layers] == ["conv1", "conv3", "conv4"]
    assert [(e.name, e.reason) for e in plan.skipped] == [("conv2", "excluded by --exclude 'conv2'")]
    top = make_plan(report, handle, PlanOptions(top=2, rank=1))
    saved = {p.name: p.macs_before - p.macs_after for p in make_plan(report, handle, PlanOptions(rank=1)).layers}
    assert {p.name for p in top.layers} == set(sorted(saved, key=saved.get)[-2:])
    assert len(top.skipped) == 4 and all("--top 2" in e.reason for e in top.skipped)
    # conv1 and conv2 at T=1 save 1 - (27 + 192)/1728 = 1 - (576 + 4096)/36864 = 87.3% of their MACs;
    # conv3 saves 1 - (576 + 8192)/73728 = 88.1%.
    picky = make_plan(report, handle, PlanOptions(rank=1, min_saving=0.88))
    assert [e.name for e in picky.skipped] == ["conv1", "conv2"]
    assert picky.skipped[0].reason == "saves 87% of its MACs, below --min-saving 88%"


def test_select_matching_nothing_is_a_plan_error():
    with pytest.raises(PlanError, match="--select 'head\\*' matches no convolution"):
        make_plan(seed_vgg(), None, PlanOptions(select=("head*",), init="random", rank=1))


def test_fixed_rank_past_break_even_is_skipped_but_full_rank_is_not():
    report = report_of(conv_layer("small", 4, 4), conv_layer("single_output", 4, 1), conv_layer("pw", 4, 8, k=1))
    handle = Handle({"small": ConvWeights(np.ones((4, 4, 3, 3))), "single_output": ConvWeights(np.ones((1, 4, 3, 3))),
                     "pw": ConvWeights(np.ones((8, 4, 1, 1)))})
    fixed = make_plan(report, handle, PlanOptions(rank=3))  # T* = 36/13 = 2.77
    assert fixed.layers == ()
    assert dict((e.name, e.reason) for e in fixed.skipped)["small"] == (
        "T=3 for --rank 3 is not below break-even T*=2.77")
    full = make_plan(report, handle, PlanOptions(full_rank=True))
    assert [(p.name, p.rank) for p in full.layers] == [("small", 4), ("single_output", 1)]
    assert all(p.weight_error == 0.0 for p in full.layers)
    assert [(e.name, e.reason) for e in full.skipped] == [("pw", "1x1 kernel: nothing to separate")]


@pytest.mark.parametrize("options", [
    PlanOptions(rank=1, energy=0.9), PlanOptions(full_rank=True, max_error=0.1), PlanOptions(rank=0),
    PlanOptions(energy=1.5), PlanOptions(max_error=-0.1), PlanOptions(top=0), PlanOptions(min_saving=1.0),
    PlanOptions(init="xavier"),
])
def test_bad_plan_options_are_usage_errors(options):
    with pytest.raises(UsageError):
        make_plan(seed_vgg(), None, options)


def test_whole_model_figures_with_batchnorm_match_what_convert_gives():
    """The trained digits sample (every conv followed by BN): analyze's 'every candidate at T=1' figure
    counts the BN params leaving and the bias folding leaves, so it equals the converted model's 174,821."""
    import os

    from sepconv_cli.backends.registry import load
    from sepconv_cli.render.views import summary

    path = os.path.join(REPO, "samples", "digits_vgg.onnx")
    loaded = load(path)
    report = find_candidates(loaded.report, loaded.handle, CandidateOptions())
    assert report.params == 1_188_170
    assert summary(report)[0].params == 174_821
    first = report.layer("/block1/conv1/Conv")
    block1 = next(c for c in report.candidates if c.name == first.name)
    assert (block1.params, block1.params_separable) == (3 * 64 * 9 + 64 + 2 * 64, 3 * 9 + 3 * 64 + 64)
    plan = make_plan(loaded.report, loaded.handle, PlanOptions(rank=1))
    assert loaded.report.params - plan.params_saved == 174_821
