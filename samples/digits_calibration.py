"""Test accuracy of the trained digits VGG converted at T=1: SVD only vs calibrated on unlabeled inputs.

Usage: ``python samples/digits_calibration.py [--model samples/digits_vgg.onnx] [--data samples/digits_data.npz]
[--samples 256]`` (make both files with ``python samples/train_digits.py``).

Every 3x3 conv is converted at T=1 with BatchNorm folded (SVD init), through the same pipeline as
``sepconv convert MODEL -o OUT --rank 1 [--calibrate calib.npz --calib-samples N]``. The calibration
inputs are ``--samples`` images drawn (seeded) from the TRAINING split, labels unused; accuracy is
measured on the 450 test images. Printed per variant: top-1 accuracy, conv MACs (and how many times
fewer than the original), params, and for calibrated variants the calibration time and the end-to-end
relative output error on held-back calibration inputs before/after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from digits_accuracy import Variant, load_data, print_scores, score_model, score_variant  # noqa: E402

from sepconv_cli.calibration.solve import CalibOptions  # noqa: E402
from sepconv_cli.pipeline.calibrate import CalibrationHook  # noqa: E402
from sepconv_cli.planner import PlanOptions  # noqa: E402


def calibration_file(x_train: np.ndarray, count: int, folder: str) -> str:
    """``count`` seeded training images (no labels) saved as an .npz for ``--calibrate``."""
    pick = np.random.default_rng(0).choice(len(x_train), size=min(count, len(x_train)), replace=False)
    path = os.path.join(folder, f"calib_{count}.npz")
    np.savez(path, input=x_train[np.sort(pick)])
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(HERE, "digits_vgg.onnx"))
    parser.add_argument("--data", default=os.path.join(HERE, "digits_data.npz"))
    parser.add_argument("--samples", type=int, nargs="+", default=[256])
    args = parser.parse_args(argv)
    data = load_data(args.model, args.data)
    scores, hooks = [score_model("original", args.model, data)], []
    with tempfile.TemporaryDirectory(prefix="sepconv-digits-calib-") as folder:
        scores.append(score_variant(Variant("T=1 SVD only", PlanOptions(rank=1)), args.model, data, folder))
        for count in args.samples:
            hook = CalibrationHook(calibration_file(data["x_train"], count, folder), CalibOptions(samples=count))
            variant = Variant(f"T=1 calibrated ({count})", PlanOptions(rank=1), after_rewrite=hook)
            scores.append(score_variant(variant, args.model, data, folder))
            hooks.append((count, hook))
    print_scores(scores)
    for count, hook in hooks:
        r = hook.report
        refit = sum(1 for layer in r.layers if not layer.fell_back)
        print(f"calibration with {count} inputs: {r.seconds:.1f}s, refit kept on {refit}/{len(r.layers)} layers, "
              f"end-to-end rel L2 error on {r.samples_holdout} held-back inputs "
              f"{r.output_error_before:.3f} -> {r.output_error_after:.3f}")


if __name__ == "__main__":
    main()
