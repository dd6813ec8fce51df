"""Budget conversion on trained models, side by side: original, data-free plan, calibrated plan, distilled plan.

For every trained model in ``benchmarks/models/artifacts`` (ResNet on digits, DnCNN denoiser, 1-D CNN; build
them with ``python benchmarks/models/build.py``) and the digits VGG sample, this runs the real CLI:

- data-free: ``sepconv convert MODEL -o OUT`` (the default: no data, never slower);
- calibrated: ``sepconv convert MODEL -o OUT --target-latency 2x --calibrate CALIB`` (256 unlabeled inputs);
- distilled (PyTorch sources, when the state_dict and architecture exist): the calibrated plan from the
  state_dict, plus ``--distill-steps``;
- for the digits VGG also ``--target-macs 8x --calibrate``.

Then it evaluates every file on the held-out set (accuracy, or PSNR for the denoiser) and times all of a
model's files in one interleaved onnxruntime run (1 thread, batch 1), printing quality and speed-up per plan.

Usage: ``python benchmarks/budget_convert.py [--only NAME] [--threads 1] [--repeats 40] [--distill-steps 300]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "models"))
import harness  # noqa: E402

ARTIFACTS = os.path.join(ROOT, "benchmarks", "models", "artifacts")


@dataclass
class Case:
    """One model: its ONNX file, calibration and evaluation data, and optional torch source."""

    name: str
    onnx: str
    calib: str
    eval: str
    arch: str | None = None
    state_dict: str | None = None
    extra: list[tuple[str, list[str]]] = field(default_factory=list)


def cases() -> list[Case]:
    """The trained artifacts that exist, plus the digits sample (its calib/eval files made on the fly)."""
    found = []
    for name in ("resnet_digits", "dncnn", "cnn1d"):
        onnx_path = os.path.join(ARTIFACTS, f"{name}.onnx")
        if os.path.exists(onnx_path):
            state = os.path.join(ARTIFACTS, f"{name}.pt")
            found.append(Case(name, onnx_path, os.path.join(ARTIFACTS, f"{name}_calib.npz"),
                              os.path.join(ARTIFACTS, f"{name}_eval.npz"),
                              f"benchmarks/models/archs.py:build_{name}", state if os.path.exists(state) else None))
    found.append(_digits_case())
    return found


def _digits_case() -> Case:
    """The digits VGG sample with 256 unlabeled training inputs and the 450 test images."""
    import numpy as np

    data = np.load(os.path.join(ROOT, "samples", "digits_data.npz"))
    folder = tempfile.mkdtemp(prefix="sepconv-bench-")
    calib, evaluation = os.path.join(folder, "calib.npz"), os.path.join(folder, "eval.npz")
    np.savez(calib, input=data["x_train"][:256])
    np.savez(evaluation, input=data["x_test"], labels=data["y_test"])
    return Case("digits_vgg", os.path.join(ROOT, "samples", "digits_vgg.onnx"), calib, evaluation,
                extra=[("calibrated 8x MACs", ["--target-macs", "8x"])])


def convert(source: str, out: str, flags: list[str]) -> tuple[dict | None, float]:
    """Run ``sepconv convert`` (JSON report), returning the report (None on failure) and wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sepconv_cli", "convert", source, "-o", out, "--force",
                           "--format", "json", *flags], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        print(f"    convert {' '.join(flags)} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        return None, wall
    return json.loads(proc.stdout), wall


def plans(case: Case, folder: str, distill_steps: int) -> list[tuple[str, list[str], str]]:
    """(label, flags, source) of every plan to build for ``case``."""
    calib = ["--calibrate", case.calib]
    out = [("data-free default", [], case.onnx),
           ("calibrated 2x latency", ["--target-latency", "2x", *calib], case.onnx)]
    out += [(label, flags + calib, case.onnx) for label, flags in case.extra]
    if case.state_dict and case.arch and distill_steps:
        shape = "x".join(str(d) for d in harness.input_shape(case.onnx))
        out.append(("distilled 2x latency", ["--arch", case.arch, "--input-shape", shape, "--target-latency", "2x", *calib,
                                             "--distill-steps", str(distill_steps)], case.state_dict))
    return out


def run_case(case: Case, args: argparse.Namespace) -> None:
    """Build every plan of ``case``, then evaluate and time them all side by side."""
    print(f"\n== {case.name} ({os.path.relpath(case.onnx, ROOT)})")
    folder = tempfile.mkdtemp(prefix=f"sepconv-{case.name}-")
    built = [("original", case.onnx, None, 0.0)]
    for i, (label, flags, source) in enumerate(plans(case, folder, args.distill_steps)):
        out = os.path.join(folder, f"plan{i}.onnx")
        report, wall = convert(source, out, flags + ["--threads", str(args.threads)])
        if report is not None and report.get("written"):
            built.append((label, out, report, wall))
        elif report is not None:
            print(f"    {label}: nothing written ({'; '.join(report.get('notes', []))[:200]})")
    shape = harness.input_shape(case.onnx)
    seconds = harness.latency([path for _, path, _, _ in built], shape, threads=args.threads, repeats=args.repeats)
    base_macs = None
    for (label, path, report, wall), secs in zip(built, seconds):
        quality = harness.format_quality(harness.evaluate(path, case.eval, batch=1))
        macs = report["totals"]["after"]["macs"] if report else None
        base_macs = base_macs or (report["totals"]["before"]["macs"] if report else None)
        macs_text = f"{base_macs / macs:5.2f}x fewer MACs" if macs and base_macs else " " * 17
        goal = report.get("goal") if report else None
        met = "" if not goal else (" (goal met)" if goal["met"] else " (goal MISSED)")
        print(f"  {label:24s} {quality:28s} {secs * 1e3:8.3f} ms  {seconds[0] / secs:5.2f}x faster  "
              f"{macs_text}  convert {wall:5.1f}s{met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run one model by name")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--distill-steps", type=int, default=300)
    args = parser.parse_args()
    for case in cases():
        if args.only in (None, case.name):
            run_case(case, args)


if __name__ == "__main__":
    main()
