"""Layer views (--depth / --sort / --top), shares, and the whole-model candidate summary."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_builders import VGG_PARAMS, VGG_SEPARABLE_PARAMS, small_report, vgg_report

from sepconv_cli.core.records import Layer, ModelInfo, Report
from sepconv_cli.render.views import (
    SORTERS,
    SortKey,
    ViewOptions,
    candidate_views,
    excluded_by_reason,
    layer_view,
    scope_separator,
    summary,
)

VGG_MACS = 1_769_472 + 37_748_736 + 18_874_368 + 37_748_736 + 18_874_368 + 37_748_736 + 40_960


def test_sorters_cover_every_sort_key():
    assert set(SORTERS) == set(SortKey)


def test_flat_view_is_one_row_per_layer_in_model_order():
    report = vgg_report()
    rows = layer_view(report, ViewOptions())
    assert [r.name for r in rows] == [layer.name for layer in report.layers]
    assert report.macs == VGG_MACS
    assert abs(sum(r.share for r in rows) - 1.0) < 1e-12
    conv2 = next(r for r in rows if r.name == "/block1/conv2/Conv")
    assert conv2.share == 37_748_736 / VGG_MACS


def test_sort_and_top():
    report = vgg_report()
    by_macs = layer_view(report, ViewOptions(sort=SortKey.MACS, top=3))
    assert [r.macs for r in by_macs] == [37_748_736] * 3
    # ties keep model order
    assert [r.name for r in by_macs] == ["/block1/conv2/Conv", "/block2/conv2/Conv", "/block3/conv2/Conv"]
    by_params = layer_view(report, ViewOptions(sort=SortKey.PARAMS, top=2))
    assert [r.params for r in by_params] == [256 * 256 * 9 + 256, 128 * 256 * 9 + 256]
    by_name = layer_view(report, ViewOptions(sort=SortKey.NAME))
    assert [r.name for r in by_name] == sorted(layer.name for layer in report.layers)


@pytest.mark.parametrize("sort", [SortKey.ORDER, SortKey.NAME, SortKey.MACS])
def test_top_keeps_the_heaviest_rows_in_every_order(sort):
    report = vgg_report()
    rows = layer_view(report, ViewOptions(sort=sort, top=3))
    # the three 37.7M-MAC convs, whatever the order they are shown in
    assert sorted(r.name for r in rows) == ["/block1/conv2/Conv", "/block2/conv2/Conv", "/block3/conv2/Conv"]
    if sort is SortKey.ORDER:
        assert [r.name for r in rows] == ["/block1/conv2/Conv", "/block2/conv2/Conv", "/block3/conv2/Conv"]


def test_top_by_params_keeps_the_largest_rows():
    rows = layer_view(vgg_report(), ViewOptions(top=2, sort=SortKey.PARAMS))
    assert [r.name for r in rows] == ["/block3/conv2/Conv", "/block3/conv1/Conv"]
    flat_order = layer_view(vgg_report(), ViewOptions(top=1, depth=1))
    assert [r.name for r in flat_order] == ["block3"]  # ties with block2 on MACs; more params


def test_top_limits_the_candidates_and_their_summary():
    from sepconv_cli.render.candidates import candidate_views, summary, top_candidates

    report = vgg_report()
    top = top_candidates(report, 2)
    assert [c.name for c in top] == [c.name for c in report.candidates[:2]]
    assert len(candidate_views(report, 2)) == 2
    saved = sum(c.params_saved for c in top if c.convertible)
    assert summary(report, 2)[0].params == report.params - saved
    assert summary(report, 2)[0].converted == 2
    assert top_candidates(report, None) == report.candidates


def test_depth_one_groups_by_first_scope():
    rows = layer_view(vgg_report(), ViewOptions(depth=1))
    assert [(r.name, r.level) for r in rows] == [("block1", 0), ("block2", 0), ("block3", 0),
                                                 ("/flatten/Flatten", 0), ("/dense/Gemm", 0)]
    block2 = rows[1]
    assert block2.count == 5
    assert block2.params == 64 * 128 * 9 + 128 + 128 * 128 * 9 + 128
    assert block2.macs == 18_874_368 + 37_748_736
    assert block2.op == "5 ops"
    assert layer_view(vgg_report(), ViewOptions(depth=2))[1].op == "Conv+Relu"


def test_depth_two_nests_and_sorts_siblings():
    rows = layer_view(vgg_report(), ViewOptions(depth=2, sort=SortKey.MACS, top=1))
    # the heaviest block (block2 and block3 tie on MACs: block3 has more params), then its scopes by MACs
    assert [(r.name, r.level, r.count) for r in rows] == [
        ("block3", 0, 5), ("block3/conv2", 1, 2), ("block3/conv1", 1, 2), ("/block3/pool/MaxPool", 1, 1)]
    assert rows[1].macs == 37_748_736


def test_depth_three_reaches_the_nodes():
    rows = layer_view(vgg_report(), ViewOptions(depth=3))
    assert [(r.name, r.level) for r in rows[:4]] == [("block1", 0), ("block1/conv1", 1),
                                                     ("/block1/conv1/Conv", 2), ("/block1/conv1/Relu", 2)]
    assert len([r for r in rows if r.count == 1]) == len(vgg_report().layers)


def test_a_layer_that_is_also_a_scope_sits_next_to_deeper_scopes():
    layers = (Layer("a", "Conv", macs=5, params=1, path=("a",)), Layer("a.b", "Linear", macs=7, params=2,
                                                                         path=("a", "b")))
    report = Report(ModelInfo("m", "pt2"), layers, params=3)
    assert [(r.name, r.level, r.macs) for r in layer_view(report, ViewOptions(depth=1))] == [("a", 0, 12)]
    assert [(r.name, r.level, r.macs) for r in layer_view(report, ViewOptions(depth=2))] == [
        ("a", 0, 12), ("a", 1, 5), ("a.b", 1, 7)]


def test_group_with_unknown_rows_is_marked():
    layers = (Layer("/a/x", "MatMul", macs=None, note="shape unknown: N", path=("a", "x")),
              Layer("/a/y", "Gemm", macs=10, params=3, path=("a", "y")))
    report = Report(ModelInfo("m.onnx", "onnx"), layers, params=3)
    (group, *_) = layer_view(report, ViewOptions(depth=1))
    assert (group.name, group.macs, group.unknown, group.count) == ("a", 10, 1, 2)
    only_unknown = Report(ModelInfo("m.onnx", "onnx"), layers[:1] + (Layer("/a/z", "MatMul", macs=None,
                                                                                note="shape unknown",
                                                                                path=("a", "z")),), params=0)
    assert layer_view(only_unknown, ViewOptions(depth=1))[0].macs is None


def test_scope_separator_follows_the_names():
    assert scope_separator(vgg_report()) == "/"
    torch_like = Report(ModelInfo("m", "pt2"), (Layer("layer1.0.conv1", "Conv", path=("layer1", "0", "conv1")),),
                        params=0)
    assert scope_separator(torch_like) == "."
    two = torch_like.layers + (Layer("layer1.0.conv2", "Conv", path=("layer1", "0", "conv2")),)
    rows = layer_view(Report(ModelInfo("m", "pt2"), two, params=0), ViewOptions(depth=2))
    assert [(r.name, r.level, r.count) for r in rows] == [("layer1", 0, 2), ("layer1.0", 1, 2)]


def test_summary_at_t1_reproduces_the_keras_seed_numbers():
    report = vgg_report()
    t1, at_rank = summary(report)
    # DESIGN §6: every conv separable (Keras convention) -> 174,821 params, including the dense 40,970
    assert sum(VGG_SEPARABLE_PARAMS) + 40_970 == 174_821
    assert t1.params == 174_821 and t1.converted == 6
    conv1_t1 = 3 * 1 * 32 * 32 * 9 + 64 * 32 * 32 * 3 * 1  # depthwise + pointwise MACs of the first conv, T=1
    assert report.layer("/block1/conv1/Conv").macs - conv1_t1 == next(
        c for c in report.candidates if c.name == "/block1/conv1/Conv").macs_saved
    assert t1.ratios(report)[0] == VGG_PARAMS / 174_821
    # at the energy-chosen ranks only the 5 candidates with a rank convert
    assert at_rank.converted == 5 and at_rank.label == "energy 0.9"
    saved = sum(c.params - c.params_at_rank for c in report.candidates if c.rank is not None)
    assert at_rank.params == VGG_PARAMS - saved


def test_summary_without_weights_has_only_t1():
    outcomes = summary(vgg_report(weights=False))
    assert [o.label for o in outcomes] == ["T=1"]


def test_non_convertible_candidates_do_not_count():
    report = small_report()
    (t1,) = summary(report)
    assert (t1.converted, t1.params, t1.macs) == (0, report.params, report.macs)


def test_candidate_shares_and_exclusion_groups():
    report = small_report()
    (view,) = candidate_views(report)
    assert view.macs_share_t1 == (18432 - 3200) / (18432 + 4096)
    assert view.macs_share_rank is None
    assert excluded_by_reason(report) == (("1x1 kernel: nothing to separate", ("conv_b",)),)


_paths = st.lists(st.lists(st.sampled_from("abc"), min_size=1, max_size=4), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(paths=_paths, depth=st.integers(1, 5), data=st.data())
def test_top_level_rows_sum_to_the_totals(paths, depth, data):
    macs = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 10**6)), min_size=len(paths),
                              max_size=len(paths)))
    layers = tuple(Layer(f"n{i}", "Op", params=i, macs=m, note="" if m is not None else "shape unknown",
                         path=tuple(p)) for i, (p, m) in enumerate(zip(paths, macs)))
    report = Report(ModelInfo("m", "onnx"), layers, params=sum(x.params for x in layers))
    rows = layer_view(report, ViewOptions(depth=depth))
    top = [r for r in rows if r.level == 0]
    for i, row in enumerate(rows):  # a group's shown children add up to the group
        children = []
        for later in rows[i + 1:]:
            if later.level <= row.level:
                break
            if later.level == row.level + 1:
                children.append(later)
        if children:
            assert sum(c.params for c in children) == row.params
            assert sum(c.count for c in children) == row.count
    assert sum(r.params for r in top) == report.params
    assert sum(r.macs or 0 for r in top) == report.macs
    assert sum(r.count for r in top) == len(layers)
    assert sum(r.unknown for r in top) == sum(1 for m in macs if m is None)
    assert all(r.level < depth for r in rows)


def test_share_saved_of_a_kernel_fed_at_run_time_stays_below_one(tmp_path):
    """A conv whose 16x8x3x3 kernel is a graph input (not a model param): its savings are shares of the
    model plus that kernel, never over 100%."""
    from onnx import helper
    from onnx_builders import analyse, model, vinfo, weight

    from sepconv_cli.planner import CandidateOptions, find_candidates
    from sepconv_cli.render.views import candidate_views

    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["y", "b"], ["z"], name="add")]
    m = model(nodes, [vinfo("x", [1, 8, 8, 8]), vinfo("w", [16, 8, 3, 3])], [vinfo("z", None)],
              [weight("b", [1, 16, 1, 1])])
    loaded = analyse(m, tmp_path)
    report = find_candidates(loaded.report, loaded.handle, CandidateOptions())
    (view,) = candidate_views(report)
    assert report.params == 16 and not view.cand.convertible
    assert view.params_share_t1 == view.cand.params_saved / (16 + 16 * 8 * 9) < 1.0
