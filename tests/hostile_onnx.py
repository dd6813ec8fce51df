"""Builders of hostile and malformed ONNX models for the tests (each built here, never a checked-in file).

``bounded_*``: a convertible 3x3 conv whose output is added to a hostile branch: nested Loops that
would run for ages, or a ConstantOfShape allocation bomb (its shape constant, or computed from the data
so that no static inference can see it). ``MALFORMED``: one corrupt model per kind of structural fault,
with a word the one-line error must contain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

X_SHAPE = (1, 8, 16, 16)


def _scalar(name: str, value, dtype=None) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype)))


def conv_model(weight: np.ndarray | None = None, extra: list | None = None, extra_inits: list | None = None,
               branch: str | None = None) -> onnx.ModelProto:
    """``y = Conv(x, w)`` (8 -> 16 channels, 3x3, 'same'), plus ``z = y + branch`` when ``branch`` names the
    output of the ``extra`` nodes."""
    w = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype(np.float32) if weight is None else weight
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])] + list(extra or [])
    out = "y"
    if branch is not None:
        nodes.append(helper.make_node("Add", ["y", branch], ["z"], name="join"))
        out = "z"
    elem = helper.np_dtype_to_tensor_dtype(w.dtype)
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("x", elem, list(X_SHAPE))],
                              [helper.make_tensor_value_info(out, elem, [1, 16, 16, 16])],
                              [numpy_helper.from_array(w, "w")] + list(extra_inits or []))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _loop_body(level: int, depth: int, trips: int) -> onnx.GraphProto:
    """Body of loop ``level``: adds 1 to the carried value, or runs loop ``level + 1`` ``trips`` times."""
    if level == depth:
        nodes = [_scalar(f"one{level}", 1.0, np.float32),
                 helper.make_node("Add", [f"v_in{level}", f"one{level}"], [f"v_out{level}"])]
    else:
        nodes = [_scalar(f"trip{level}", trips, np.int64), _scalar(f"c{level}", True),
                 helper.make_node("Loop", [f"trip{level}", f"c{level}", f"v_in{level}"], [f"v_out{level}"],
                                  body=_loop_body(level + 1, depth, trips))]
    nodes.append(helper.make_node("Identity", [f"cond_in{level}"], [f"cond_out{level}"]))
    inputs = [helper.make_tensor_value_info(f"i{level}", T.INT64, []),
              helper.make_tensor_value_info(f"cond_in{level}", T.BOOL, []),
              helper.make_tensor_value_info(f"v_in{level}", T.FLOAT, [])]
    outputs = [helper.make_tensor_value_info(f"cond_out{level}", T.BOOL, []),
               helper.make_tensor_value_info(f"v_out{level}", T.FLOAT, [])]
    return helper.make_graph(nodes, f"body{level}", inputs, outputs)


def bounded_loops(depth: int = 30, trips: int = 4) -> onnx.ModelProto:
    """``depth`` nested Loops of ``trips`` iterations each (4**30 additions at the defaults)."""
    nodes = [_scalar("trip0", trips, np.int64), _scalar("c0", True), _scalar("zero", 0.0, np.float32),
             helper.make_node("Loop", ["trip0", "c0", "zero"], ["acc"], body=_loop_body(1, depth, trips))]
    return conv_model(extra=nodes, branch="acc")


def bounded_bomb(side: int = 65536, from_data: bool = False) -> onnx.ModelProto:
    """A ``ConstantOfShape [side, side]`` float32 tensor summed into the output (16 GiB at the default).
    ``from_data``: the shape is computed from the input's values at run time, invisible to inference."""
    fill = numpy_helper.from_array(np.array([1.0], np.float32))
    tail = [helper.make_node("ConstantOfShape", ["bshape"], ["big"], value=fill),
            helper.make_node("ReduceSum", ["big"], ["acc"], keepdims=0)]
    if not from_data:
        shape = numpy_helper.from_array(np.array([side, side], np.int64), "bshape")
        return conv_model(extra=tail, extra_inits=[shape], branch="acc")
    inits = [numpy_helper.from_array(np.array([float(side)], np.float32), "k"),
             numpy_helper.from_array(np.array([0.0], np.float32), "zf")]
    head = [helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0), helper.make_node("Mul", ["mx", "zf"], ["m0"]),
            helper.make_node("Add", ["m0", "k"], ["m1"]), helper.make_node("Concat", ["m1", "m1"], ["m2"], axis=0),
            helper.make_node("Cast", ["m2"], ["bshape"], to=T.INT64)]
    return conv_model(extra=head + tail, extra_inits=inits, branch="acc")


def with_weight(values: Callable[[np.ndarray], None], dtype=np.float32) -> onnx.ModelProto:
    """The conv model with its weight edited in place by ``values`` (e.g. a NaN written into it)."""
    w = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype(dtype)
    values(w)
    return conv_model(weight=w)


