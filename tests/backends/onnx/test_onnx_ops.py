"""MAC formulas of the ONNX op handlers, one hand-built graph per op, against arithmetic done here.

Where the op runs on onnxruntime, the test also runs the graph and checks the output shape the
counting used is the shape the runtime produces.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
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

from sepconv_cli.backends.onnx.ops import OP_HANDLERS, ZERO_MAC_OPS

CONV_CASES = {
    # name: (x shape, w shape, attrs, expected out shape, expected MACs by hand)
    "conv1d_stride_asym_pads": ((2, 4, 20), (6, 4, 5), dict(strides=[2], pads=[1, 2]), (2, 6, 10),
                                2 * 6 * 10 * 4 * 5),
    "conv2d_groups_dilation": ((1, 8, 17, 15), (12, 4, 3, 3),
                               dict(group=2, strides=[2, 1], dilations=[2, 1], pads=[0, 1, 2, 0]),
                               (1, 12, 8, 14), 1 * 12 * 8 * 14 * 4 * 9),
    "conv3d": ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), dict(pads=[1] * 6), (1, 3, 5, 6, 7),
               3 * 5 * 6 * 7 * 2 * 27),
    "same_upper": ((1, 3, 11, 11), (4, 3, 3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER"), (1, 4, 6, 6),
                   4 * 36 * 3 * 9),
    "same_lower": ((1, 3, 11, 11), (4, 3, 3, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER"), (1, 4, 6, 6),
                   4 * 36 * 3 * 9),
    "valid": ((1, 3, 11, 11), (4, 3, 3, 3), dict(strides=[2, 2], auto_pad="VALID"), (1, 4, 5, 5),
              4 * 25 * 3 * 9),
    "depthwise": ((1, 8, 10, 10), (8, 1, 3, 3), dict(group=8, pads=[1, 1, 1, 1]), (1, 8, 10, 10),
                  8 * 100 * 1 * 9),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_macs_match_arithmetic_and_runtime_shape(case, tmp_path):
    x_shape, w_shape, attrs, out_shape, macs = CONV_CASES[case]
    loaded = analyse(conv_model(x_shape, w_shape, **attrs), tmp_path)
    row = loaded.report.layers[0]
    assert row.macs == macs
    assert row.output_shapes == (out_shape,)
    (y,) = run_ort(save(conv_model(x_shape, w_shape, **attrs), tmp_path, "run.onnx"), {"x": random_input(x_shape)})
    assert y.shape == out_shape
    assert row.params == int(np.prod(w_shape)) + w_shape[0]


def test_conv_spec_carries_geometry(tmp_path):
    x_shape, w_shape, attrs = CONV_CASES["conv2d_groups_dilation"][:3]
    row = analyse(conv_model(x_shape, w_shape, **attrs), tmp_path).report.layers[0]
    spec = row.conv
    assert (spec.in_channels, spec.out_channels, spec.kernel, spec.groups) == (8, 12, (3, 3), 2)
    assert (spec.stride, spec.dilation, spec.pads, spec.has_bias) == ((2, 1), (2, 1), (0, 1, 2, 0), True)
    auto = analyse(conv_model((1, 3, 11, 11), (4, 3, 3, 3), bias=False, auto_pad="SAME_UPPER"), tmp_path)
    assert auto.report.layers[0].conv.padding_text == "SAME_UPPER"
    assert auto.report.layers[0].conv.pads == () and not auto.report.layers[0].conv.has_bias


@pytest.mark.parametrize("group, w_shape, out_shape, macs", [
    (1, (4, 3, 3, 3), (1, 3, 11, 11), 4 * 25 * 3 * 9),
    (2, (4, 2, 3, 3), (1, 4, 11, 11), 4 * 25 * 2 * 9),
])
def test_conv_transpose_macs_over_input_grid(group, w_shape, out_shape, macs, tmp_path):
    m = conv_model((1, 4, 5, 5), w_shape, op="ConvTranspose", strides=[2, 2], group=group)
    row = analyse(m, tmp_path).report.layers[0]
    assert row.macs == macs and row.output_shapes == (out_shape,)
    assert row.conv.transposed and row.conv.out_channels == out_shape[1] and row.conv.in_channels == 4
    (y,) = run_ort(save(m, tmp_path, "run.onnx"), {"x": random_input((1, 4, 5, 5))})
    assert y.shape == out_shape


@pytest.mark.parametrize("attrs, a_shape, b_shape", [
    (dict(transB=1), (3, 16), (8, 16)),
    (dict(transA=1), (16, 3), (16, 8)),
    (dict(), (3, 16), (16, 8)),
])
def test_gemm_macs(attrs, a_shape, b_shape, tmp_path):
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="/fc/Gemm", **attrs)
    m = model([node], [vinfo("a", a_shape)], [vinfo("y", (3, 8))], [weight("b", b_shape), weight("c", (8,))])
    row = analyse(m, tmp_path).report.layers[0]
    assert row.macs == 3 * 16 * 8
    assert row.params == 16 * 8 + 8
    (y,) = run_ort(save(m, tmp_path, "run.onnx"), {"a": random_input(a_shape)})
    assert y.shape == row.output_shapes[0] == (3, 8)


def test_batched_matmul_broadcasts(tmp_path):
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    m = model([node], [vinfo("a", (2, 1, 5, 6)), vinfo("b", (3, 6, 7))], [vinfo("y", (2, 3, 5, 7))])
    row = analyse(m, tmp_path).report.layers[0]
    assert row.macs == 2 * 3 * 5 * 6 * 7 and row.params == 0
    y, = run_ort(save(m, tmp_path, "run.onnx"), {"a": random_input((2, 1, 5, 6)), "b": random_input((3, 6, 7))})
    assert y.shape == (2, 3, 5, 7)


def test_matmul_with_weight_is_a_linear_layer(tmp_path):
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"], name="/proj/MatMul")],
              [vinfo("x", (4, 16))], [vinfo("y", (4, 8))], [weight("w", (16, 8))])
    row = analyse(m, tmp_path).report.layers[0]
    assert (row.macs, row.params) == (4 * 16 * 8, 16 * 8)


def attention_model(seq: int = 10, dim: int = 32, heads: int = 4):
    """Single-head-group self-attention written as MatMuls: Q,K,V projections, QK^T, softmax, AV."""
    hd = dim // heads
    shape = helper.make_tensor("heads_shape", 7, [4], [1, seq, heads, hd])
    nodes = []
    for p in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}0"], name=f"/attn/{p}_proj/MatMul"),
                  helper.make_node("Reshape", [f"{p}0", "heads_shape"], [f"{p}1"], name=f"/attn/{p}/Reshape")]
    nodes += [
        helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3], name="/attn/q/Transpose"),
        helper.make_node("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1], name="/attn/k/Transpose"),
        helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3], name="/attn/v/Transpose"),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="/attn/scores/MatMul"),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1, name="/attn/Softmax"),
        helper.make_node("MatMul", ["probs", "v"], ["y"], name="/attn/context/MatMul"),
    ]
    inits = [weight(f"w{p}", (dim, dim), i) for i, p in enumerate("qkv")] + [shape]
    return model(nodes, [vinfo("x", (1, seq, dim))], [vinfo("y", (1, heads, seq, hd))], inits)


def test_attention_pattern_as_matmuls(tmp_path):
    m = attention_model()
    report = analyse(m, tmp_path).report
    macs = {row.name: row.macs for row in report.layers}
    assert macs["/attn/q_proj/MatMul"] == 10 * 32 * 32
    assert macs["/attn/scores/MatMul"] == 4 * 10 * 8 * 10
    assert macs["/attn/context/MatMul"] == 4 * 10 * 10 * 8
    assert report.macs == 3 * 10 * 32 * 32 + 2 * 4 * 10 * 10 * 8
    assert report.params == 3 * 32 * 32  # the int64 reshape target is not a param
    assert report.uncounted == ()
    (y,) = run_ort(save(m, tmp_path, "run.onnx"), {"x": random_input((1, 10, 32))})
    assert y.shape == report.layer("/attn/context/MatMul").output_shapes[0]


def test_zero_mac_ops_are_explicit_entries_and_counted_zero(tmp_path):
    assert {"Relu", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape",
            "BatchNormalization", "Softmax", "Concat"} <= set(ZERO_MAC_OPS)
    assert set(ZERO_MAC_OPS) <= set(OP_HANDLERS)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "x"], ["s"], name="add"),
             helper.make_node("GlobalAveragePool", ["s"], ["y"], name="gap")]
    report = analyse(model(nodes, [vinfo("x", (1, 3, 4, 4))], [vinfo("y", (1, 3, 1, 1))]), tmp_path).report
    assert [(r.macs, r.note) for r in report.layers] == [(0, "")] * 3


def test_op_without_formula_is_listed_never_zero(tmp_path):
    assert "Hardmax" not in OP_HANDLERS
    nodes = [helper.make_node("Hardmax", ["x"], ["e"], name="hm1"),
             helper.make_node("Hardmax", ["e"], ["y"], name="hm2")]
    report = analyse(model(nodes, [vinfo("x", (4, 4))], [vinfo("y", (4, 4))]), tmp_path).report
    assert [(r.macs, r.note) for r in report.layers] == [(None, "no formula")] * 2
    assert [(u.op, u.count, u.names) for u in report.uncounted] == [("Hardmax", 2, ("hm1", "hm2"))]
    assert report.unknown_rows == ()


EINSUM_CASES = {
    # name: (equation, operand shapes, expected output shape, expected MACs by hand)
    "batched_matmul": ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], (2, 3, 5), 2 * 3 * 4 * 5),
    "implicit_output": ("ij,jk", [(3, 4), (4, 5)], (3, 5), 3 * 4 * 5),
    "linear_over_sequence": ("bnd,de->bne", [(1, 10, 32), (32, 32)], (1, 10, 32), 10 * 32 * 32),
    "ellipsis_broadcast": ("...ij,...jk->...ik", [(2, 1, 3, 4), (1, 5, 4, 6)], (2, 5, 3, 6), 2 * 5 * 3 * 4 * 6),
    "implicit_ellipsis": ("...ij,jk", [(2, 3, 4), (4, 5)], (2, 3, 5), 2 * 3 * 4 * 5),
    "size_one_broadcast": ("bij,bjk->bik", [(1, 3, 4), (6, 4, 5)], (6, 3, 5), 6 * 3 * 4 * 5),
    "outer_product": ("i,j->ij", [(3,), (4,)], (3, 4), 3 * 4),
    "elementwise_product": ("ij,ij->ij", [(3, 4), (3, 4)], (3, 4), 3 * 4),
    "dot_to_scalar": ("i,i->", [(7,), (7,)], (), 7),
    "three_operands_left_to_right": ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], (2, 5), 2 * 3 * 4 + 2 * 4 * 5),
    "transpose": ("ij->ji", [(3, 4)], (4, 3), 0),
    "trace": ("ii->", [(4, 4)], (), 0),
    "sum_one_operand": ("bij->b", [(2, 3, 4)], (2,), 0),
}


@pytest.mark.parametrize("case", sorted(EINSUM_CASES))
def test_einsum_macs_match_arithmetic_and_runtime(case, tmp_path):
    equation, shapes, out_shape, macs = EINSUM_CASES[case]
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=equation, name="ein")
    m = model([node], [vinfo(n, s) for n, s in zip(names, shapes)], [vinfo("y", None)], opset=17)
    row = analyse(m, tmp_path).report.layers[0]
    assert (row.macs, row.note) == (macs, "")
    feeds = {n: random_input(s, i) for i, (n, s) in enumerate(zip(names, shapes))}
    (y,) = run_ort(save(m, tmp_path, "run.onnx"), feeds)
    assert y.shape == out_shape
    np.testing.assert_allclose(y, np.einsum(equation, *feeds.values()), rtol=1e-4, atol=1e-4)


def test_einsum_with_dynamic_batch_counts_per_sample(tmp_path):
    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik", name="ein")
    m = model([node], [vinfo("a", ("N", 3, 4)), vinfo("b", ("N", 4, 5))], [vinfo("y", None)])
    row = analyse(m, tmp_path).report.layers[0]
    assert row.macs == 3 * 4 * 5 and row.formula == "MACs = b·i·j·k = 1·3·4·5 = 60"
    pinned = analyse(m, tmp_path, ("a", (2, 3, 4)), ("b", (2, 4, 5))).report.layers[0]
    assert pinned.macs == 2 * 3 * 4 * 5


TRANSPOSE_CASES = {
    # name: (attrs, expected out shape); x (1, 4, 5, 5), w (4, 3, 3, 3). MACs always use the INPUT grid.
    "output_padding": (dict(strides=[2, 2], output_padding=[1, 0]), (1, 3, 12, 11)),
    "output_shape": (dict(strides=[2, 2], output_shape=[10, 10]), (1, 3, 10, 10)),
    "output_shape_with_output_padding": (dict(strides=[2, 2], output_shape=[10, 11], output_padding=[1, 1]),
                                         (1, 3, 10, 11)),
    "same_upper": (dict(strides=[2, 2], auto_pad="SAME_UPPER"), (1, 3, 10, 10)),
    "same_lower": (dict(strides=[2, 2], auto_pad="SAME_LOWER"), (1, 3, 10, 10)),
    "pads_dilation": (dict(strides=[2, 1], pads=[1, 0, 0, 2], dilations=[1, 2]), (1, 3, 10, 7)),
}


@pytest.mark.parametrize("case", sorted(TRANSPOSE_CASES))
def test_conv_transpose_output_padding_shape_and_auto_pad(case, tmp_path):
    attrs, out_shape = TRANSPOSE_CASES[case]
    m = conv_model((1, 4, 5, 5), (4, 3, 3, 3), op="ConvTranspose", **attrs)
    row = analyse(m, tmp_path).report.layers[0]
    assert row.macs == 1 * 4 * 5 * 5 * 3 * 3 * 3
    assert row.output_shapes == (out_shape,)
    (y,) = run_ort(save(m, tmp_path, "run.onnx"), {"x": random_input((1, 4, 5, 5))})
    assert y.shape == out_shape


REQUIRED_OPS = {
    "formula": ("Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"),
    "zero": (
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Gelu", "Erf",
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "Exp", "Log", "MaxPool", "AveragePool",
        "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "InstanceNormalization",
        "LayerNormalization", "GroupNormalization", "Softmax", "LogSoftmax", "Concat", "Split", "Slice",
        "Gather", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Shape", "Resize", "Upsample",
        "Pad", "Identity", "Dropout", "Cast", "ReduceMean", "ReduceSum", "Expand", "Where", "Equal", "Range",
        "Tile", "ConstantOfShape",
    ),
}


def test_registry_covers_ops_of_exported_cnns():
    missing = [op for ops in REQUIRED_OPS.values() for op in ops if op not in OP_HANDLERS]
    assert missing == []
    assert set(REQUIRED_OPS["zero"]) <= set(ZERO_MAC_OPS)
    assert not set(REQUIRED_OPS["formula"]) & set(ZERO_MAC_OPS)


@pytest.mark.parametrize("case", ["batched_matmul", "implicit_output", "linear_over_sequence",
                                  "ellipsis_broadcast", "dot_to_scalar"])
def test_contracting_einsum_agrees_with_fvcore_rule(case):
    """fvcore counts an einsum as numpy's optimal-path flop count halved (one MAC = one flop there)."""
    equation, shapes, _, macs = EINSUM_CASES[case]
    path_text = np.einsum_path(equation, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    line = next(x for x in path_text.split("\n") if "optimized flop" in x.lower())
    assert int(float(line.split(":")[-1]) // 2) == macs
