"""Equivalent forms of converted layers (tiled, parallel): exact against the multiplier form, valid ONNX."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from convert_builders import IR_VERSION, OPSET, ConvCase, conv_model
from onnx import TensorProto, helper, numpy_helper

from sepconv_cli import planner
from sepconv_cli.backends.base import ConvertOptions
from sepconv_cli.backends.onnx.files import validate_path
from sepconv_cli.backends.onnx.forms import LOWERINGS, Form, lower, valid_forms
from sepconv_cli.backends.registry import LoadOptions, backend_for, load
from sepconv_cli.errors import RewriteError
from sepconv_cli.pipeline.verify import compare_all

BACKEND = backend_for("onnx")
LOWERED = (Form.TILED, Form.PARALLEL)

CASES = {
    "conv1d": ConvCase(cout=16, kernel=(5,), spatial=(11,)),
    "conv2d": ConvCase(cout=16),
    "conv2d_no_bias": ConvCase(cout=16, bias=False),
    "conv3d": ConvCase(cout=16, kernel=(3, 3, 3), spatial=(5, 6, 7)),
    "stride_dilation_asym_pads": ConvCase(cout=16, attrs=dict(strides=[2, 1], dilations=[2, 1], pads=[0, 1, 2, 1])),
    "same_upper": ConvCase(cout=16, attrs=dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "bn_folded": ConvCase(cout=16, bn=True),
    "conv_transpose2d": ConvCase(cout=16, transposed=True, attrs=dict(dilations=[2, 1], pads=[1, 0, 0, 1])),
}


def _convert(model: onnx.ModelProto, folder, rank: int | None, depthwise_bias: bool = False):
    """The real pipeline: save, load, plan at ``rank`` (None: full rank), rewrite."""
    path = str(folder / "in.onnx")
    onnx.save_model(model, path)
    loaded = load(path, LoadOptions())
    options = planner.PlanOptions(full_rank=True) if rank is None else planner.PlanOptions(rank=rank)
    plan = planner.make_plan(loaded.report, loaded.handle, options)
    assert plan.layers, "the test model must have a planned layer"
    return BACKEND.rewrite(loaded, plan, ConvertOptions(depthwise_bias=depthwise_bias)), plan


def _x(shape, batch: int = 3) -> dict:
    return {"x": np.random.default_rng(7).standard_normal((batch, *shape)).astype(np.float32)}


def _assert_same(reference: onnx.ModelProto, lowered: onnx.ModelProto, x: dict, folder) -> None:
    """``lowered`` passes the full checker and strict shape inference, and runs like ``reference``."""
    path = str(folder / "lowered.onnx")
    onnx.save_model(lowered, path)
    validate_path(path)
    for cmp in compare_all(BACKEND.run(reference, x), BACKEND.run(path, x)):
        assert cmp.rel_l2 <= 1e-6, cmp


def _randomise_depthwise_bias(model: onnx.ModelProto, name: str) -> None:
    """The rewriter zero-initialises a depthwise bias; random values make the permutation visible."""
    for k, tensor in enumerate(model.graph.initializer):
        if tensor.name == f"{name}/depthwise.bias":
            values = np.random.default_rng(3).standard_normal(numpy_helper.to_array(tensor).shape)
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))


@pytest.mark.parametrize("key", sorted(CASES))
@pytest.mark.parametrize("rank", [2, 3, None])
def test_forms_reproduce_the_multiplier_form(key, rank, tmp_path):
    case = CASES[key]
    converted, plan = _convert(conv_model(case), tmp_path, rank)
    x = _x((case.cin, *case.spatial))
    for form in LOWERED:
        lowered = lower(converted.native, {"conv": form})
        _assert_same(converted.native, lowered, x, tmp_path)


@pytest.mark.parametrize("form", LOWERED)
def test_full_rank_forms_reproduce_the_original_conv(form, tmp_path):
    """At rank min(Cout, K) the emitted structure, in every form, is the original conv."""
    case = ConvCase(cin=5, cout=7, bn=True)
    model = conv_model(case)
    converted, plan = _convert(model, tmp_path, None)
    assert plan.layers[0].rank == min(case.cout, 9)
    _assert_same(model, lower(converted.native, {"conv": form}), _x((case.cin, *case.spatial)), tmp_path)


@pytest.mark.parametrize("form", LOWERED)
def test_depthwise_bias_is_permuted_and_split(form, tmp_path):
    case = CASES["conv2d"]
    converted, _ = _convert(conv_model(case), tmp_path, 3, depthwise_bias=True)
    _randomise_depthwise_bias(converted.native, "conv")
    lowered = lower(converted.native, {"conv": form})
    _assert_same(converted.native, lowered, _x((case.cin, *case.spatial)), tmp_path)
    biases = [t.name for t in lowered.graph.initializer if t.name.endswith(".bias") and "depthwise" in t.name]
    expected = {Form.TILED: ["conv/depthwise.bias"], Form.PARALLEL: [f"conv/depthwise/t{t}.bias" for t in range(3)]}
    assert sorted(biases) == expected[form]


def test_names_structure_and_interface(tmp_path):
    case = CASES["conv2d"]
    converted, _ = _convert(conv_model(case), tmp_path, 2)
    before = converted.native
    tiled = lower(before, {"conv": Form.TILED})
    parallel = lower(before, {"conv": "parallel"})
    assert [(n.name, n.op_type) for n in tiled.graph.node] == [
        ("conv/tile", "Concat"), ("conv/depthwise", "Conv"), ("conv/pointwise", "Conv"), ("relu", "Relu")]
    assert [(n.name, n.op_type) for n in parallel.graph.node] == [
        ("conv/depthwise/t0", "Conv"), ("conv/depthwise/t1", "Conv"), ("conv/concat", "Concat"),
        ("conv/pointwise", "Conv"), ("relu", "Relu")]
    dw = tiled.graph.node[1]
    assert list(dw.input) == ["c/tile", "conv/depthwise.weight"] and list(dw.output) == ["c/depthwise"]
    assert helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == case.cin * 2
    assert list(parallel.graph.node[2].input) == ["c/depthwise/t0", "c/depthwise/t1"]
    for m in (tiled, parallel):
        assert m.graph.node[-2].output[0] == "c" and m.opset_import == before.opset_import
        assert m.graph.input == before.graph.input and m.graph.output == before.graph.output
        assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # dynamic batch kept
    inits = {t.name: numpy_helper.to_array(t) for t in parallel.graph.initializer}
    assert inits["conv/depthwise/t0.weight"].shape == (case.cin, 1, 3, 3)
    assert "conv/depthwise.weight" not in inits
    assert len(before.graph.node) == 3  # the input model is untouched


def _two_conv_model() -> onnx.ModelProto:
    """x -> conv a (4->16, 3x3, pads 1) -> Relu -> conv b (16->12, 3x3, stride 2) -> y; batch symbolic."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("a.w", (16, 4, 3, 3)), ("a.b", (16,)), ("b.w", (12, 16, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "a.w", "a.b"], ["a_out"], name="a", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["a_out"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "b.w"], ["y"], name="b", kernel_shape=[3, 3], strides=[2, 2])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12, 4, 4])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def test_two_layers_in_different_forms(tmp_path):
    converted, plan = _convert(_two_conv_model(), tmp_path, 3)
    assert [p.name for p in plan.layers] == ["a", "b"]
    for choices in ({"a": Form.TILED, "b": Form.PARALLEL}, {"a": Form.PARALLEL, "b": Form.TILED},
                    {"a": Form.TILED}, {"b": Form.MULTIPLIER}):
        _assert_same(converted.native, lower(converted.native, choices), _x((4, 10, 10), batch=2), tmp_path)


