"""Benchmark: analysing an ONNX file vs a bare ``onnx.load`` of the same file (wall time, seconds).

Prints, side by side in one run, for the bundled small sample and a generated model of at least
100 MB (written to a temporary folder, deleted afterwards):
- median wall time (interleaved repeats, one warm-up each) of a process that calls the ONNX loader, and of
  ``python -m sepconv_cli analyze FILE --format json`` when that command exits 0, against a process that
  only runs ``onnx.load``;
- in-process median time of the loader against in-process ``onnx.load`` (interpreter start-up excluded).
Target: ratio <= 1.3. Usage: ``python benchmarks/analyze_onnx.py [--repeat N] [--mb SIZE]``.
"""

from __future__ import annotations

import argparse
import os
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
LOADER = ("import sys; from sepconv_cli.backends.base import LoadOptions; "
          "from sepconv_cli.backends.onnx.loader import load_onnx; load_onnx(sys.argv[1], LoadOptions())")


def big_model(path: str, megabytes: int) -> None:
    """A chain of 512->512 3x3 convs (9.4 MB of float32 each) until the file reaches ``megabytes``."""
    rng = np.random.default_rng(0)
    layers = -(-megabytes * 2**20 // (512 * 512 * 9 * 4))
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w = rng.standard_normal((512, 512, 3, 3), dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"conv{i}.weight"))
        nodes.append(helper.make_node("Conv", [x, inits[-1].name], [f"c{i}"], name=f"/stack/conv{i}/Conv",
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"/stack/conv{i}/Relu"))
        x = f"r{i}"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512, 8, 8])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 512, 8, 8])], inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def cli_works(path: str) -> bool:
    """True when the analyze command exists and succeeds on ``path``."""
    result = subprocess.run([sys.executable, "-m", "sepconv_cli", "analyze", path, "--format", "json"],
                            capture_output=True, cwd=ROOT)
    return result.returncode == 0


def interleaved_medians(commands: dict[str, list[str]], repeat: int) -> dict[str, float]:
    """Median wall time (seconds) per command; one warm-up each, then runs interleaved so drift hits all alike."""
    for command in commands.values():
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(repeat):
        for label, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(samples) for label, samples in times.items()}


def in_process(path: str, repeat: int) -> tuple[float, float]:
    """(median onnx.load, median loader) seconds inside this interpreter, interleaved, after one warm-up each."""
    from sepconv_cli.backends.base import LoadOptions
    from sepconv_cli.backends.onnx.loader import load_onnx

    onnx.load(path)
    load_onnx(path, LoadOptions())
    bare, ours = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        onnx.load(path)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        load_onnx(path, LoadOptions())
        ours.append(time.perf_counter() - start)
    return statistics.median(bare), statistics.median(ours)


def measure(label: str, path: str, repeat: int) -> None:
    """Print the rows for ``path``: the CLI (when it runs), a loader-only process, and in-process."""
    size = f"{os.path.getsize(path) / 2**20:.1f}"
    commands = {"bare": [sys.executable, "-c", BARE, path], "process/loader": [sys.executable, "-c", LOADER, path]}
    if cli_works(path):
        commands["process/cli"] = [sys.executable, "-m", "sepconv_cli", "analyze", path, "--format", "json"]
    medians = interleaved_medians(commands, repeat)
    bare = medians.pop("bare")
    for mode, ours in medians.items():
        print(f"{label:<10} {size:>8} {mode:<15} {bare:>9.3f} {ours:>9.3f} {ours / bare:>6.2f}")
        label = size = ""
    bare_in, ours_in = in_process(path, repeat)
    print(f"{'':<10} {'':>8} {'in-process':<15} {bare_in:>9.3f} {ours_in:>9.3f} {ours_in / bare_in:>6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mb", type=int, default=110, help="size of the generated model (MiB)")
    args = parser.parse_args()
    print(f"{'model':<10} {'MiB':>8} {'mode':<15} {'onnx.load':>9} {'analyze':>9} {'ratio':>6}")
    measure("vgg_cifar", SAMPLE, args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.onnx")
        big_model(path, args.mb)
        measure("generated", path, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
