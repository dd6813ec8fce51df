"""Parameter roles (backends/onnx/roles.py, totals.py): which constants are params, buffers or config.

One parametrized case per entry of the role table, plus the patterns exporters write: Resize scales built
by a Concat, the InstanceNormalization identities that emulate GroupNorm, a tensor shared by a param and
a BatchNorm statistic, Gather tables and indices, elementwise operands.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import analyse, model, vinfo, weight

from sepconv_cli.backends.onnx.graph import topological_order
from sepconv_cli.backends.onnx.roles import ELEMENTWISE, INPUT_ROLES, Role, input_role
from sepconv_cli.backends.onnx.totals import Kind, classify
from sepconv_cli.backends.onnx.weights import WeightCatalogue

KIND_OF_ROLE = {Role.PARAM: Kind.PARAM, Role.BUFFER: Kind.BUFFER, Role.CONFIG: Kind.CONFIG}
CASES = [(op, position, listed.role) for op, roles in INPUT_ROLES.items() for position, listed in roles.items()]


def _kinds(nodes, inits, outputs=("y",)) -> dict:
    m = model(nodes, [vinfo("x", (1, 4))], [vinfo(o, None) for o in outputs], inits)
    order = topological_order("m.onnx", m.graph)
    return classify(WeightCatalogue(m, order, "."), m, order)


@pytest.mark.parametrize(("op", "position", "role"), CASES, ids=[f"{op}-{pos}" for op, pos, _ in CASES])
def test_every_role_of_the_table(op, position, role):
    """A 6-element float constant at ``position`` of ``op`` (data from the graph input elsewhere) counts
    as the table says; quantised weights are int8, as QDQ models store them."""
    dtype = np.int8 if (op, position) == ("DequantizeLinear", 0) else np.float32
    const = numpy_helper.from_array(np.arange(1, 7, dtype=dtype), "c")
    inputs = ["x"] * (position + 1)
    inputs[position] = "c"
    node = helper.make_node(op, inputs, ["y"], name="n")
    assert _kinds([node], [const])["c"] is KIND_OF_ROLE[role]


def test_unlisted_positions_are_data_and_elementwise_operands_are_params():
    assert input_role("Conv", 0).role is Role.PARAM and input_role("Concat", 1).role is Role.PARAM
    for op in sorted(ELEMENTWISE):
        node = helper.make_node(op, ["x", "c"], ["y"], name=op)
        assert _kinds([node], [weight("c", (1, 4))])["c"] is Kind.PARAM, op


def test_resize_scales_built_by_a_concat_are_config(tmp_path):
    """The legacy exporter writes Upsample's scales as Concat(Constant [1, 1], Constant [2, 2]): the
    constants only reach Resize's scales, so they are config even though Concat reads them as data."""
    const = lambda name, values: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.float32), name))
    nodes = [const("one", [1.0, 1.0]), const("two", [2.0, 2.0]),
             helper.make_node("Concat", ["one", "two"], ["scales"], axis=0, name="/up/Concat"),
             helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest", name="/up/Resize")]
    m = model(nodes, [vinfo("x", (1, 3, 4, 4))], [vinfo("y", (1, 3, 8, 8))])
    report = analyse(m, tmp_path).report
    assert report.params == 0 and dict(report.extra)["config_constants"] == 2
    operands = report.layer("/up/Concat").operands
    assert [o.kind for o in operands] == ["config", "config"]
    assert "only feeds configuration inputs" in operands[0].role


def _group_norm(scale, bias, gamma_name="gamma"):
    """Reshape -> InstanceNormalization(scale, bias) -> Reshape -> Mul(gamma) -> Add(beta), as exported."""
    shape_in = numpy_helper.from_array(np.array([1, 2, -1], np.int64), "shape_in")
    shape_out = numpy_helper.from_array(np.array([1, 4, 3, 3], np.int64), "shape_out")
    inits = [shape_in, shape_out, numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array(bias, np.float32), "b"), weight(gamma_name, (4, 1, 1), 1),
             weight("beta", (4, 1, 1), 2)]
    nodes = [helper.make_node("Reshape", ["x", "shape_in"], ["r"], name="/gn/Reshape"),
             helper.make_node("InstanceNormalization", ["r", "s", "b"], ["i"], name="/gn/InstanceNormalization"),
             helper.make_node("Reshape", ["i", "shape_out"], ["o"], name="/gn/Reshape_1"),
             helper.make_node("Mul", ["o", gamma_name], ["m"], name="/gn/Mul"),
             helper.make_node("Add", ["m", "beta"], ["y"], name="/gn/Add")]
    return model(nodes, [vinfo("x", (1, 4, 3, 3))], [vinfo("y", (1, 4, 3, 3))], inits)


