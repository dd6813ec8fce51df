"""ONNX graphs for the convert tests, built with ``onnx.helper`` (random weights, fixed seeds)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # onnxruntime reads IR <= 13; helper.make_model defaults to the newest


@dataclass
class ConvCase:
    """One conv layer to build: geometry plus ONNX attributes (``pads``, ``auto_pad``...)."""

    cin: int = 4
    cout: int = 6
    kernel: tuple[int, ...] = (3, 3)
    spatial: tuple[int, ...] = (9, 9)
    groups: int = 1
    bias: bool = True
    transposed: bool = False
    bn: bool = False
    attrs: dict = field(default_factory=dict)


def _make(nodes, inputs, outputs, inits, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def conv_model(case: ConvCase, seed: int = 0, name: str = "conv") -> onnx.ModelProto:
    """``x -> [Conv|ConvTranspose] name -> (BatchNormalization bn) -> Relu -> y`` with random weights;
    the batch dim is symbolic (``N``)."""
    rng = np.random.default_rng(seed)
    if case.transposed:
        wshape = (case.cin, case.cout // case.groups, *case.kernel)
    else:
        wshape = (case.cout, case.cin // case.groups, *case.kernel)
    inits = [numpy_helper.from_array(rng.standard_normal(wshape).astype(np.float32), f"{name}.w")]
    conv_inputs = ["x", f"{name}.w"]
    if case.bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(case.cout).astype(np.float32), f"{name}.b"))
        conv_inputs.append(f"{name}.b")
    op = "ConvTranspose" if case.transposed else "Conv"
    nodes = [helper.make_node(op, conv_inputs, ["c"], name=name, group=case.groups, kernel_shape=list(case.kernel),
                              **case.attrs)]
    last = "c"
    if case.bn:
        for pname, values in (("scale", rng.uniform(0.5, 1.5, case.cout)), ("beta", rng.standard_normal(case.cout)),
                              ("mean", rng.standard_normal(case.cout)), ("var", rng.uniform(0.5, 2.0, case.cout))):
            inits.append(numpy_helper.from_array(values.astype(np.float32), f"bn.{pname}"))
        nodes.append(helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.beta", "bn.mean", "bn.var"],
                                      ["n"], name="bn", epsilon=1e-3))
        last = "n"
    nodes.append(helper.make_node("Relu", [last], ["y"], name="relu"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", case.cin, *case.spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _make(nodes, [x], [y], inits, "case")
    model.metadata_props.add(key="origin", value="test")
    return onnx.shape_inference.infer_shapes(model)  # gives ``y`` its declared shape


def vgg_cifar(seed: int = 0, batchnorm: bool = False) -> onnx.ModelProto:
    """The seed tutorial's VGG: 3 blocks of two 3x3 'same' convs (64/128/256), 2x2 max-pool after each,
    Flatten, Dense 10; input 1x3x32x32 (NCHW). 1,186,378 params (plus BN params when ``batchnorm``)."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev, cin = [], [], "x", 3
    for block, width in enumerate((64, 128, 256)):
        for j in range(2):
            name = f"block{block + 1}_conv{j + 1}"
            w = rng.standard_normal((width, cin, 3, 3)).astype(np.float32) * np.float32(np.sqrt(2.0 / (9 * cin)))
            inits += [numpy_helper.from_array(w, f"{name}.weight"),
                      numpy_helper.from_array(np.zeros(width, np.float32) + 0.01, f"{name}.bias")]
            nodes.append(helper.make_node("Conv", [prev, f"{name}.weight", f"{name}.bias"], [f"{name}_out"],
                                          name=name, kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            prev = f"{name}_out"
            if batchnorm:
                stats = (("scale", rng.uniform(0.5, 1.5, width)), ("beta", rng.standard_normal(width) * 0.1),
                         ("mean", rng.standard_normal(width) * 0.1), ("var", rng.uniform(0.5, 2.0, width)))
                for pname, val in stats:
                    inits.append(numpy_helper.from_array(val.astype(np.float32), f"{name}_bn.{pname}"))
                nodes.append(helper.make_node("BatchNormalization", [prev] + [f"{name}_bn.{p}" for p, _ in stats],
                                              [f"{name}_bn_out"], name=f"{name}_bn"))
                prev = f"{name}_bn_out"
            nodes.append(helper.make_node("Relu", [prev], [f"{name}_relu"], name=f"{name}_relu"))
            prev, cin = f"{name}_relu", width
        nodes.append(helper.make_node("MaxPool", [prev], [f"pool{block + 1}"], name=f"pool{block + 1}",
                                      kernel_shape=[2, 2], strides=[2, 2]))
        prev = f"pool{block + 1}"
    nodes.append(helper.make_node("Flatten", [prev], ["flat"], name="flatten"))
    inits += [numpy_helper.from_array(rng.standard_normal((4096, 10)).astype(np.float32) * 0.02, "dense.weight"),
              numpy_helper.from_array(np.zeros(10, np.float32), "dense.bias")]
    nodes.append(helper.make_node("Gemm", ["flat", "dense.weight", "dense.bias"], ["logits"], name="dense"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])
    return _make(nodes, [x], [y], inits, "vgg_cifar")
