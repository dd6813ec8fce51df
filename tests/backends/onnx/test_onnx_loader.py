"""The ONNX loader on the bundled VGG sample and on one hand-built graph per weight source."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import (
    analyse,
    conv_model,
    model,
    random_input,
    run_ort,
    save,
    vinfo,
    weight,
)
from repo_paths import REPO

from sepconv_cli.backends.onnx.layers import scope_path
from sepconv_cli.backends.registry import load
from sepconv_cli.errors import ShapeError, UsageError

ROOT = REPO
VGG = os.path.join(ROOT, "samples", "vgg_cifar.onnx")

# (row name, Cin, Cout, spatial side): 3x3 'same' convs of the tutorial's VGG-style CIFAR model
VGG_CONVS = [("/block1/conv1/Conv", 3, 64, 32), ("/block1/conv2/Conv", 64, 64, 32),
             ("/block2/conv1/Conv", 64, 128, 16), ("/block2/conv2/Conv", 128, 128, 16),
             ("/block3/conv1/Conv", 128, 256, 8), ("/block3/conv2/Conv", 256, 256, 8)]


@pytest.fixture(scope="module")
def vgg():
    return load(VGG)


def test_vgg_params_match_the_tutorial(vgg):
    report = vgg.report
    assert report.params == 1_186_378
    assert [report.layer(name).params for name, *_ in VGG_CONVS] == [1792, 36928, 73856, 147584, 295168, 590080]
    assert report.layer("/dense/Gemm").params == 40970
    assert sum(row.params for row in report.layers) == report.params
    assert report.weight_bytes == (("float32", 4 * 1_186_378),)
    assert report.buffers == 0 and report.warnings == () and report.uncounted == ()


def test_vgg_conv_macs_by_hand(vgg):
    assert vgg.report.layer("/block1/conv1/Conv").macs == 1 * 64 * 32 * 32 * 3 * 9 == 1_769_472
    for name, cin, cout, side in VGG_CONVS:
        assert vgg.report.layer(name).macs == cout * side * side * cin * 9
    conv_total = sum(cout * side * side * cin * 9 for _, cin, cout, side in VGG_CONVS)
    assert vgg.report.macs == conv_total + 4096 * 10
    assert vgg.report.layer("/block2/pool/MaxPool").macs == 0


def test_vgg_rows_scopes_and_model_info(vgg):
    report = vgg.report
    assert len(report.layers) == 6 * 2 + 3 + 3  # conv+relu pairs, pools, flatten/gemm/softmax
    row = report.layer("/block2/conv1/Conv")
    assert row.path == ("block2", "conv1") and row.op == "Conv"
    assert row.input_shapes[0] == (1, 64, 16, 16) and row.output_shapes == ((1, 128, 16, 16),)
    assert row.conv.kernel == (3, 3) and row.conv.pads == (1, 1, 1, 1) and row.weight_constant
    assert [(t.name, t.shape) for t in report.model.inputs] == [("input", (1, 3, 32, 32))]
    assert [(t.name, t.shape) for t in report.model.outputs] == [("probabilities", (1, 10))]
    assert report.model.format == "onnx" and report.model.file_size == os.path.getsize(VGG)


def test_vgg_runs_on_onnxruntime_with_inferred_output_shape(vgg):
    (y,) = run_ort(VGG, {"input": random_input((1, 3, 32, 32))})
    assert y.shape == vgg.report.model.outputs[0].shape
    assert np.allclose(y.sum(), 1.0, atol=1e-5)


def test_vgg_conv_weights_come_from_the_file(vgg):
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(VGG).graph.initializer}
    w = vgg.handle.conv_weights("/block3/conv2/Conv")
    assert np.array_equal(w.weight, stored["block3.conv2.weight"]) and np.array_equal(w.bias, stored["block3.conv2.bias"])
    assert w.bn is None and vgg.handle.conv_weights("/dense/Gemm") is None
    assert isinstance(vgg.native, onnx.ModelProto)


def test_scope_path():
    assert scope_path("/layer1/0/conv1/Conv") == ("layer1", "0", "conv1")
    assert scope_path("Conv_0") == ()


def test_initializer_also_listed_as_input_counts_once(tmp_path):
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])
    m = model([node], [vinfo("x", (1, 3, 8, 8)), vinfo("w", (4, 3, 3, 3)), vinfo("b", (4,))],
              [vinfo("y", (1, 4, 8, 8))], [weight("w", (4, 3, 3, 3)), weight("b", (4,))], ir_version=3, opset=8)
    report = analyse(m, tmp_path).report
    assert report.params == 4 * 3 * 9 + 4
    assert [t.name for t in report.model.inputs] == ["x"]
    assert report.layers[0].macs == 4 * 64 * 3 * 9 and report.layers[0].weight_constant


def test_constant_node_weight(tmp_path):
    w = np.arange(4 * 3 * 9, dtype=np.float32).reshape(4, 3, 3, 3)
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "w"), name="wconst"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    loaded = analyse(model(nodes, [vinfo("x", (1, 3, 5, 5))], [vinfo("y", (1, 4, 3, 3))]), tmp_path)
    assert [r.name for r in loaded.report.layers] == ["conv"]  # Constant is a weight source, not a row
    assert loaded.report.params == loaded.report.layers[0].params == 108
    assert np.array_equal(loaded.handle.conv_weights("conv").weight, w)


def test_constant_of_shape_with_constant_shape_is_a_weight(tmp_path):
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [16, 8])
    nodes = [helper.make_node("Constant", [], ["s"], value=shape, name="shape_const"),
             helper.make_node("ConstantOfShape", ["s"], ["w"], name="fill",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    m = model(nodes, [vinfo("x", (4, 16))], [vinfo("y", (4, 8))])
    report = analyse(m, tmp_path).report
    assert report.params == 16 * 8  # the int64 shape is not a param
    assert [(r.name, r.params, r.macs) for r in report.layers] == [("mm", 128, 4 * 16 * 8)]
    (y,) = run_ort(save(m, tmp_path, "run.onnx"), {"x": np.ones((4, 16), np.float32)})
    assert np.allclose(y, 8.0)


def test_shared_initializer_counts_once(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Identity", ["w"], ["w_alias"], name="alias"),
             helper.make_node("Conv", ["a", "w_alias"], ["y"], name="conv_b", pads=[1, 1, 1, 1])]
    m = model(nodes, [vinfo("x", (1, 4, 6, 6))], [vinfo("y", (1, 4, 6, 6))], [weight("w", (4, 4, 3, 3))])
    report = analyse(m, tmp_path).report
    assert report.params == 144
    assert [(r.name, r.params) for r in report.layers] == [("conv_a", 144), ("alias", 0), ("conv_b", 0)]
    assert report.layer("conv_b").weight_constant and report.layer("conv_b").macs == 4 * 36 * 4 * 9


def test_external_data_shapes_without_loading_bytes(tmp_path):
    m = conv_model((1, 8, 16, 16), (32, 8, 3, 3), pads=[1, 1, 1, 1])
    original = numpy_helper.to_array(m.graph.initializer[0])
    path = save(m, tmp_path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                size_threshold=0)
    loaded = load(path)
    assert loaded.report.params == 32 * 8 * 9 + 32
    assert loaded.report.layers[0].macs == 32 * 256 * 8 * 9
    native_w = loaded.native.graph.initializer[0]
    assert native_w.data_location == TensorProto.EXTERNAL and not native_w.raw_data  # bytes left on disk
    assert np.array_equal(loaded.handle.conv_weights("/net/conv/Conv").weight, original)


def test_batchnorm_stats_are_buffers_and_follow_the_conv(tmp_path):
    c = 6
    bn_inputs = [weight(n, (c,), i) for i, n in enumerate(["gamma", "beta", "mean"])]
    var = numpy_helper.from_array(np.abs(np.random.default_rng(9).standard_normal(c)).astype(np.float32), "var")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/stem/conv/Conv"),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"],
                              name="/stem/bn/BatchNormalization", epsilon=1e-3)]
    m = model(nodes, [vinfo("x", (1, 3, 5, 5))], [vinfo("y", (1, c, 3, 3))],
              [weight("w", (c, 3, 3, 3))] + bn_inputs + [var])
    loaded = analyse(m, tmp_path)
    report = loaded.report
    assert (report.params, report.buffers) == (c * 27 + 2 * c, 2 * c)
    bn_row = report.layer("/stem/bn/BatchNormalization")
    assert (bn_row.params, bn_row.buffers, bn_row.macs) == (2 * c, 2 * c, 0)
    assert report.layer("/stem/conv/Conv").bn_follows == "/stem/bn/BatchNormalization"
    bn = loaded.handle.conv_weights("/stem/conv/Conv").bn
    assert bn.eps == pytest.approx(1e-3) and np.array_equal(bn.var, numpy_helper.to_array(var))


def test_symbolic_batch_is_taken_as_one_then_pinned(tmp_path):
    m = conv_model(("N", 3, 8, 8), (4, 3, 3, 3), pads=[1, 1, 1, 1])
    report = analyse(m, tmp_path).report
    row = report.layers[0]
    assert row.input_shapes[0] == (1, 3, 8, 8) and row.output_shapes == ((1, 4, 8, 8),)
    assert row.macs == 4 * 64 * 3 * 9 and report.model.assumed_dims == (("N", 1),)
    assert row.conv.out_channels == 4 and not report.unknown_rows
    assert not any("--input-shape" in w for w in report.warnings)
    for pin in [(None, (2, 3, 8, 8)), ("x", (2, 3, 8, 8))]:
        pinned = analyse(m, tmp_path, pin).report
        assert pinned.layers[0].macs == 2 * 4 * 64 * 3 * 9
        assert pinned.model.outputs[0].shape == (2, 4, 8, 8)


def test_pin_errors_name_the_inputs(tmp_path):
    m = conv_model(("N", 3, 8, 8), (4, 3, 3, 3))
    with pytest.raises(UsageError, match=r"no model input named 'img'; inputs: x"):
        analyse(m, tmp_path, ("img", (1, 3, 8, 8)))
    with pytest.raises(ShapeError, match="has 4 dims"):
        analyse(m, tmp_path, (None, (1, 3, 8)))
    with pytest.raises(ShapeError, match="fixed dimension 3"):
        analyse(m, tmp_path, (None, (1, 5, 8, 8)))


def test_checker_rejection_is_a_warning_when_shapes_infer(tmp_path):
    m = conv_model((1, 3, 8, 8), (4, 3, 3, 3))  # output declared without a shape: the checker objects
    with pytest.raises(onnx.checker.ValidationError) as caught:
        onnx.checker.check_model(m)
    report = analyse(m, tmp_path).report
    assert report.warnings == (f"onnx checker: {str(caught.value).strip().splitlines()[0]}",)
    assert report.layers[0].macs == 4 * 36 * 27


def test_unnamed_pin_needs_a_single_input(tmp_path):
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    m = model([node], [vinfo("a", ("N", 4)), vinfo("b", (4, 2))], [vinfo("y", ("N", 2))])
    with pytest.raises(UsageError, match="single-input model; inputs: a, b"):
        analyse(m, tmp_path, (None, (3, 4)))
    assert analyse(m, tmp_path, ("a", (3, 4))).report.layers[0].macs == 3 * 4 * 2


def test_quantized_weights_fed_to_dequantize_are_params(tmp_path):
    q = numpy_helper.from_array(np.arange(-36, 36, dtype=np.int8).reshape(2, 4, 3, 3), "w_q")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "scale", "zero"], ["w"], name="/conv/dq"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv")]
    m = model(nodes, [vinfo("x", (1, 4, 5, 5))], [vinfo("y", (1, 2, 3, 3))], [q, scale, zero])
    report = analyse(m, tmp_path).report
    assert report.params == 72  # the int8 kernel; the rank-0 scale and zero point are literals, not weights
    assert report.layer("/conv/Conv").macs == 2 * 9 * 4 * 9
    assert dict(report.weight_bytes) == {"int8": 73, "float32": 4}


def test_scalar_literals_of_a_torch_export_are_not_params(tmp_path):
    """``y * 0.5 + 1.0``, ``/ sqrt(8)`` and GELU's constants are rank-0 Constants: the params are the
    module's 276 (conv 8*3*9+8, LayerNorm 8+8, Linear 4*8+4), as torch counts them."""
    torch = pytest.importorskip("torch")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.ln, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.LayerNorm(8), torch.nn.Linear(8, 4)

        def forward(self, x):
            y = (self.c(x) * 0.5 + 1.0).mean((2, 3))
            return torch.nn.functional.gelu(self.fc(self.ln(y) / 8 ** 0.5))

    module = Block()
    path = str(tmp_path / "block.onnx")
    torch.onnx.export(module, (torch.randn(1, 3, 8, 8),), path, dynamo=False, opset_version=17)
    scalars = [n for n in onnx.load(path).graph.node if n.op_type == "Constant"]
    assert len(scalars) >= 5
    report = load(path).report
    assert report.params == sum(p.numel() for p in module.parameters()) == 8 * 27 + 8 + 16 + 36 == 276
    assert sum(row.params for row in report.layers) == report.params
    assert dict(report.extra)["scalar_constants"] == len(scalars)