def test_groupnorm_emulation_identities_are_not_params(tmp_path):
    report = analyse(_group_norm([1.0, 1.0], [0.0, 0.0]), tmp_path).report
    assert report.params == 8  # the GroupNorm's weight and bias, 4 channels each
    operands = report.layer("/gn/InstanceNormalization").operands
    assert [o.kind for o in operands] == ["activation", "config", "config"]
    assert operands[1].role.startswith("identity of a GroupNorm emulation")


def test_a_trained_instance_norm_keeps_its_params(tmp_path):
    assert analyse(_group_norm([1.5, 1.0], [0.0, 0.0]), tmp_path).report.params == 8 + 4


def test_a_tensor_both_param_and_batchnorm_statistic_is_one_param(tmp_path):
    """Exporters merge equal initializers: here one tensor is a BN's scale and its running variance."""
    shared, bias, mean = weight("shared", (3,), 1), weight("bias", (3,), 2), weight("mean", (3,), 3)
    node = helper.make_node("BatchNormalization", ["x", "shared", "bias", "mean", "shared"], ["y"], name="bn")
    m = model([node], [vinfo("x", (1, 3, 2, 2))], [vinfo("y", (1, 3, 2, 2))], [shared, bias, mean])
    report = analyse(m, tmp_path).report
    assert (report.params, report.buffers) == (6, 3)
    assert [o.kind for o in report.layer("bn").operands] == ["activation", "param", "param", "buffer", "param"]


def test_gather_table_is_a_param_and_its_indices_config(tmp_path):
    table = weight("table", (10, 4), 1)
    ids = numpy_helper.from_array(np.array([[1, 2, 3]], np.int64), "ids")
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")
    m = model([node], [vinfo("x", (1,))], [vinfo("y", (1, 3, 4))], [table, ids])
    kinds = {o.name: o.kind for o in analyse(m, tmp_path).report.layer("embed").operands}
    assert kinds == {"table": "param", "ids": "config"}


def test_clip_bounds_and_pad_values_are_never_params(tmp_path):
    low = numpy_helper.from_array(np.array([0.0], np.float32), "low")
    high = numpy_helper.from_array(np.array([6.0], np.float32), "high")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    value = numpy_helper.from_array(np.array([0.5], np.float32), "value")
    nodes = [helper.make_node("Clip", ["x", "low", "high"], ["c"], name="clip"),
             helper.make_node("Pad", ["c", "pads", "value"], ["y"], name="pad")]
    m = model(nodes, [vinfo("x", (1, 2, 3, 3))], [vinfo("y", (1, 2, 5, 5))], [low, high, pads, value])
    report = analyse(m, tmp_path).report
    assert report.params == 0 and dict(report.extra)["config_constants"] == 3


def test_float_graph_output_constant_is_still_a_param():
    const = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    kinds = _kinds([helper.make_node("Relu", ["x"], ["y"], name="r")], [const], outputs=("y", "w"))
    assert kinds["w"] is Kind.PARAM


def test_unused_and_literal_constants():
    scalar = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    kinds = _kinds([helper.make_node("Mul", ["x", "two"], ["y"], name="m")], [scalar, weight("unused", (3,))])
    assert kinds == {"two": Kind.LITERAL, "unused": Kind.UNUSED}


def test_role_table_names_real_positions():
    """Every listed op exists in the ONNX standard and every position is within its input count."""
    from onnx import defs

    for op, roles in INPUT_ROLES.items():
        schema = defs.get_schema(op)
        last = schema.inputs[-1]
        variadic = last.option == defs.OpSchema.FormalParameterOption.Variadic
        for position in roles:
            assert variadic or position < len(schema.inputs), (op, position)
    assert TensorProto.FLOAT  # the table is about element positions, never dtypes
