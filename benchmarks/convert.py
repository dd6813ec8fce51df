"""Time `convert` on a ResNet-50-sized ONNX model and measure the seed VGG's latency before/after (not a test).

1. A ResNet-50-shaped graph (bottlenecks [3, 4, 6, 3], BatchNorm after every conv, 1x3x224x224, about
   25.5M params) is built with ``onnx.helper`` in a temporary folder. Its 3x3 kernels are made
   "trained-like" (a few dominant components per input channel plus noise) so that ``--energy 0.9`` picks
   ranks below break-even, as on real trained models. Every 3x3 conv is converted at ``--energy 0.9``;
   the time is split into load / plan (spectra) / SVD (factors) / rewrite (graph) / save (write + full
   checker + strict shape inference) / analyse (re-read) / verify (onnxruntime, both models).
2. The seed VGG (``samples/vgg_cifar.onnx`` if present, else built) converted at T=1 without BN folding:
   median onnxruntime latency before/after (interleaved runs) next to the MACs ratio, with onnxruntime's
   thread pool sized to the usable cores and with one thread (steadier when other processes share them).

Run: ``python benchmarks/convert.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sepconv_cli.backends.onnx.rewriter import BACKEND
from sepconv_cli.core import decompose
from sepconv_cli.pipeline import verify
from sepconv_cli.pipeline.convert import ConvertRequest, convert
from sepconv_cli.pipeline.verify_step import verification_inputs
from sepconv_cli.planner import PlanOptions

HERE = os.path.dirname(os.path.abspath(__file__))
SEED_VGG = os.path.join(HERE, "..", "samples", "vgg_cifar.onnx")


class _Builder:
    """Appends conv/BN/ReLU nodes and their initializers; tensors are named after the nodes."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []

    def _kernel(self, cout: int, cin: int, k: int) -> np.ndarray:
        if k != 3:
            scale = np.sqrt(2.0 / (cin * k * k))
            return (self.rng.standard_normal((cout, cin, k, k)) * scale).astype(np.float32)
        # Per input channel: two dominant rank-one components plus small noise (trained-like spectrum).
        u = self.rng.standard_normal((cout, cin, 2)) * np.array([1.0, 0.4])
        v = self.rng.standard_normal((cin, 2, 9))
        w = np.einsum("oir,irk->oik", u, v) + 0.1 * self.rng.standard_normal((cout, cin, 9))
        return (w * np.sqrt(2.0 / (cin * 9)) / 1.5).reshape(cout, cin, 3, 3).astype(np.float32)

    def conv_bn(self, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        self.inits.append(numpy_helper.from_array(self._kernel(cout, cin, k), f"{name}.weight"))
        self.nodes.append(helper.make_node("Conv", [x, f"{name}.weight"], [name], name=name, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[k // 2] * 4))
        stats = {"scale": self.rng.uniform(0.5, 1.5, cout), "bias": 0.1 * self.rng.standard_normal(cout),
                 "mean": 0.1 * self.rng.standard_normal(cout), "var": self.rng.uniform(0.5, 1.5, cout)}
        for key, value in stats.items():
            self.inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}.bn.{key}"))
        self.nodes.append(helper.make_node("BatchNormalization", [name] + [f"{name}.bn.{k}" for k in stats],
                                           [f"{name}.bn"], name=f"{name}.bn"))
        if not relu:
            return f"{name}.bn"
        self.nodes.append(helper.make_node("Relu", [f"{name}.bn"], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    def bottleneck(self, x: str, name: str, cin: int, width: int, stride: int) -> str:
        y = self.conv_bn(x, f"{name}.conv1", cin, width, 1)
        y = self.conv_bn(y, f"{name}.conv2", width, width, 3, stride)
        y = self.conv_bn(y, f"{name}.conv3", width, width * 4, 1, relu=False)
        if stride != 1 or cin != width * 4:
            x = self.conv_bn(x, f"{name}.downsample", cin, width * 4, 1, stride, relu=False)
        self.nodes.append(helper.make_node("Add", [y, x], [f"{name}.add"], name=f"{name}.add"))
        self.nodes.append(helper.make_node("Relu", [f"{name}.add"], [f"{name}.out"], name=f"{name}.out"))
        return f"{name}.out"


def resnet50(seed: int = 0) -> onnx.ModelProto:
    """A ResNet-50-shaped ONNX model with random (trained-like 3x3) weights."""
    b = _Builder(seed)
    x = b.conv_bn("input", "conv1", 3, 64, 7, 2)
    b.nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="maxpool", kernel_shape=[3, 3], strides=[2, 2],
                                    pads=[1, 1, 1, 1]))
    x, cin = "pool", 64
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
        for i in range(blocks):
            x = b.bottleneck(x, f"layer{stage + 1}.{i}", cin, width, 2 if i == 0 and stage > 0 else 1)
            cin = width * 4
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="avgpool"))
    b.nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    b.inits += [numpy_helper.from_array(b.rng.standard_normal((1000, 2048)).astype(np.float32) * 0.01, "fc.weight"),
                numpy_helper.from_array(np.zeros(1000, np.float32), "fc.bias")]
    b.nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(b.nodes, "resnet50", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class _SvdTimer:
    """Counts the seconds spent inside ``decompose.decompose`` (the factor SVDs of the rewrite)."""

    def __init__(self):
        self.seconds = 0.0
        self._original = decompose.decompose

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        decompose.decompose = timed
        return self

    def __exit__(self, *exc):
        decompose.decompose = self._original


def bench_resnet50(folder: str) -> None:
    source = os.path.join(folder, "resnet50.onnx")
    onnx.save(resnet50(), source)
    print(f"ResNet-50-sized model: {os.path.getsize(source) / 2**20:.1f} MiB, every 3x3 conv at --energy 0.9")
    request = ConvertRequest(source=source, output=os.path.join(folder, "resnet50.sep.onnx"),
                                        plan=PlanOptions(select=("*.conv2",), energy=0.9))
    with _SvdTimer() as svd:
        start = time.perf_counter()
        result = convert(request)
        total = time.perf_counter() - start
    t = dict(result.timings)
    t["rewrite"] -= svd.seconds
    t = {"load": t["load"], "plan (spectra)": t["plan"], "SVD (factors)": svd.seconds, "rewrite": t["rewrite"],
         "save (+checks)": t["save"], "analyse output": t["analyse"], "verify": t["verify"]}
    print("  " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()))
    print(f"  total {total:.2f}s; without verify {total - t['verify']:.2f}s (target <= 10 s on 2 cores)")
    before, after = result.before, result.after
    ranks = sorted({p.rank for p in result.plan.layers})
    print(f"  {len(result.plan.layers)} convs converted (ranks {ranks}), {len(result.plan.skipped)} left alone; "
          f"params {before.params:,} -> {after.params:,}, MACs {before.macs / 1e9:.3f}G -> {after.macs / 1e9:.3f}G; "
          f"verify rel L2 {result.verification.rel_l2:.3g}")


def bench_vgg(folder: str) -> None:
    source = SEED_VGG
    if not os.path.exists(source):
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from convert_builders import vgg_cifar

        source = os.path.join(folder, "vgg.onnx")
        onnx.save(vgg_cifar(), source)
    out = os.path.join(folder, "vgg.sep.onnx")
    request = ConvertRequest(source=source, output=out, plan=PlanOptions(rank=1, fold_bn=False))
    result = convert(request)
    print(f"seed VGG ({os.path.relpath(source)}) at T=1: params {result.before.params:,} -> {result.after.params:,}, "
          f"MACs {result.before.macs / result.after.macs:.2f}x fewer")
    feed = verification_inputs(request, result.before)
    inputs = {name: array[:1] for name, array in feed.arrays.items()}  # one sample: the model's batch is 1
    for threads in (None, 1):
        before, after = BACKEND.runner(source, threads), BACKEND.runner(out, threads)
        lat = verify.benchmark(lambda b=before: b(inputs), lambda a=after: a(inputs), runs=50, warmup=5)
        label = "all usable cores" if threads is None else f"{threads} thread"
        print(f"  onnxruntime CPU latency, {label} (median of {lat.runs}, interleaved): {lat.before_ms:.3f} ms -> "
              f"{lat.after_ms:.3f} ms, {lat.ratio:.2f}x")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sepconv-bench-") as folder:
        bench_resnet50(folder)
        bench_vgg(folder)


if __name__ == "__main__":
    main()
