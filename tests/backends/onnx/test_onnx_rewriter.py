"""ONNX rewrite backend: exactness at full rank, naming contract, BN folding, constants, external data."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from convert_builders import OPSET, ConvCase, conv_model, vgg_cifar
from onnx import TensorProto, helper, numpy_helper

from sepconv_cli import planner
from sepconv_cli.backends.base import ConvertOptions
from sepconv_cli.backends.onnx.rewriter import BACKEND, validate_path
from sepconv_cli.backends.registry import LoadOptions, backend_for, load
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.errors import RewriteError
from sepconv_cli.pipeline.verify import compare_all

FULL_RANK_CASES = {
    "conv1d": ConvCase(kernel=(3,), spatial=(11,)),
    "conv2d": ConvCase(),
    "conv2d_no_bias": ConvCase(bias=False),
    "conv3d": ConvCase(kernel=(3, 3, 3), spatial=(5, 6, 7)),
    "groups2_stride_dilation_asym_pads": ConvCase(groups=2, attrs=dict(strides=[2, 1], dilations=[2, 1],
                                                                       pads=[0, 1, 2, 1])),
    "same_upper": ConvCase(attrs=dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "conv_transpose2d": ConvCase(transposed=True, attrs=dict(strides=[2, 2], pads=[1, 0, 0, 1],
                                                             output_padding=[1, 0])),
    "conv_transpose2d_groups": ConvCase(transposed=True, groups=2, bias=False),
    "bn_folded": ConvCase(bn=True),
    "bn_folded_no_bias": ConvCase(bn=True, bias=False),
    "bn_folded_transposed": ConvCase(bn=True, transposed=True, groups=2),
}


def _save(model: onnx.ModelProto, path, **kwargs) -> str:
    onnx.save_model(model, str(path), **kwargs)
    return str(path)


def _plan(loaded, **options) -> Plan:
    return planner.make_plan(loaded.report, loaded.handle, planner.PlanOptions(**options))


def _inputs(case: ConvCase, batch: int = 2) -> dict:
    return {"x": np.random.default_rng(1).standard_normal((batch, case.cin, *case.spatial)).astype(np.float32)}


@pytest.mark.parametrize("key", sorted(FULL_RANK_CASES))
def test_full_rank_reproduces_outputs(key, tmp_path):
    case = FULL_RANK_CASES[key]
    source = _save(conv_model(case), tmp_path / "in.onnx")
    options = LoadOptions(input_shapes=((None, (1, case.cin, *case.spatial)),))
    loaded = load(source, options)
    plan = _plan(loaded, full_rank=True)
    assert [p.name for p in plan.layers] == ["conv"]
    converted = BACKEND.rewrite(loaded, plan, ConvertOptions())
    out = _save(converted.native, tmp_path / "out.onnx")
    validate_path(out)
    onnx.checker.check_model(out, full_check=True)
    [cmp] = compare_all(BACKEND.run(source, _inputs(case)), BACKEND.run(out, _inputs(case)))
    assert cmp.rel_l2 <= 1e-5
    # Node count as planned: one conv -> two nodes, a folded BN disappears.
    before_nodes = len(loaded.native.graph.node)
    assert len(converted.native.graph.node) == before_nodes + 1 - (1 if case.bn else 0)
    assert converted.folded_bn == (("bn",) if case.bn else ())
    after = load(out, options).report
    assert loaded.report.macs - after.macs == plan.macs_saved
    assert loaded.report.params - after.params == plan.params_saved


def test_naming_contract_and_graph_interface_kept(tmp_path):
    case = ConvCase(bn=True)
    source = _save(conv_model(case), tmp_path / "in.onnx")
    loaded = load(source)
    converted = BACKEND.rewrite(loaded, _plan(loaded, rank=2), ConvertOptions())
    graph = converted.native.graph
    nodes = {n.name: n for n in graph.node}
    assert list(nodes) == ["conv/depthwise", "conv/pointwise", "relu"]
    dw, pw = nodes["conv/depthwise"], nodes["conv/pointwise"]
    assert list(dw.input) == ["x", "conv/depthwise.weight"] and list(dw.output) == ["c/depthwise"]
    assert list(pw.input) == ["c/depthwise", "conv/pointwise.weight", "conv/pointwise.bias"]
    assert list(pw.output) == ["c"] and list(nodes["relu"].input) == ["c"]
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert set(inits) == {"conv/depthwise.weight", "conv/pointwise.weight", "conv/pointwise.bias"}
    assert inits["conv/depthwise.weight"].shape == (4 * 2, 1, 3, 3)
    assert inits["conv/pointwise.weight"].shape == (6, 8, 1, 1)
    assert all(a.dtype == np.float32 for a in inits.values())
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert [o.name for o in graph.output] == ["y"]
    assert converted.native.opset_import[0].version == OPSET
    assert {p.key: p.value for p in converted.native.metadata_props} == {"origin": "test"}
    assert len(loaded.native.graph.node) == 3  # the loaded model is untouched


def test_group_attributes_and_depthwise_bias(tmp_path):
    case = FULL_RANK_CASES["groups2_stride_dilation_asym_pads"]
    loaded = load(_save(conv_model(case), tmp_path / "in.onnx"))
    converted = BACKEND.rewrite(loaded, _plan(loaded, rank=1), ConvertOptions(depthwise_bias=True))
    dw, pw = converted.native.graph.node[:2]
    dw_attrs = {a.name: helper.get_attribute_value(a) for a in dw.attribute}
    pw_attrs = {a.name: helper.get_attribute_value(a) for a in pw.attribute}
    assert dw_attrs == {"kernel_shape": [3, 3], "group": 4, "strides": [2, 1], "dilations": [2, 1],
                        "pads": [0, 1, 2, 1]}
    assert pw_attrs == {"kernel_shape": [1, 1], "group": 2}
    assert list(dw.input)[2] == "conv/depthwise.bias"


def test_bn_output_that_is_a_graph_output_keeps_its_name(tmp_path):
    model = conv_model(ConvCase(bn=True))
    del model.graph.node[-1]  # drop the Relu: the BN output becomes the graph output
    model.graph.output[0].name = "n"
    source = _save(model, tmp_path / "in.onnx")
    loaded = load(source)
    converted = BACKEND.rewrite(loaded, _plan(loaded, full_rank=True), ConvertOptions())
    out = _save(converted.native, tmp_path / "out.onnx")
    validate_path(out)
    assert [n.op_type for n in converted.native.graph.node] == ["Conv", "Conv", "Identity"]
    x = _inputs(ConvCase())
    [cmp] = compare_all(BACKEND.run(source, x), BACKEND.run(out, x))
    assert cmp.name == "n" and cmp.rel_l2 <= 1e-5


def test_no_fold_keeps_batchnorm(tmp_path):
    loaded = load(_save(conv_model(ConvCase(bn=True)), tmp_path / "in.onnx"))
    converted = BACKEND.rewrite(loaded, _plan(loaded, full_rank=True, fold_bn=False), ConvertOptions(fold_bn=False))
    assert [n.op_type for n in converted.native.graph.node] == ["Conv", "Conv", "BatchNormalization", "Relu"]
    assert converted.folded_bn == ()


def _constant_weight_model() -> onnx.ModelProto:
    model = conv_model(ConvCase(bias=False))
    weight = model.graph.initializer[0]
    del model.graph.initializer[:]
    const = helper.make_node("Constant", [], ["conv.w"], name="w_const", value=weight)
    model.graph.node.insert(0, const)
    return model


def test_constant_node_weights_are_lifted(tmp_path):
    source = _save(_constant_weight_model(), tmp_path / "in.onnx")
    loaded = load(source)
    converted = BACKEND.rewrite(loaded, _plan(loaded, full_rank=True), ConvertOptions())
    assert [n.op_type for n in converted.native.graph.node] == ["Conv", "Conv", "Relu"]
    out = _save(converted.native, tmp_path / "out.onnx")
    validate_path(out)
    x = _inputs(ConvCase())
    assert compare_all(BACKEND.run(source, x), BACKEND.run(out, x))[0].rel_l2 <= 1e-5


def test_weight_fed_as_graph_input_is_refused(tmp_path):
    model = conv_model(ConvCase(bias=False))
    weight = model.graph.initializer[0]
    del model.graph.initializer[:]
    model.graph.input.append(helper.make_tensor_value_info("conv.w", TensorProto.FLOAT, list(weight.dims)))
    loaded = load(_save(model, tmp_path / "in.onnx"))
    plan = _plan(loaded, full_rank=True)
    assert plan.layers == () and "not a constant" in plan.skipped[0].reason
    forced = Plan(layers=(PlannedLayer("conv", 1, 216, 100, None, None),))
    with pytest.raises(RewriteError, match="conv: weight 'conv.w' is a graph input"):
        BACKEND.rewrite(loaded, forced, ConvertOptions())


def test_external_data_layout_is_kept(tmp_path):
    case = ConvCase(cin=8, cout=16)
    source = _save(conv_model(case), tmp_path / "in.onnx", save_as_external_data=True,
                   all_tensors_to_one_file=True, location="in.onnx.data", size_threshold=0)
    loaded = load(source)
    converted = BACKEND.rewrite(loaded, _plan(loaded, full_rank=True), ConvertOptions())
    os.mkdir(tmp_path / "out")
    out = str(tmp_path / "out" / "m.onnx")
    BACKEND.save(converted, out)
    assert os.path.exists(out + ".data")
    reread = onnx.load(out, load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in reread.graph.initializer)
    x = _inputs(case)
    assert compare_all(BACKEND.run(source, x), BACKEND.run(out, x))[0].rel_l2 <= 1e-5


def test_random_init_keeps_structure_and_forgets_weights(tmp_path):
    source = _save(conv_model(ConvCase()), tmp_path / "in.onnx")
    loaded = load(source)
    plan = _plan(loaded, full_rank=True, init="random")
    converted = BACKEND.rewrite(loaded, plan, ConvertOptions(init="random", seed=3))
    layer = converted.plan.layers[0]
    assert layer.energy is None and layer.weight_error is None
    out = _save(converted.native, tmp_path / "out.onnx")
    x = _inputs(ConvCase())
    assert compare_all(BACKEND.run(source, x), BACKEND.run(out, x))[0].rel_l2 > 0.1


def test_seed_vgg_rank1_params(tmp_path):
    source = _save(vgg_cifar(), tmp_path / "vgg.onnx")
    loaded = load(source)
    assert loaded.report.params == 1_186_378
    plan = _plan(loaded, rank=1, fold_bn=False)
    converted = BACKEND.rewrite(loaded, plan, ConvertOptions(fold_bn=False))
    out = _save(converted.native, tmp_path / "out.onnx")
    validate_path(out)
    after = load(out).report
    # Keras SeparableConv2D per layer: Cin*9 + Cin*Cout + Cout, plus the dense 4096*10+10.
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    assert after.params == sum(ci * 9 + ci * co + co for ci, co in widths) + 40_970 == 174_821
    assert backend_for("onnx") is BACKEND


def test_saving_with_external_data_keeps_the_model_in_memory(tmp_path):
    case = ConvCase(cin=8, cout=16)
    source = _save(conv_model(case), tmp_path / "in.onnx", save_as_external_data=True, location="in.onnx.data",
                   size_threshold=0)
    loaded = load(source)
    converted = BACKEND.rewrite(loaded, _plan(loaded, rank=2), ConvertOptions())
    BACKEND.save(converted, str(tmp_path / "a.onnx"))
    assert not any(t.data_location == TensorProto.EXTERNAL for t in converted.native.graph.initializer)
    x = _inputs(case)
    assert compare_all(BACKEND.run(converted.native, x), BACKEND.run(str(tmp_path / "a.onnx"), x))[0].max_abs == 0.0
