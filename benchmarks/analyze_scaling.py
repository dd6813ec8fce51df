"""Benchmark: ``sepconv analyze`` stays linear in the number of nodes (a hostile file may hold very many).

Builds chains of N nodes (3x3 convs of 4 channels on 8x8, each followed by a Relu) for N = 1k .. 32k,
runs ``python -m sepconv_cli analyze FILE --format json`` on each as a whole process, and prints the wall
and CPU seconds (user + system of the child) and the CPU microseconds per node. Linear means that last
column stays flat as N grows 32x. Usage: ``python benchmarks/analyze_scaling.py [--sizes 1000,32000]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chain(nodes: int) -> onnx.ModelProto:
    """``nodes`` nodes: Conv(4->4, 3x3, pad 1) and Relu alternating, one shared seeded weight per conv."""
    rng = np.random.default_rng(0)
    graph_nodes, inits, prev = [], [], "x"
    for i in range(nodes // 2):
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}"))
        graph_nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        graph_nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        prev = f"r{i}"
    graph = helper.make_graph(graph_nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def timed(path: str) -> tuple[float, float]:
    """(wall s, child CPU s) of one analyze process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sepconv_cli", "analyze", path, "--format", "json"], cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,4000,16000,32000", help="comma-separated node counts")
    args = parser.parse_args()
    print(f"{'nodes':>7} {'wall s':>7} {'CPU s':>7} {'CPU us/node':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for nodes in (int(n) for n in args.sizes.split(",")):
            path = os.path.join(folder, f"chain{nodes}.onnx")
            onnx.save_model(chain(nodes), path)
            wall, cpu = timed(path)
            print(f"{nodes:>7} {wall:>7.2f} {cpu:>7.2f} {1e6 * cpu / nodes:>12.1f}")


if __name__ == "__main__":
    main()
