"""Numerical verification of a conversion, in plain numpy.

Compares the outputs of the original and converted models (max abs error, relative L2 error, cosine
similarity, top-1 agreement for classifier-shaped outputs with its 95% Wilson interval), says how strong
the evidence is (``evidence.assess``), builds seeded random inputs from the analysed input shapes, loads
user inputs (by the rule of calibration inputs), and times two callables side by side (interleaved runs,
medians in milliseconds).

Residual outputs. When an output y has the shape of an input x and ||y - x|| < 0.5 ||y|| on the original
model's run (a denoiser returning x - f(x), any skip to the output), y is mostly the input passed
through, so ||y' - y|| / ||y|| is small whatever the network does. Such an output also gets the error of
its residual part, ||(y' - x) - (y - x)|| / ||y - x||, and that one is the error a tolerance and targets
apply to (``headline_error``); other outputs are judged on their own relative L2 error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sepconv_cli.core.records import TensorInfo, format_shape
from sepconv_cli.core.stats import wilson_interval
from sepconv_cli.core.units import format_bytes
from sepconv_cli.errors import ShapeError
from sepconv_cli.pipeline.evidence import Evidence, assess
from sepconv_cli.pipeline.inputs import (
    expected_shape,
    load_calibration_inputs,
    numpy_dtype,
)

Arrays = dict[str, np.ndarray]

RESIDUAL_SHARE = 0.5
"""An output y is the input x plus a residual when ||y - x|| < RESIDUAL_SHARE * ||y|| (same shape)."""

ERROR_ON_OUTPUT, ERROR_ON_RESIDUAL = "output", "residual"


@dataclass(frozen=True)
class OutputComparison:
    """How close one converted output is to the original one.

    ``rel_l2`` = ||a - b|| / ||a||; ``cosine`` of the flattened tensors; ``top1`` is the share of rows
    whose argmax agrees (None unless the output is classifier-shaped: ``(N, C)`` with C > 1), over
    ``top1_samples`` rows, with its 95% Wilson interval ``top1_low``..``top1_high``. ``residual_of`` names
    the input the output mostly passes through (see the module docstring), and ``residual_rel_l2`` is
    then the relative error of the residual part.
    """

    name: str
    max_abs: float
    rel_l2: float
    cosine: float
    top1: float | None = None
    top1_low: float | None = None
    top1_high: float | None = None
    top1_samples: int = 0
    residual_of: str | None = None
    residual_rel_l2: float | None = None

    @property
    def error_on(self) -> str:
        """Which error a tolerance applies to: ``"residual"`` for a residual output, else ``"output"``."""
        return ERROR_ON_OUTPUT if self.residual_rel_l2 is None else ERROR_ON_RESIDUAL

    @property
    def error(self) -> float:
        """The relative L2 error a tolerance applies to (the residual part's for a residual output)."""
        return self.rel_l2 if self.residual_rel_l2 is None else self.residual_rel_l2


@dataclass(frozen=True)
class Verification:
    """All outputs compared, where the inputs came from (``inputs_role``: what they are when not just that
    source's arrays, e.g. ``held-back calibration``), and the verdict against ``tolerance``."""

    outputs: tuple[OutputComparison, ...]
    inputs_source: str
    samples: int
    tolerance: float | None = None
    inputs_role: str = ""

    @property
    def rel_l2(self) -> float:
        """Worst relative L2 error over the outputs."""
        return max((o.rel_l2 for o in self.outputs), default=0.0)

    @property
    def max_abs(self) -> float:
        """Worst absolute error over the outputs."""
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def error(self) -> float:
        """Worst error a tolerance applies to (``OutputComparison.error``) over the outputs."""
        return headline_error(self)[0]

    @property
    def error_on(self) -> str:
        """``"residual"`` or ``"output"``: which error ``error`` (and the tolerance) is, for the worst output."""
        return headline_error(self)[1]

    @property
    def evidence(self) -> Evidence:
        """How strong these figures are as evidence (weak on random or in-sample inputs, or few samples)."""
        return assess(self.inputs_source, self.inputs_role, self.samples)

    @property
    def passed(self) -> bool:
        """True when no tolerance was asked or the worst error it applies to is within it."""
        return self.tolerance is None or self.error <= self.tolerance


def headline_error(verification: Verification) -> tuple[float, str]:
    """(error, label): the worst over the outputs of the relative L2 error a tolerance or an output-error
    target applies to, and ``"residual"`` when that output is a residual one (the error of its residual
    part, see the module docstring), else ``"output"``. (0.0, "output") without outputs."""
    worst = max(verification.outputs, key=lambda o: o.error, default=None)
    return (0.0, ERROR_ON_OUTPUT) if worst is None else (worst.error, worst.error_on)


@dataclass(frozen=True)
class Latency:
    """Median wall-clock latency of two runs in milliseconds, and ``ratio`` = before / after (>1: faster)."""

    before_ms: float
    after_ms: float
    runs: int

    @property
    def ratio(self) -> float:
        """Speed-up factor of the converted model (before / after)."""
        return self.before_ms / self.after_ms if self.after_ms > 0 else float("inf")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else (0.0 if num == 0 else float("inf"))


def compare(name: str, reference: np.ndarray, candidate: np.ndarray,
            inputs: Mapping[str, np.ndarray] | None = None) -> OutputComparison:
    """Compare one output tensor pair (computed in float64); with the model ``inputs`` of the run, a
    residual output (module docstring) also gets the error of its residual part."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        raise ShapeError(f"output {name!r}: converted shape {b.shape} differs from original {a.shape}")
    diff = a - b
    norm_a, norm_b, norm_d = (float(np.linalg.norm(x.ravel())) for x in (a, b, diff))
    if norm_a > 0 and norm_b > 0:
        cosine = float(np.dot(a.ravel(), b.ravel()) / (norm_a * norm_b))
    else:
        cosine = 1.0 if norm_a == norm_b else 0.0
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    residual = residual_input(a, inputs or {})
    residual_rel = None
    if residual is not None:  # ||(b - x) - (a - x)|| / ||a - x||: the input cancels in the numerator
        residual_rel = _ratio(norm_d, float(np.linalg.norm((a - np.asarray(inputs[residual], np.float64)).ravel())))
    agree = _agreement(a, b)
    return OutputComparison(name, max_abs, _ratio(norm_d, norm_a), cosine, *agree, residual_of=residual,
                            residual_rel_l2=residual_rel)


def residual_input(output: np.ndarray, inputs: Mapping[str, np.ndarray]) -> str | None:
    """The name of the float input ``output`` mostly passes through (same shape and ||y - x|| <
    ``RESIDUAL_SHARE`` * ||y||; the closest one when several qualify), or None."""
    y = np.asarray(output, dtype=np.float64)
    norm_y = float(np.linalg.norm(y.ravel()))
    best, best_share = None, RESIDUAL_SHARE
    for name, x in inputs.items():
        x = np.asarray(x)
        if x.shape != y.shape or x.dtype.kind != "f" or norm_y == 0:
            continue
        share = float(np.linalg.norm((y - x.astype(np.float64)).ravel())) / norm_y
        if share < best_share:
            best, best_share = name, share
    return best


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None, float | None, int]:
    """(share, low, high, rows): argmax agreement over rows for ``(N, C)`` outputs with C > 1 (classifier
    logits/probabilities) and its 95% Wilson interval; Nones and 0 rows for other outputs."""
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] == 0:
        return None, None, None, 0
    agree, rows = int(np.sum(np.argmax(a, axis=1) == np.argmax(b, axis=1))), int(a.shape[0])
    low, high = wilson_interval(agree, rows)
    return agree / rows, low, high, rows


def compare_all(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                inputs: Mapping[str, np.ndarray] | None = None) -> tuple[OutputComparison, ...]:
    """Compare every output of ``reference`` with the same-named output of ``candidate`` (``inputs``: the
    model inputs of the run, to detect residual outputs)."""
    missing = [n for n in reference if n not in candidate]
    if missing:
        raise ShapeError(f"converted model lacks output(s) {', '.join(missing)}")
    return tuple(compare(n, reference[n], candidate[n], inputs) for n in reference)


def concrete_shape(info: TensorInfo) -> tuple[int, ...]:
    """The input's shape with a symbolic leading (batch) dim set to 1; other unknown dims are an error."""
    if info.shape is None:
        raise ShapeError(f"input {info.name!r}: shape unknown; give it with --input-shape or use --inputs")
    dims = []
    for axis, dim in enumerate(info.shape):
        if isinstance(dim, int):
            dims.append(dim)
        elif axis == 0:
            dims.append(1)
        else:
            raise ShapeError(f"input {info.name!r}: dim {axis} is {dim!r}; give it with --input-shape "
                             f"or use --inputs")
    return tuple(dims)


RANDOM_SAMPLES = 4
"""Random verification samples drawn by default: several, so top-1 agreement means something, few enough
that verifying a large model stays a matter of seconds."""


def random_inputs(inputs: tuple[TensorInfo, ...], seed: int = 0, samples: int = 1,
                  max_bytes: int | None = None) -> Arrays:
    """Seeded inputs for every model input: standard normal floats, integers in [0, 10), random bools.
    ``samples`` > 1 stacks that many along the leading (batch) axis, when every input has one that is
    shared (a fixed batch, run in chunks of it, or a dynamic one); otherwise one sample is drawn.
    ShapeError, before anything is allocated, when they would take more than ``max_bytes`` bytes."""
    rng = np.random.default_rng(seed)
    batched = samples > 1 and all(i.shape for i in inputs) and (
        fixed_batch(inputs) is not None or all(not isinstance(i.shape[0], int) for i in inputs))
    shapes = {}
    for info in inputs:
        shape = concrete_shape(info)
        shapes[info.name] = (shape[0] * samples,) + shape[1:] if batched else shape
    _check_size(inputs, shapes, max_bytes)
    out: Arrays = {}
    for info in inputs:
        dtype, shape = numpy_dtype(info), shapes[info.name]
        if dtype.kind == "f":
            out[info.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[info.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            out[info.name] = rng.integers(0, 10, shape).astype(dtype)
    return out


def _check_size(inputs: tuple[TensorInfo, ...], shapes: dict[str, tuple[int, ...]], max_bytes: int | None) -> None:
    sizes = {i.name: math.prod(shapes[i.name]) * max(numpy_dtype(i).itemsize, 8) for i in inputs}  # drawn as 8-byte
    if max_bytes is None or sum(sizes.values()) <= max_bytes:
        return
    name = max(sizes, key=lambda n: sizes[n])
    raise ShapeError(f"random inputs would take {format_bytes(sum(sizes.values()))} (input {name!r} is "
                     f"{format_shape(shapes[name])}), more than the {format_bytes(max_bytes)} a run may hold "
                     "(--max-memory); give --inputs or pin --input-shape")


def load_inputs(path: str, inputs: tuple[TensorInfo, ...], notes: list[str] | None = None) -> Arrays:
    """Read verification inputs from ``path`` by the rule calibration inputs follow (``calib_inputs``:
    names, kind-preserving dtype cast noted in ``notes``, a missing sample axis added, finite values),
    then check that a fixed batch dim divides the sample count (samples run in chunks of it)."""
    arrays = load_calibration_inputs(path, inputs, samples=None, notes=notes)
    for info in inputs:
        batch, count = fixed_batch((info,)), len(arrays[info.name])
        if batch is not None and count % batch:
            raise ShapeError(f"{path}: array {info.name!r} has shape {format_shape(arrays[info.name].shape)}, "
                             f"the model expects {format_shape(info.shape)} ({expected_shape(info.shape)} with N "
                             f"a multiple of {batch})")
    return arrays


def fixed_batch(inputs: tuple[TensorInfo, ...]) -> int | None:
    """The static leading (batch) dim shared by the model inputs, or None when any is dynamic/unknown."""
    dims = {i.shape[0] if i.shape and isinstance(i.shape[0], int) else None for i in inputs}
    return dims.pop() if len(dims) == 1 else None


def chunks(arrays: Arrays, batch: int | None) -> list[Arrays]:
    """Split every array along axis 0 into runs of ``batch`` samples (one run when ``batch`` is None or
    the arrays already have that many)."""
    total = min(int(a.shape[0]) for a in arrays.values()) if arrays else 0
    if batch is None or total <= batch:
        return [dict(arrays)]
    return [{k: v[start:start + batch] for k, v in arrays.items()} for start in range(0, total, batch)]


def run_chunked(run: Callable[[Arrays], Arrays], arrays: Arrays, batch: int | None) -> Arrays:
    """Run ``run`` over ``chunks(arrays, batch)`` and concatenate each output along axis 0."""
    parts = [run(part) for part in chunks(arrays, batch)]
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([np.asarray(p[name]) for p in parts], axis=0) for name in parts[0]}


def verify(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], source: str,
           tolerance: float | None = None, role: str = "", *,
           inputs: Mapping[str, np.ndarray] | None = None) -> Verification:
    """Bundle the per-output comparisons with where the inputs came from and the tolerance asked; pass
    the model ``inputs`` the outputs were computed from so that residual outputs are recognised."""
    samples = max((int(v.shape[0]) if np.ndim(v) else 1 for v in reference.values()), default=0)
    return Verification(compare_all(reference, candidate, inputs), source, samples, tolerance, role)


def output_error(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                 inputs: Mapping[str, np.ndarray]) -> float:
    """The error a tolerance applies to (``headline_error``) of ``candidate`` against ``reference`` computed
    from ``inputs``: residual outputs judged on their residual part. Fits ``DistillOptions.error``."""
    return headline_error(verify(reference, candidate, "", inputs=inputs))[0]


def benchmark(before: Callable[[], object], after: Callable[[], object], runs: int = 20,
              warmup: int = 3) -> Latency:
    """Median latency (ms) of ``before`` and ``after``, run alternately so that machine load hits both."""
    for _ in range(warmup):
        before()
        after()
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(runs):
        # Alternate who goes first so cache warmth does not favour one side.
        pair = ((before, times_a), (after, times_b)) if i % 2 == 0 else ((after, times_b), (before, times_a))
        for func, sink in pair:
            start = time.perf_counter()
            func()
            sink.append((time.perf_counter() - start) * 1000.0)
    return Latency(float(np.median(times_a)), float(np.median(times_b)), runs)