def _edit(change: Callable[[onnx.ModelProto], None]) -> onnx.ModelProto:
    model = conv_model()
    change(model)
    return model


def _string_weight(m: onnx.ModelProto) -> None:
    w = m.graph.initializer[0]
    w.data_type = T.STRING
    w.ClearField("raw_data")
    w.string_data.extend([b"a"] * (16 * 8 * 9))


def _recursive(m: onnx.ModelProto, names: tuple[str, ...]) -> None:
    for i, name in enumerate(names):
        callee = names[(i + 1) % len(names)]
        m.functions.append(helper.make_function("local", name, ["a"], ["b"],
                                                [helper.make_node(callee, ["a"], ["b"], domain="local")],
                                                [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]))
    m.opset_import.append(helper.make_opsetid("local", 1))
    m.graph.node.append(helper.make_node(names[0], ["y"], ["z"], domain="local"))
    m.graph.output[0].name = "z"


def _foreign_domain(m: onnx.ModelProto) -> None:
    m.graph.node.append(helper.make_node("Foo", ["y"], ["z"], domain="com.evil"))
    m.graph.output[0].name = "z"


def _declared(dims: list[int], raw: bytes | None) -> Callable[[onnx.ModelProto], None]:
    def change(m: onnx.ModelProto) -> None:
        w = m.graph.initializer[0]
        del w.dims[:]
        w.dims.extend(dims)
        w.ClearField("raw_data")
        if raw is not None:
            w.raw_data = raw
        m.graph.output[0].type.tensor_type.ClearField("shape")
    return change


def _flip_name(data: bytes, name: bytes) -> bytes:
    """The serialised model with every length-prefixed occurrence of ``name`` made invalid UTF-8."""
    prefix = bytes([len(name)]) + name
    return data.replace(prefix, bytes([len(name)]) + b"\xff" + name[1:])


def _serialised(change: Callable[[onnx.ModelProto], None]) -> bytes:
    return _edit(change).SerializeToString()


def _pads_as_int(m: onnx.ModelProto) -> None:
    m.graph.node[0].attribute[0].CopyFrom(helper.make_attribute("pads", 1))


def _loop_without_body(m: onnx.ModelProto) -> None:
    m.graph.node[0].op_type = "Loop"
    m.graph.node[0].ClearField("attribute")


MALFORMED: dict[str, tuple[Callable[[], bytes], str]] = {
    "string weight": (lambda: _serialised(_string_weight), "string-typed"),
    "self-recursive function": (lambda: _serialised(lambda m: _recursive(m, ("rec",))), "calls itself"),
    "mutually recursive functions": (lambda: _serialised(lambda m: _recursive(m, ("f1", "f2"))), "calls itself"),
    "undeclared domain": (lambda: _serialised(_foreign_domain), "com.evil"),
    "duplicate initializer": (lambda: _serialised(lambda m: m.graph.initializer.append(m.graph.initializer[0])),
                              "defined twice"),
    "unknown weight dtype": (lambda: _serialised(lambda m: setattr(m.graph.initializer[0], "data_type", 99)),
                             "unknown data type 99"),
    "unknown input dtype": (lambda: _serialised(lambda m: setattr(m.graph.input[0].type.tensor_type,
                                                                  "elem_type", 77)), "unknown element type 77"),
    "invalid UTF-8 node name": (lambda: _flip_name(conv_model().SerializeToString(), b"conv"), "UTF-8"),
    "invalid UTF-8 weight name": (lambda: conv_model().SerializeToString().replace(b"\x01w", b"\x01\xfe"), "UTF-8"),
    "weight declared [2^31-1, ...]": (lambda: _serialised(_declared([2**31 - 1, 8, 3, 3], b"\0" * 100)),
                                      "2147483647x8x3x3"),
    "weight declared without data": (lambda: _serialised(_declared([2**31 - 1, 8, 3, 3], None)), "holds 0"),
    "truncated weight": (lambda: _serialised(_declared([16, 8, 3, 3], b"\0" * 16)), "holds 16"),
    "attribute of the wrong type": (lambda: _serialised(_pads_as_int), "'pads' of Conv node 'conv' is INT"),
    "required attribute missing": (lambda: _serialised(_loop_without_body), "required attribute 'body'"),
    "output produced by no node": (lambda: _serialised(lambda m: setattr(m.graph.output[0], "name", "q")),
                                   "produced by no node"),
    "no graph output": (lambda: _serialised(lambda m: m.graph.ClearField("output")), "declares no outputs"),
    "nameless required input": (lambda: _serialised(lambda m: m.graph.node[0].input.__setitem__(0, "")),
                                "required input 0"),
}
"""Kind of fault -> (serialised model, a word its error line must contain)."""
