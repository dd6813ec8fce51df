"""Time the calibrated refit on a ResNet-50-sized ONNX model with 32 inputs at 224x224 (not a test).

The model is the ResNet-50-shaped graph of ``benchmarks/convert.py`` (bottlenecks [3, 4, 6, 3],
BatchNorm after every conv, trained-like 3x3 kernels) with its batch dim made symbolic so the 32
calibration inputs run in batches. Every 3x3 conv is converted at ``--energy 0.9`` (BN folded), then
calibrated on 32 seeded random inputs (24 fit, 8 held back). Printed: load / plan / rewrite times, the
calibration time (target <= 5 minutes on 2 cores), the slowest layers, the error before/after.

Run: ``python benchmarks/calibrate.py [--samples 32] [--batch-size 8]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time

import numpy as np
import onnx

from sepconv_cli.backends.onnx.calibrate import calibrate_onnx
from sepconv_cli.backends.registry import ConvertOptions, backend_for, load
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.planner import PlanOptions, make_plan

HERE = os.path.dirname(os.path.abspath(__file__))


def resnet50_dynamic_batch() -> onnx.ModelProto:
    """The convert benchmark's ResNet-50-sized model with batch dim ``N`` on its input and output."""
    spec = importlib.util.spec_from_file_location("convert_benchmark", os.path.join(HERE, "convert.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.resnet50()
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sepconv-bench-") as folder:
        source = os.path.join(folder, "resnet50.onnx")
        onnx.save(resnet50_dynamic_batch(), source)
        clock = time.perf_counter()
        loaded = load(source)
        t_load = time.perf_counter() - clock
        clock = time.perf_counter()
        plan = make_plan(loaded.report, loaded.handle, PlanOptions(select=("*.conv2",), energy=0.9))
        t_plan = time.perf_counter() - clock
        clock = time.perf_counter()
        converted = backend_for("onnx").rewrite(loaded, plan, ConvertOptions())
        t_rewrite = time.perf_counter() - clock
    x = np.random.default_rng(0).normal(size=(args.samples, 3, 224, 224)).astype(np.float32)
    stamps: list[tuple[str, float]] = []
    options = CalibOptions(samples=args.samples, batch_size=args.batch_size,
                           progress=lambda name, done, total: stamps.append((name, time.perf_counter())))
    clock = time.perf_counter()
    result = calibrate_onnx(loaded.native, converted.native, converted.plan, {"input": x}, options)
    t_calib = time.perf_counter() - clock
    report = result.report
    ranks = sorted({p.rank for p in converted.plan.layers})
    print(f"ResNet-50-sized model, {len(converted.plan.layers)} 3x3 convs at --energy 0.9 (ranks {ranks}), "
          f"{args.samples} inputs 224x224 ({report.samples_fit} fit, {report.samples_holdout} held back), "
          f"batch {args.batch_size}, {os.cpu_count()} cores")
    print(f"  load {t_load:.2f}s, plan {t_plan:.2f}s, rewrite {t_rewrite:.2f}s")
    print(f"  calibration {t_calib:.1f}s (target <= 300 s on 2 cores); report says {report.seconds:.1f}s")
    starts = [clock] + [t for _, t in stamps[:-1]]
    per_layer = sorted(((t - s, n) for (n, t), s in zip(stamps, starts)), reverse=True)[:3]
    print("  slowest layers: " + ", ".join(f"{n} {d:.1f}s" for d, n in per_layer))
    kept = sum(1 for r in report.layers if not r.fell_back)
    print(f"  refit kept on {kept}/{len(report.layers)} layers; mean held-back layer error "
          f"{np.mean([r.holdout_error_before for r in report.layers]):.4f} -> "
          f"{np.mean([r.holdout_error_after for r in report.layers]):.4f}; end-to-end rel L2 "
          f"{report.output_error_before:.4f} -> {report.output_error_after:.4f}")


if __name__ == "__main__":
    main()