def test_unused_initializer_is_not_a_param_and_is_named(tmp_path):
    m = conv_model([1, 3, 8, 8], [8, 3, 3, 3], bias=False)
    m.graph.initializer.append(weight("junk", [10, 100]))
    report = analyse(m, tmp_path).report
    assert report.params == 8 * 3 * 9 == sum(row.params for row in report.layers)
    assert any("junk" in w and "1,000 elements" in w for w in report.warnings)


def test_weights_inside_if_branches_are_credited_to_the_if_node(tmp_path):
    """Each branch holds a 2x3x3x3 kernel initializer (54) and reads the outer 8-element bias."""
    def branch(tag, seed):
        conv = helper.make_node("Conv", ["x", f"{tag}_w"], [f"{tag}_y"], pads=[1, 1, 1, 1])
        add = helper.make_node("Add", [f"{tag}_y", "outer_b"], [f"{tag}_out"])
        return helper.make_graph([conv, add], tag, [], [vinfo(f"{tag}_out", None)],
                                 [weight(f"{tag}_w", [8, 3, 3, 3], seed)])

    cond = helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True)))
    node = helper.make_node("If", ["cond"], ["y"], name="/gate/If", then_branch=branch("then", 1),
                            else_branch=branch("else", 2))
    outer_b = weight("outer_b", [1, 8, 1, 1])
    m = model([cond, node], [vinfo("x", [1, 3, 8, 8])], [vinfo("y", None)], [outer_b])
    report = analyse(m, tmp_path).report
    assert report.params == 2 * 8 * 27 + 8
    assert report.layer("/gate/If").params == report.params
    assert [u.op for u in report.uncounted] == ["If"]
    assert report.warnings == () or not any("read by no node" in w for w in report.warnings)


