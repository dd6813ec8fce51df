"""Benchmark: ``sepconv analyze`` on an ONNX file against a bare ``onnx.load`` of it, as whole processes.

Each pair runs ``python -m sepconv_cli analyze FILE --format json`` and ``python -c "import onnx;
onnx.load(FILE)"`` one after the other (alternating, after one warm-up of each), so that start-up, imports,
parsing, counting, candidate spectra and rendering are all in, exactly as a user or a CI job pays them.
Prints the median wall time and the median CPU time (user + system of the child: less sensitive to a busy
machine) of each, and their ratios, for the bundled VGG sample and a generated ResNet-50-shaped model
with a dynamic batch (about 98 MiB, written to a temporary folder and deleted afterwards). Target: ratio
<= 1.3. Usage: ``python benchmarks/analyze_onnx.py [--pairs N] [--keep PATH]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "vgg_cifar.onnx")
BARE = "import sys, onnx; onnx.load(sys.argv[1])"


class _Graph:
    """Nodes and random float32 initializers of a ResNet-50-shaped graph (BatchNorms folded into conv biases,
    as the legacy exporter writes them)."""

    def __init__(self) -> None:
        self.rng, self.nodes, self.inits, self.count = np.random.default_rng(0), [], [], 0

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        self.count += 1
        name = f"conv{self.count}"
        w = self.rng.standard_normal((cout, cin, k, k), dtype=np.float32) * 0.01
        self.inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(np.zeros(cout, np.float32),
                                                                                       f"{name}.b")]
        self.nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [name], name=f"/{name}/Conv",
                                           pads=[k // 2] * 4, strides=[stride, stride]))
        if not relu:
            return name
        self.nodes.append(helper.make_node("Relu", [name], [f"{name}.r"], name=f"/{name}/Relu"))
        return f"{name}.r"

    def bottleneck(self, x: str, cin: int, width: int, stride: int) -> str:
        out = self.conv(self.conv(self.conv(x, cin, width, 1), width, width, 3, stride), width, 4 * width, 1,
                        relu=False)
        short = x if stride == 1 and cin == 4 * width else self.conv(x, cin, 4 * width, 1, stride, relu=False)
        self.count += 1
        self.nodes += [helper.make_node("Add", [out, short], [f"add{self.count}"], name=f"/add{self.count}/Add"),
                       helper.make_node("Relu", [f"add{self.count}"], [f"add{self.count}.r"])]
        return f"add{self.count}.r"


def resnet50_like(path: str) -> None:
    """torchvision's ResNet-50 layout (25.5M params, 4.09 GMACs at 224x224) with input ``N x 3 x 224 x 224``."""
    g = _Graph()
    x = g.conv("x", 3, 64, 7, 2)
    g.nodes.append(helper.make_node("MaxPool", [x], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
    x, cin = "pool", 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for block in range(blocks):
            x = g.bottleneck(x, cin, width, 2 if block == 0 and stage > 0 else 1)
            cin = 4 * width
    fc_w = g.rng.standard_normal((1000, 2048), dtype=np.float32) * 0.01
    g.inits += [numpy_helper.from_array(fc_w, "fc.w"), numpy_helper.from_array(np.zeros(1000, np.float32), "fc.b")]
    g.nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
                helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], transB=1, name="/fc/Gemm")]
    graph = helper.make_graph(g.nodes, "resnet50_like",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1000])], g.inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; the command must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pairs(path: str, count: int) -> dict[str, float]:
    """Medians over ``count`` alternating pairs (after one warm-up of each) of wall and CPU seconds."""
    bare = [sys.executable, "-c", BARE, path]
    ours = [sys.executable, "-m", "sepconv_cli", "analyze", path, "--format", "json"]
    _run(bare), _run(ours)
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "ours": []}
    for _ in range(count):
        runs["bare"].append(_run(bare))
        runs["ours"].append(_run(ours))
    return {f"{who}_{kind}": statistics.median(r[i] for r in runs[who])
            for who in runs for i, kind in enumerate(("wall", "cpu"))}


def report(label: str, path: str, count: int) -> None:
    m = pairs(path, count)
    size = os.path.getsize(path) / 2**20
    print(f"{label:<14} {size:>7.1f} {m['bare_wall']:>8.3f} {m['ours_wall']:>8.3f} "
          f"{m['ours_wall'] / m['bare_wall']:>6.2f}x {m['bare_cpu']:>8.3f} {m['ours_cpu']:>8.3f} "
          f"{m['ours_cpu'] / m['bare_cpu']:>6.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=11, help="alternating pairs per model (median taken)")
    parser.add_argument("--keep", help="write the generated model here and keep it")
    args = parser.parse_args()
    print(f"{'model':<14} {'MiB':>7} {'load s':>8} {'ours s':>8} {'wall':>7} {'load cpu':>8} {'ours cpu':>8} "
          f"{'cpu':>7}   (median of {args.pairs} alternating pairs)")
    report("vgg_cifar", SAMPLE, args.pairs)
    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or os.path.join(folder, "resnet50_like.onnx")
        resnet50_like(path)
        report("resnet50 (N)", path, args.pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
