"""Test-set accuracy of the trained digits VGG before and after `sepconv convert` (onnxruntime, CPU).

Usage: ``python samples/digits_accuracy.py [--model samples/digits_vgg.onnx] [--data samples/digits_data.npz]``
(make both with ``python samples/train_digits.py``). Converts the model at ``--energy 0.9`` and at T=1
(BatchNorm folded, SVD init, no retraining) into a temporary folder and prints, per variant, the conv MACs,
the params and the top-1 accuracy on the 450 test images.

Hook for more variants (calibration, other rank rules): append a ``Variant`` to ``VARIANTS``, or call
``score_variant`` with a ``Variant`` whose ``after_rewrite`` hook transforms the converted model before it
is saved (the pipeline's ``ConvertRequest.after_rewrite``). Every printed number comes from this script.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from sepconv_cli.backends.registry import load  # noqa: E402
from sepconv_cli.core.records import Report  # noqa: E402
from sepconv_cli.pipeline.convert import ConvertRequest, convert  # noqa: E402
from sepconv_cli.planner import PlanOptions  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One conversion to score: a label, the plan options, and an optional hook run after the rewrite."""

    label: str
    plan: PlanOptions
    after_rewrite: Callable | None = None


@dataclass(frozen=True)
class Score:
    """Accuracy (0..1) on the test split, conv MACs and params (elements) of one model."""

    label: str
    accuracy: float
    conv_macs: int
    params: int


VARIANTS: list[Variant] = [
    Variant("energy 0.9", PlanOptions(energy=0.9)),
    Variant("T=1", PlanOptions(rank=1)),
]


def conv_macs(report: Report) -> int:
    """MACs of all convolution rows (regular, depthwise and pointwise alike)."""
    return sum(layer.macs or 0 for layer in report.layers if layer.op in ("Conv", "ConvTranspose"))


def accuracy(path: str, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the ONNX file at ``path`` (one image per run when the batch dim is fixed at 1)."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = session.get_inputs()[0].shape[0]
    step = batch if isinstance(batch, int) and batch > 0 else 64
    logits = np.concatenate([session.run(None, {name: x[i:i + step]})[0] for i in range(0, len(x), step)])
    return float(np.mean(np.argmax(logits, axis=1) == y))


def score_model(label: str, path: str, data: dict) -> Score:
    """Accuracy and costs of the model at ``path``."""
    report = load(path).report
    return Score(label, accuracy(path, data["x_test"], data["y_test"]), conv_macs(report), report.params)


def score_variant(variant: Variant, source: str, data: dict, folder: str) -> Score:
    """Convert ``source`` as ``variant`` says (into ``folder``) and score the result."""
    out = os.path.join(folder, variant.label.replace(" ", "_").replace("=", "") + ".onnx")
    request = ConvertRequest(source=source, output=out, plan=variant.plan, force=True,
                             after_rewrite=variant.after_rewrite)
    convert(request)
    return score_model(variant.label, out, data)


def load_data(model: str, data: str) -> dict[str, np.ndarray]:
    """The digits arrays from ``data``, once the trained ``model`` and ``data`` are known to exist (exits
    with the command that makes them otherwise)."""
    for path in (model, data):
        if not os.path.exists(path):
            sys.exit(f"{path}: missing; run python samples/train_digits.py first")
    with np.load(data) as npz:
        return {k: npz[k] for k in npz.files}


def print_scores(scores: list[Score]) -> None:
    base = scores[0]
    print(f"{'model':<24} {'top-1 acc':>9} {'conv MACs':>12} {'fewer':>7} {'params':>10}")
    for s in scores:
        print(f"{s.label:<24} {100 * s.accuracy:8.2f}% {s.conv_macs:>12,} {base.conv_macs / s.conv_macs:6.2f}x "
              f"{s.params:>10,}")


def main(argv: list[str] | None = None) -> list[Score]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(HERE, "digits_vgg.onnx"))
    parser.add_argument("--data", default=os.path.join(HERE, "digits_data.npz"))
    args = parser.parse_args(argv)
    data = load_data(args.model, args.data)
    scores = [score_model("original", args.model, data)]
    with tempfile.TemporaryDirectory(prefix="sepconv-digits-") as folder:
        scores += [score_variant(v, args.model, data, folder) for v in VARIANTS]
    print_scores(scores)
    return scores


if __name__ == "__main__":
    main()
