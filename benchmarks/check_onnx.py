"""Benchmark: `sepconv check` on one ONNX file against a bare `onnx.load` of the same file.

Both are timed the same way, twice: as the wall time of a fresh Python process (interpreter start and
imports included, which is what a CI step pays), and in one process after the imports (the work
itself). Several interleaved repeats, medians, and their ratio; the target is a ratio within 1.3x.
Not a test.

    python benchmarks/check_onnx.py                          # samples/vgg_cifar.onnx
    python benchmarks/check_onnx.py model.onnx --repeats 9
    python benchmarks/check_onnx.py --generate-mb 100         # also a generated ~100 MB conv stack
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(os.path.dirname(HERE), "samples", "vgg_cifar.onnx")


def commands(path: str) -> dict[str, list[str]]:
    """The two command lines compared, by label."""
    return {
        "onnx.load": [sys.executable, "-c", f"import onnx; onnx.load({path!r})"],
        "sepconv check": [sys.executable, "-m", "sepconv_cli", "check", path, "--no-config",
                          "--max-params", "10G", "--max-macs", "10T", "--format", "json"],
    }


def wall_time(argv: list[str]) -> float:
    """Seconds one run of ``argv`` takes; a non-zero exit aborts the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[2:]} failed with exit code {done.returncode}: {done.stderr.strip()}")
    return elapsed


def measure(path: str, repeats: int) -> dict[str, float]:
    """Median wall time per command, runs interleaved so drift hits both alike (one warm-up each)."""
    argvs = commands(path)
    for argv in argvs.values():
        wall_time(argv)
    samples: dict[str, list[float]] = {label: [] for label in argvs}
    for _ in range(repeats):
        for label, argv in argvs.items():
            samples[label].append(wall_time(argv))
    return {label: statistics.median(times) for label, times in samples.items()}


IN_PROCESS = """
import statistics, sys, time
import onnx
from sepconv_cli.core.budget import budgets_from_mapping, evaluate
from sepconv_cli.backends.registry import LoadOptions, load
from sepconv_cli.core.records import CheckResult
from sepconv_cli.render.check import CheckRenderOptions, render_json
path, repeats = sys.argv[1], int(sys.argv[2])
budgets = budgets_from_mapping({"max-params": "10G", "max-macs": "10T"}, "benchmark")
def check():
    report = load(path, LoadOptions()).report
    render_json(CheckResult(evaluate(report, budgets)), CheckRenderOptions())
runs = {"onnx.load": lambda: onnx.load(path), "check": check}
times = {label: [] for label in runs}
for label, fn in runs.items():
    fn()
for _ in range(repeats):
    for label, fn in runs.items():
        start = time.perf_counter(); fn(); times[label].append(time.perf_counter() - start)
print(statistics.median(times["onnx.load"]), statistics.median(times["check"]))
"""


def measure_in_process(path: str, repeats: int) -> tuple[float, float]:
    """Medians of ``onnx.load`` and of load + evaluate + render, in one process after the imports."""
    done = subprocess.run([sys.executable, "-c", IN_PROCESS, path, str(repeats)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"in-process timing failed: {done.stderr.strip()}")
    base, check = (float(v) for v in done.stdout.split())
    return base, check


def generate(folder: str, megabytes: int) -> str:
    """A stack of 3x3 convs (256 channels) with about ``megabytes`` MB of float32 weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    per_layer = 256 * 256 * 9 * 4
    layers = max(1, megabytes * 10**6 // per_layer)
    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for i in range(layers):
        weight = numpy_helper.from_array(rng.standard_normal((256, 256, 3, 3), dtype=np.float32), f"w{i}")
        inits.append(weight)
        nodes.append(helper.make_node("Conv", [current, f"w{i}"], [f"y{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        current = f"y{i}"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 14, 14])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, None)], inits)
    path = os.path.join(folder, f"conv_stack_{megabytes}mb.onnx")
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def report(path: str, repeats: int) -> None:
    medians = measure(path, repeats)
    base, check = medians["onnx.load"], medians["sepconv check"]
    size = os.path.getsize(path) / 1e6
    print(f"{os.path.basename(path):<24} {size:>6.1f} MB  process:    onnx.load {base:6.3f} s  "
          f"sepconv check {check:6.3f} s  ratio {check / base:5.2f}x")
    base, check = measure_in_process(path, repeats)
    print(f"{'':<24} {'':>6}     in-process: onnx.load {base:6.3f} s  "
          f"load+evaluate {check:6.3f} s  ratio {check / base:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[DEFAULT_MODEL])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--generate-mb", type=int, default=0, help="also time a generated model of this size")
    args = parser.parse_args()
    print(f"medians of {args.repeats} interleaved repeats (target ratio <= 1.3x); 'process' = wall time of a "
          "fresh interpreter (imports included), 'in-process' = after the imports")
    for path in args.models:
        report(path, args.repeats)
    if args.generate_mb:
        with tempfile.TemporaryDirectory() as folder:
            report(generate(folder, args.generate_mb), args.repeats)


if __name__ == "__main__":
    main()
