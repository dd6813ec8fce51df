"""Helpers that build small ONNX graphs with ``onnx.helper`` for the loader tests, and run them."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sepconv_cli.backends.base import LoadedModel, LoadOptions
from sepconv_cli.backends.onnx.loader import load_onnx

OPSET = 17


def vinfo(name: str, shape: Sequence | None, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    """A typed graph input/output; ``shape`` entries may be ints or symbols, ``None`` = unranked."""
    return helper.make_tensor_value_info(name, dtype, None if shape is None else list(shape))


def weight(name: str, shape: Sequence[int], seed: int = 0, dtype=np.float32) -> onnx.TensorProto:
    """A seeded random initializer."""
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(tuple(shape)).astype(dtype), name)


def model(nodes, inputs, outputs, initializers=(), ir_version: int = 8, opset: int = OPSET) -> onnx.ModelProto:
    """A model around one graph (default opset 17, IR 8)."""
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def save(m: onnx.ModelProto, folder, name: str = "model.onnx", **kwargs) -> str:
    """Write ``m`` into ``folder`` and return the path (kwargs go to ``onnx.save_model``)."""
    path = os.path.join(str(folder), name)
    onnx.save_model(m, path, **kwargs)
    return path


def analyse(m: onnx.ModelProto, folder, *pins, name: str = "model.onnx") -> LoadedModel:
    """Save and load ``m``; ``pins`` are ``(input name or None, shape)`` pairs."""
    return load_onnx(save(m, folder, name), LoadOptions(input_shapes=tuple(pins)))


def conv_model(x_shape, w_shape, op: str = "Conv", bias: bool = True, **attrs) -> onnx.ModelProto:
    """One Conv/ConvTranspose node ``y = op(x, w[, b])`` with seeded weights."""
    out_channels = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
    inits = [weight("w", w_shape, 1)] + ([weight("b", (out_channels,), 2)] if bias else [])
    node = helper.make_node(op, ["x"] + [t.name for t in inits], ["y"], name=f"/net/{op.lower()}/{op}", **attrs)
    return model([node], [vinfo("x", x_shape)], [vinfo("y", None)], inits)


def run_ort(path: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the model file on onnxruntime's CPU provider and return all outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def random_input(shape: Sequence[int], seed: int = 3) -> np.ndarray:
    """A seeded float32 input tensor."""
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)