@pytest.mark.parametrize("ir_version,convertible", [(8, False), (3, True)])
def test_initializer_listed_as_input_is_a_run_time_default_from_ir_4(tmp_path, ir_version, convertible):
    """From IR 4 on, an initializer that is also a graph input is a default the caller may override:
    converting it would drop that input, so the conv is flagged, not convertible. IR 3 had to list every
    initializer as an input, so there the listing means nothing."""
    from sepconv_cli.planner import CandidateOptions, find_candidates

    w, b = weight("W", [8, 4, 3, 3]), weight("B", [8], 1)
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv", pads=[1, 1, 1, 1])
    inputs = [vinfo("x", [1, 4, 8, 8]), vinfo("W", [8, 4, 3, 3]), vinfo("B", [8])]
    m = model([node], inputs, [vinfo("y", [1, 8, 8, 8])], [w, b], ir_version=ir_version,
              opset=8 if ir_version == 3 else 17)
    loaded = analyse(m, tmp_path)
    assert loaded.report.params == 8 * 4 * 9 + 8  # still the model's weights either way
    (candidate,) = find_candidates(loaded.report, loaded.handle, CandidateOptions()).candidates
    assert candidate.convertible is convertible


def test_attention_scale_constant_of_an_export_is_not_a_param(tmp_path):
    """torch's export of scaled_dot_product_attention writes the 1.0 of ``1 / sqrt(d)`` as a one-element
    Constant: the params stay the two Linear layers' 2 * (16 * 16 + 16)."""
    torch = pytest.importorskip("torch")

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.o = torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)

        def forward(self, x):
            q = self.q(x)
            return self.o(torch.nn.functional.scaled_dot_product_attention(q, q, q))

    path = str(tmp_path / "attention.onnx")
    torch.onnx.export(Attention(), (torch.randn(1, 5, 16),), path, dynamo=False, opset_version=17)
    report = load(path).report
    assert report.params == 2 * (16 * 16 + 16) == sum(row.params for row in report.layers)


def test_per_channel_quantisation_scales_are_buffers(tmp_path):
    """A QDQ kernel with one float scale per output channel: the int8 kernel is the param, the scales
    are metadata (buffers), like BatchNorm's running statistics."""
    q = numpy_helper.from_array(np.arange(-36, 36, dtype=np.int8).reshape(2, 4, 3, 3), "w_q")
    scale = numpy_helper.from_array(np.array([0.1, 0.2], np.float32), "scale")
    zero = numpy_helper.from_array(np.zeros(2, np.int8), "zero")
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "scale", "zero"], ["w"], name="/conv/dq", axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv")]
    report = analyse(model(nodes, [vinfo("x", (1, 4, 5, 5))], [vinfo("y", (1, 2, 3, 3))], [q, scale, zero]),
                     tmp_path).report
    assert (report.params, report.buffers) == (72, 2)
    assert sum(row.params for row in report.layers) == 72
