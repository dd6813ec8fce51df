"""Generate the bundled ONNX sample models (deterministic: fixed seeds, fixed producer fields).

Usage: ``python samples/make_samples.py [OUTPUT_DIR] [--only NAME ...]`` (default: this folder).
Each sample is one function in ``SAMPLES`` returning an ``onnx.ModelProto``; adding a sample is one
function and one dict line. Only numpy and onnx are needed (no torch).

``vgg_cifar``: the VGG-style CIFAR-10 model of the separable-convolutions tutorial: input 1x3x32x32
(NCHW), three blocks of two 3x3 'same' convs (64, 128, 256 filters, bias, Relu) each followed by a 2x2
max-pool, Flatten, Gemm 4096 -> 10, Softmax. 1,186,378 params (float32, about 4.75 MB).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def _he_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    bound = np.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def vgg_cifar(seed: int = 0) -> onnx.ModelProto:
    """The tutorial's VGG-style CIFAR model as ONNX, with seeded random weights."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x, channels = "input", 3
    for block, filters in enumerate((64, 128, 256), start=1):
        for conv in (1, 2):
            scope = f"/block{block}/conv{conv}"
            w = _he_uniform(rng, (filters, channels, 3, 3), channels * 9)
            b = (rng.standard_normal(filters) * 0.01).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"block{block}.conv{conv}.weight"),
                      numpy_helper.from_array(b, f"block{block}.conv{conv}.bias")]
            nodes.append(helper.make_node(
                "Conv", [x, inits[-2].name, inits[-1].name], [f"{scope}/Conv_output_0"], name=f"{scope}/Conv",
                kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1))
            nodes.append(helper.make_node("Relu", [f"{scope}/Conv_output_0"], [f"{scope}/Relu_output_0"],
                                          name=f"{scope}/Relu"))
            x, channels = f"{scope}/Relu_output_0", filters
        nodes.append(helper.make_node("MaxPool", [x], [f"/block{block}/pool/MaxPool_output_0"],
                                      name=f"/block{block}/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]))
        x = f"/block{block}/pool/MaxPool_output_0"
    nodes.append(helper.make_node("Flatten", [x], ["/flatten/Flatten_output_0"], name="/flatten/Flatten", axis=1))
    w = _he_uniform(rng, (10, 4096), 4096)
    b = np.zeros(10, np.float32)
    inits += [numpy_helper.from_array(w, "dense.weight"), numpy_helper.from_array(b, "dense.bias")]
    nodes.append(helper.make_node("Gemm", ["/flatten/Flatten_output_0", "dense.weight", "dense.bias"],
                                  ["/dense/Gemm_output_0"], name="/dense/Gemm", transB=1))
    nodes.append(helper.make_node("Softmax", ["/dense/Gemm_output_0"], ["probabilities"], name="/softmax/Softmax",
                                  axis=1))
    graph = helper.make_graph(
        nodes, "vgg_cifar",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sepconv-samples", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


SAMPLES: dict[str, Callable[[], onnx.ModelProto]] = {
    "vgg_cifar": vgg_cifar,
}


def main(argv: list[str] | None = None) -> int:
    """Write every (or each ``--only``) sample as ``<name>.onnx`` into the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--only", action="append", choices=sorted(SAMPLES), help="generate just this sample")
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    for name in args.only or sorted(SAMPLES):
        path = os.path.join(args.output_dir, f"{name}.onnx")
        onnx.save_model(SAMPLES[name](), path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