def test_grouped_pointwise_is_refused_for_tiled_and_parallel(tmp_path):
    case = ConvCase(cout=16, groups=2)
    converted, _ = _convert(conv_model(case), tmp_path, 2)
    for form in LOWERED:
        with pytest.raises(RewriteError, match="ungrouped pointwise conv"):
            lower(converted.native, {"conv": form})
    kept = lower(converted.native, {"conv": Form.MULTIPLIER})
    assert kept.graph == converted.native.graph
    assert valid_forms(2, 2) == (Form.MULTIPLIER,) and valid_forms(3, 1) == tuple(Form)


def test_rank_one_is_left_as_it_is(tmp_path):
    converted, _ = _convert(conv_model(CASES["conv2d"]), tmp_path, 1)
    for form in Form:
        assert lower(converted.native, {"conv": form}).graph == converted.native.graph
    assert valid_forms(1, 1) == (Form.MULTIPLIER,)


def test_missing_layer_and_name_clash_are_refused(tmp_path):
    converted, _ = _convert(conv_model(CASES["conv2d"]), tmp_path, 2)
    with pytest.raises(RewriteError, match="no converted layer"):
        lower(converted.native, {"relu": Form.TILED})
    with pytest.raises(RewriteError, match="unknown form 'fast'"):
        lower(converted.native, {"conv": "fast"})
    clashing = onnx.ModelProto()
    clashing.CopyFrom(converted.native)
    clashing.graph.node[-1].output[0] = "c/tile"
    with pytest.raises(RewriteError, match="'c/tile' already exists"):
        lower(clashing, {"conv": Form.TILED})


def test_external_data_weights(tmp_path):
    case = CASES["conv2d"]
    converted, _ = _convert(conv_model(case), tmp_path, 2)
    folder = tmp_path / "ext"
    folder.mkdir()
    copy = onnx.ModelProto()
    copy.CopyFrom(converted.native)  # saving as external data rewrites the proto it is given
    onnx.save_model(copy, str(folder / "conv.onnx"), save_as_external_data=True,
                    location="conv.onnx.data", size_threshold=0)
    stored = onnx.load(str(folder / "conv.onnx"), load_external_data=False)
    with pytest.raises(RewriteError, match="external data"):
        lower(stored, {"conv": Form.TILED})
    assert lower(stored, {"conv": Form.MULTIPLIER}).graph == stored.graph  # no bytes needed to keep a layer
    lowered = lower(stored, {"conv": Form.PARALLEL}, base_dir=str(folder))
    untouched = next(t for t in lowered.graph.initializer if t.name == "conv/pointwise.bias")
    assert untouched.data_location == TensorProto.EXTERNAL  # references to untouched tensors are kept
    path = str(folder / "lowered.onnx")
    onnx.save_model(lowered, path)
    validate_path(path)
    x = _x((case.cin, *case.spatial))
    [cmp] = compare_all(BACKEND.run(converted.native, x), BACKEND.run(path, x))
    assert cmp.rel_l2 <= 1e-6


def test_every_form_has_a_lowering():
    assert set(LOWERINGS) == set(Form)
