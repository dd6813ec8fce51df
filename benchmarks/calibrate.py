"""Time the calibrated refit (not a test): wall and CPU seconds, peak memory, errors before/after.

Default case: the DnCNN-like denoiser of ``tests/calib_builders.py`` at full size (10 3x3 convs of 64
channels, BatchNorm + ReLU in the middle 8, residual output ``x - f(x)``, trained-like kernels), every
candidate at ``--rank 4`` (9 layers; the 64->1 output conv has no rank that saves anything), calibrated on
256 smooth 64x64 inputs (192 fit, 64 held back). Target: <= 2 minutes on 2 cores. Before the walk
(per-layer pruned sessions rerunning both networks' prefixes) this case took 874 s wall and 353 CPU-s
on a shared 2-core machine; the issue quoted 411 CPU-s.

Any ONNX model with its inputs works too: ``--onnx model.onnx --calib inputs.npz`` (e.g. the trained
models ``benchmarks/models/build.py`` writes; without ``--calib``, seeded random normal inputs).

``--curves`` times the rank curves instead (``layer_curves_onnx``: one pass of the original, every
candidate at every rank below break-even), e.g. on the ResNet-50-shaped model with 64 inputs at 224x224
(target for a whole sweep: <= 10 minutes on 2 cores).

``--refine`` compares the sequential refit with and without its refinements (depthwise refit by
alternating least squares, post-ReLU fit): held-back end-to-end error and, with ``--eval E`` (an npz
with ``labels`` or ``targets``, as ``benchmarks/models/build.py`` writes), accuracy or PSNR.

Run: ``python benchmarks/calibrate.py [--samples 256] [--rank 4] [--onnx M [--calib C] [--eval E]]
[--curves | --refine]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import tempfile
import time

import numpy as np
import onnx

from sepconv_cli.backends.onnx.calibrate import calibrate_onnx
from sepconv_cli.backends.onnx.curves import layer_curves_onnx
from sepconv_cli.backends.registry import ConvertOptions, backend_for, load
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.cpu import usable_cores
from sepconv_cli.pipeline.calibrate import curve_candidates
from sepconv_cli.planner import CandidateOptions, PlanOptions, find_candidates, make_plan

HERE = os.path.dirname(os.path.abspath(__file__))


def _builders():
    """``tests/calib_builders.py`` (the DnCNN-like model and its inputs), loaded by path."""
    spec = importlib.util.spec_from_file_location("calib_builders", os.path.join(HERE, "..", "tests", "calib_builders.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(args: argparse.Namespace, folder: str) -> tuple[str, dict[str, np.ndarray], str]:
    """(model path, calibration inputs by input name, description)."""
    if args.onnx:
        graph_input = onnx.load(args.onnx, load_external_data=False).graph.input[0]
        if args.calib:
            data = np.load(args.calib)
            x = data[data.files[0]][: args.samples]
        else:
            shape = [d.dim_value or 1 for d in graph_input.type.tensor_type.shape.dim][1:]
            x = np.random.default_rng(0).standard_normal((args.samples, *shape)).astype(np.float32)
        return args.onnx, {graph_input.name: x}, os.path.basename(args.onnx)
    builders = _builders()
    path = os.path.join(folder, "dncnn.onnx")
    onnx.save(builders.dncnn(depth=10, channels=64, hw=64), path)
    return path, {"x": builders.smooth_images(args.samples, hw=64)}, "DnCNN-like (10 x 64 ch, BN, x - f(x))"


def _calibrate(loaded, converted, inputs, options: CalibOptions):
    stamps: list[tuple[str, float]] = []
    options = CalibOptions(**{**options.__dict__, "progress": lambda n, d, t: stamps.append((n, time.perf_counter()))})
    wall, cpu = time.perf_counter(), time.process_time()
    result = calibrate_onnx(loaded.native, converted.native, converted.plan, inputs, options)
    return result, time.perf_counter() - wall, time.process_time() - cpu, stamps, wall


def _print_run(label: str, result, wall: float, cpu: float) -> None:
    report = result.report
    kept = sum(1 for r in report.layers if not r.fell_back)
    print(f"  {label}: {wall:.1f} s wall, {cpu:.1f} CPU-s; refit kept on {kept}/{len(report.layers)} layers; "
          f"held-back end-to-end rel L2 {report.output_error_before:.4f} (SVD) -> {report.output_error_after:.4f}")


def _curves(loaded, inputs, options: CalibOptions) -> None:
    """Time the rank curves of every convertible candidate."""
    report = find_candidates(loaded.report, loaded.handle, CandidateOptions())
    names = {c.name: () for c in report.candidates if c.convertible}
    candidates = curve_candidates(report, loaded.handle, names)
    wall, cpu = time.perf_counter(), time.process_time()
    curves = layer_curves_onnx(loaded.native, candidates, inputs, options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ranks = sum(len(c.ranks) for c in curves.values())
    print(f"  rank curves of {len(curves)} layers ({ranks} ranks): {wall:.1f} s wall, {cpu:.1f} CPU-s")
    for name, curve in list(curves.items())[:3]:
        print(f"    {name}: " + ", ".join(f"T={r} {s:.3f}->{e:.3f}" for r, s, e in
                                         zip(curve.ranks, curve.error_svd, curve.error_refit)))


REFINEMENTS = (("pointwise refit only", dict(refit_depthwise=False, fit_relu=False)),
               ("+ depthwise refit (default)", dict(refit_depthwise=True, fit_relu=False)),
               ("+ post-ReLU fit", dict(refit_depthwise=False, fit_relu=True)),
               ("+ both", dict(refit_depthwise=True, fit_relu=True)))


def _quality(model: onnx.ModelProto, evaluation: str | None, folder: str) -> str:
    """Accuracy or PSNR of ``model`` on the ``--eval`` data ("" without it)."""
    if not evaluation:
        return ""
    spec = importlib.util.spec_from_file_location("harness", os.path.join(HERE, "models", "harness.py"))
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    path = os.path.join(folder, "model.onnx")
    onnx.save(model, path)
    found = harness.evaluate(path, evaluation)
    return f", accuracy {100 * found['accuracy']:.2f}%" if "accuracy" in found else f", PSNR {found['psnr_db']:.2f} dB"


def _refine(loaded, converted, inputs, options: CalibOptions, evaluation: str | None) -> None:
    """The calibration with and without each refinement, side by side."""
    with tempfile.TemporaryDirectory(prefix="sepconv-bench-") as folder:
        print(f"  original{_quality(loaded.native, evaluation, folder)}; "
              f"SVD only{_quality(converted.native, evaluation, folder)}")
        for label, flags in REFINEMENTS:
            result, wall, cpu, _, _ = _calibrate(loaded, converted, inputs, CalibOptions(**{**options.__dict__, **flags}))
            layers = result.report.layers
            used = f"depthwise kept on {sum(r.depthwise_refit for r in layers)}, post-ReLU on {sum(r.relu_fit for r in layers)}"
            print(f"  {label}: held-back end-to-end rel L2 {result.report.output_error_after:.4f}"
                  f"{_quality(result.model, evaluation, folder)} ({used} of {len(layers)} layers; "
                  f"{wall:.1f} s wall, {cpu:.1f} CPU-s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--onnx")
    parser.add_argument("--calib")
    parser.add_argument("--curves", action="store_true")
    parser.add_argument("--refine", action="store_true")
    parser.add_argument("--eval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sepconv-bench-") as folder:
        path, inputs, what = _case(args, folder)
        loaded = load(path)
        plan = make_plan(loaded.report, loaded.handle, PlanOptions(rank=args.rank))
        converted = backend_for("onnx").rewrite(loaded, plan, ConvertOptions())
    count = len(next(iter(inputs.values())))
    print(f"{what}: {len(converted.plan.layers)} layers at rank {args.rank}, {count} inputs, "
          f"batch {args.batch_size}, {usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}")
    options = CalibOptions(samples=args.samples, batch_size=args.batch_size)
    if args.refine:
        _refine(loaded, converted, inputs, options, args.eval)
        return
    if args.curves:
        _curves(loaded, inputs, options)
        print(f"  peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        return
    result, wall, cpu, stamps, start = _calibrate(loaded, converted, inputs, options)
    _print_run("calibration", result, wall, cpu)
    starts = [start] + [t for _, t in stamps[:-1]]
    slowest = sorted(((t - s, n) for (n, t), s in zip(stamps, starts)), reverse=True)[:3]
    print("  slowest layers: " + ", ".join(f"{n} {d:.1f}s" for d, n in slowest))
    print(f"  peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
