"""Labelled evaluation (``--eval data.npz``): the number users judge a conversion by.

The file holds the model inputs, read by the rule of calibration inputs (``inputs``: keyed by input name,
or any one array name for a single-input model), plus either ``labels`` (integer classes, shape (N,)):
accuracy of the argmax of the first output before and after, or ``targets`` (regression, the shape of the
first output): MSE and PSNR before and after. PSNR = 10 log10(peak^2 / MSE) in dB, with the peak taken from
the targets' range: 1 when they lie in [0, 1], 255 when in [0, 255], else their max - min (``peak_rule``
says which). Every problem with the file is an ``InputError`` with a one-line message naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from sepconv_cli.core.records import TensorInfo, format_shape
from sepconv_cli.core.stats import wilson_interval
from sepconv_cli.errors import InputError
from sepconv_cli.pipeline.inputs import _assign, _read, conform
from sepconv_cli.pipeline.verify import run_chunked

Arrays = dict[str, np.ndarray]
Runner = Callable[[Arrays], Mapping[str, np.ndarray]]

LABELS, TARGETS = "labels", "targets"


class EvalKind(Enum):
    """What the evaluation file holds besides the inputs."""

    CLASSIFICATION = LABELS
    REGRESSION = TARGETS


@dataclass(frozen=True)
class Evaluation:
    """Labelled evaluation of ``output`` on ``samples`` samples of ``path``, before and after conversion.

    Classification: ``accuracy_*`` (shares, with 95% Wilson intervals ``*_low``/``*_high``). Regression:
    ``mse_*`` (squared output units) and ``psnr_*`` (dB) with ``peak`` and ``peak_rule``. The fields of the
    other kind are None.
    """

    path: str
    kind: EvalKind
    output: str
    samples: int
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    accuracy_before_low: float | None = None
    accuracy_before_high: float | None = None
    accuracy_after_low: float | None = None
    accuracy_after_high: float | None = None
    mse_before: float | None = None
    mse_after: float | None = None
    psnr_before: float | None = None
    psnr_after: float | None = None
    peak: float | None = None
    peak_rule: str = ""

    @property
    def change(self) -> float:
        """After minus before: accuracy points (percentage points) or PSNR dB (negative: worse)."""
        if self.kind is EvalKind.CLASSIFICATION:
            return 100.0 * (self.accuracy_after - self.accuracy_before)  # type: ignore[operator]
        return self.psnr_after - self.psnr_before  # type: ignore[operator]


@dataclass(frozen=True)
class EvalData:
    """An evaluation file read and checked: model inputs by name, and labels or targets."""

    path: str
    inputs: Arrays
    kind: EvalKind
    truth: np.ndarray


def load_eval(path: str, model_inputs: Sequence[TensorInfo], batch: int | None = None) -> EvalData:
    """Read ``path`` (see the module docstring); ``batch`` is the model's fixed batch size, which the
    sample count must be a multiple of (None: dynamic)."""
    arrays = _read(path)
    if "" in arrays:
        raise InputError(f"{path}: an evaluation file is an .npz holding the inputs and '{LABELS}' or '{TARGETS}'")
    kinds = [k for k in EvalKind if k.value in arrays]
    if len(kinds) != 1:
        found = "both" if kinds else "neither"
        raise InputError(f"{path}: holds {found} of '{LABELS}' (integer classes) and '{TARGETS}' (regression)")
    kind = kinds[0]
    truth = arrays.pop(kind.value)
    inputs = {info.name: conform(path, a, info) for info, a in zip(model_inputs, _assign(path, arrays, model_inputs).values())}
    counts = {len(a) for a in inputs.values()} | {len(truth) if truth.ndim else -1}
    if len(counts) != 1:
        raise InputError(f"{path}: '{kind.value}' holds {_count(truth)} sample(s), the inputs "
                         f"{', '.join(str(len(a)) for a in inputs.values())}")
    if batch is not None and len(truth) % batch:
        raise InputError(f"{path}: {len(truth)} samples; the model runs a fixed batch of {batch}, give a multiple of it")
    return EvalData(path, inputs, kind, CHECKS[kind](path, truth))


def _count(a: np.ndarray) -> str:
    return str(len(a)) if a.ndim else "no"


def _labels(path: str, labels: np.ndarray) -> np.ndarray:
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(np.isfinite(labels))
                                               and np.all(labels == np.round(labels))):
        raise InputError(f"{path}: '{LABELS}' must hold integer classes, found {labels.dtype} values")
    if labels.ndim != 1:
        raise InputError(f"{path}: '{LABELS}' must have shape (N,), found {format_shape(labels.shape)}")
    return labels.astype(np.int64)


def _targets(path: str, targets: np.ndarray) -> np.ndarray:
    if targets.dtype.kind not in "fiu":
        raise InputError(f"{path}: '{TARGETS}' must hold numbers, found {targets.dtype}")
    if not np.all(np.isfinite(targets)):
        raise InputError(f"{path}: '{TARGETS}' contains NaN or Inf")
    return targets.astype(np.float64)


CHECKS: dict[EvalKind, Callable[[str, np.ndarray], np.ndarray]] = {
    EvalKind.CLASSIFICATION: _labels, EvalKind.REGRESSION: _targets}


def peak_of(targets: np.ndarray) -> tuple[float, str]:
    """(peak, rule) for PSNR: 1 for targets in [0, 1], 255 for targets in [0, 255], else max - min."""
    low, high = float(np.min(targets)), float(np.max(targets))
    if low >= 0 and high <= 1:
        return 1.0, "targets in [0, 1]"
    if low >= 0 and high <= 255:
        return 255.0, "targets in [0, 255]"
    return high - low, f"targets' range {low:.4g}..{high:.4g}"


def psnr(mse: float, peak: float) -> float:
    """Peak signal-to-noise ratio in dB (inf for a perfect match)."""
    return float("inf") if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _first_output(outputs: Mapping[str, np.ndarray]) -> tuple[str, np.ndarray]:
    name = next(iter(outputs))
    return name, np.asarray(outputs[name])


def _classification(data: EvalData, before: tuple[str, np.ndarray], after: np.ndarray) -> Evaluation:
    name, logits = before
    labels = data.truth
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise InputError(f"{data.path}: '{LABELS}' need a classifier output (N, classes); output {name!r} has "
                         f"shape {format_shape(logits.shape)}")
    classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= classes:
        raise InputError(f"{data.path}: '{LABELS}' range {labels.min()}..{labels.max()}, output {name!r} has "
                         f"{classes} classes (0..{classes - 1})")
    hits = [int(np.sum(np.argmax(o, axis=1) == labels)) for o in (logits, after)]
    (lb, hb), (la, ha) = (wilson_interval(h, len(labels)) for h in hits)
    return Evaluation(data.path, data.kind, name, len(labels), hits[0] / len(labels), hits[1] / len(labels),
                      lb, hb, la, ha)


def _regression(data: EvalData, before: tuple[str, np.ndarray], after: np.ndarray) -> Evaluation:
    name, output = before
    targets = data.truth
    if targets.shape != output.shape:
        raise InputError(f"{data.path}: '{TARGETS}' have shape {format_shape(targets.shape)}, output {name!r} "
                         f"has shape {format_shape(output.shape)}")
    mse = [float(np.mean((np.asarray(o, np.float64) - targets) ** 2)) for o in (output, after)]
    peak, rule = peak_of(targets)
    return Evaluation(data.path, data.kind, name, len(targets), mse_before=mse[0], mse_after=mse[1],
                      psnr_before=psnr(mse[0], peak), psnr_after=psnr(mse[1], peak), peak=peak, peak_rule=rule)


SCORERS = {EvalKind.CLASSIFICATION: _classification, EvalKind.REGRESSION: _regression}


def evaluate(run_before: Runner, run_after: Runner, path: str, model_inputs: Sequence[TensorInfo],
             batch: int | None = None) -> Evaluation:
    """Evaluate the original (``run_before``) and converted (``run_after``) models on the labelled file
    ``path``; ``model_inputs`` are the model's inputs, ``batch`` its fixed batch size (None: dynamic; samples
    run in chunks of it). InputError (one line) for a file that does not fit the model."""
    data = load_eval(path, tuple(model_inputs), batch)
    before = _first_output(run_chunked(run_before, data.inputs, batch))
    after = run_chunked(run_after, data.inputs, batch)[before[0]]
    return SCORERS[data.kind](data, before, np.asarray(after))

