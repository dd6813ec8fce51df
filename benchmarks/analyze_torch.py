"""Benchmark (not a test): PyTorch counting speed and memory, measured side by side in one run.

1. The same loaded module (ResNet-50 at 224x224, a 3-D UNet at 64^3) counted by sepconv's engine,
   fvcore's FlopCountAnalysis and torch's FlopCounterMode: MACs and seconds, with ratios.
   ``sepconv_cli.analyze(module, input_shape=...)`` (the public API: counting plus every candidate's
   spectrum from the real weights) is timed beside ``FlopCountAnalysis(...).total()`` on the in-memory
   ResNet-50, and their ratio printed (the issue-15 target: the API costs no more than fvcore).
2. Peak RSS (bytes, VmHWM of a fresh subprocess each) of analysing a >=1B-parameter model
   built on the meta device vs on the CPU.

Run: ``python benchmarks/analyze_torch.py``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

BIG_WIDTH, BIG_DEPTH = 8192, 16  # 16 x (8192*8192 + 8192) = 1,073,872,896 params


def big_model():
    """A >=1B-parameter stack of Linear layers (entry point for the RSS measurement)."""
    from torch import nn

    layers = []
    for _ in range(BIG_DEPTH):
        layers += [nn.Linear(BIG_WIDTH, BIG_WIDTH), nn.ReLU()]
    return nn.Sequential(*layers)


def _timed(func, repeat: int = 3):
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = func()
        best = min(best, time.perf_counter() - start)
    return value, best


def _engines(model, x):
    import torch
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode

    from sepconv_cli.backends.base import LoadOptions
    from sepconv_cli.backends.torch.analyze import analyze_module
    from sepconv_cli.core.records import ModelInfo

    def sepconv():
        options = LoadOptions(input_shapes=((None, tuple(x.shape)),))
        return analyze_module(model, ModelInfo("bench", "entrypoint"), options).report.macs

    def fvcore():
        analysis = FlopCountAnalysis(model, (x,))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())

    def flop_counter():
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        return counter.get_total_flops() // 2

    def api():
        import sepconv_cli

        return sepconv_cli.analyze(model, input_shape=tuple(x.shape)).macs

    return {"sepconv": sepconv, "sepconv_cli.analyze": api, "fvcore": fvcore, "FlopCounterMode": flop_counter}


def compare_engines() -> None:
    """Print MACs and best-of-3 seconds of each engine on the same module, and time ratios to sepconv."""
    import torch
    from archs import ResNet50, UNet3D

    cases = {"ResNet-50 1x3x224x224": (ResNet50, (1, 3, 224, 224)),
             "3-D UNet 1x1x64x64x64": (lambda: UNet3D(base=16), (1, 1, 64, 64, 64))}
    print(f"{'model':24} {'engine':20} {'MACs':>15} {'seconds':>8} {'x sepconv':>9}")
    for label, (factory, shape) in cases.items():
        torch.manual_seed(0)
        model, x = factory().eval(), torch.randn(shape)
        results = {name: _timed(func) for name, func in _engines(model, x).items()}
        base = results["sepconv"][1]
        for name, (macs, seconds) in results.items():
            print(f"{label:24} {name:20} {macs:>15,} {seconds:>8.3f} {seconds / base:>9.2f}")
        api, fv = results["sepconv_cli.analyze"][1], results["fvcore"][1]
        print(f"{label:24} API / fvcore time: {api / fv:.2f} (target <= 1: analyze also reads every spectrum)")


def measure_rss(device: str) -> None:
    """(subprocess) Analyse the big model built on ``device``; print peak RSS in bytes."""
    from sepconv_cli.backends.base import LoadOptions
    from sepconv_cli.backends.registry import load

    start = time.perf_counter()
    report = load(f"{os.path.abspath(__file__)}:big_model",
                  LoadOptions(device=device, input_shapes=((None, (1, BIG_WIDTH)),))).report
    seconds = time.perf_counter() - start
    print(report.params, report.macs, _peak_rss(), seconds)


def _peak_rss() -> int:
    """Peak RSS in bytes of this process image (VmHWM; ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def compare_rss() -> None:
    """Peak RSS of meta-device vs CPU analysis of the >=1B-param model, each in its own process."""
    rows = {}
    for device in ("meta", "cpu"):
        out = subprocess.run([sys.executable, __file__, "--rss", device], capture_output=True, text=True,
                             check=True).stdout.split()
        rows[device] = (int(out[0]), int(out[1]), int(out[2]), float(out[3]))
    print(f"\n{'device':8} {'params':>15} {'MACs':>15} {'peak RSS MiB':>13} {'seconds':>8}")
    for device, (params, macs, rss, seconds) in rows.items():
        print(f"{device:8} {params:>15,} {macs:>15,} {rss / 2**20:>13,.0f} {seconds:>8.2f}")
    print(f"RSS ratio cpu/meta: {rows['cpu'][2] / rows['meta'][2]:.1f}x")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rss":
        measure_rss(sys.argv[2])
    elif sys.argv[1:] == ["--engines"]:
        compare_engines()
    else:
        compare_rss()
        compare_engines()
