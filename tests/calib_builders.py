"""Models for the calibration tests: a small DnCNN-like denoiser (BN, ReLU, residual output) in ONNX."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def trained_like_kernel(rng: np.random.Generator, cout: int, cin: int, k: int = 3) -> np.ndarray:
    """Per input channel two dominant rank-one components plus small noise (a concentrated spectrum)."""
    u = rng.standard_normal((cout, cin, 2)) * np.array([1.0, 0.4])
    v = rng.standard_normal((cin, 2, k * k))
    w = np.einsum("oir,irk->oik", u, v) + 0.1 * rng.standard_normal((cout, cin, k * k))
    return (w * np.sqrt(2.0 / (cin * k * k)) / 1.5).reshape(cout, cin, k, k).astype(np.float32)


def _f32(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def dncnn(depth: int = 4, channels: int = 8, hw: int = 12, seed: int = 0, batch="N") -> onnx.ModelProto:
    """``y = x - f(x)``: conv+ReLU, (depth-2) x conv+BN+ReLU, conv; convs named ``conv{i}``."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(depth):
        cin, cout = (1 if i == 0 else channels), (1 if i == depth - 1 else channels)
        name = f"conv{i}"
        inits.append(_f32(f"{name}.weight", trained_like_kernel(rng, cout, cin)))
        ins = [x, f"{name}.weight"]
        if i in (0, depth - 1):
            inits.append(_f32(f"{name}.bias", 0.01 * rng.standard_normal(cout)))
            ins.append(f"{name}.bias")
        nodes.append(helper.make_node("Conv", ins, [name], name=name, kernel_shape=[3, 3], pads=[1] * 4))
        y = name
        if 0 < i < depth - 1:
            stats = {"scale": rng.uniform(0.5, 1.5, cout), "bias": 0.1 * rng.standard_normal(cout),
                     "mean": 0.1 * rng.standard_normal(cout), "var": rng.uniform(0.5, 1.5, cout)}
            inits += [_f32(f"{name}.bn.{k}", v) for k, v in stats.items()]
            nodes.append(helper.make_node("BatchNormalization", [y] + [f"{name}.bn.{k}" for k in stats],
                                          [f"{name}.bn"], name=f"{name}.bn"))
            y = f"{name}.bn"
        if i < depth - 1:
            nodes.append(helper.make_node("Relu", [y], [f"{name}.relu"], name=f"{name}.relu"))
            y = f"{name}.relu"
        x = y
    nodes.append(helper.make_node("Sub", ["x", x], ["y"], name="residual"))
    graph = helper.make_graph(nodes, "dncnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1, hw, hw])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def smooth_images(count: int, hw: int = 12, seed: int = 1) -> np.ndarray:
    """``(count, 1, hw, hw)`` float32 images with spatially correlated content (cumulative sums)."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(np.cumsum(rng.standard_normal((count, 1, hw, hw)), axis=2), axis=3)
    return (x / np.abs(x).max(axis=(2, 3), keepdims=True)).astype(np.float32)
