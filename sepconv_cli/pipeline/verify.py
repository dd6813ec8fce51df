"""Numerical verification of a conversion, in plain numpy.

Compares the outputs of the original and converted models (max abs error, relative L2 error, cosine
similarity, top-1 agreement for classifier-shaped outputs), builds seeded random inputs from the
analysed input shapes, loads user inputs (by the rule of calibration inputs), and times two
callables side by side (interleaved runs, medians in milliseconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sepconv_cli.core.records import TensorInfo, format_shape
from sepconv_cli.errors import ShapeError
from sepconv_cli.pipeline.inputs import (
    expected_shape,
    load_calibration_inputs,
    numpy_dtype,
)

Arrays = dict[str, np.ndarray]

@dataclass(frozen=True)
class OutputComparison:
    """How close one converted output is to the original one.

    ``rel_l2`` = ||a - b|| / ||a||; ``cosine`` of the flattened tensors; ``top1`` is the share of rows
    whose argmax agrees (None unless the output is classifier-shaped: ``(N, C)`` with C > 1).
    """

    name: str
    max_abs: float
    rel_l2: float
    cosine: float
    top1: float | None = None


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
    def passed(self) -> bool:
        """True when no tolerance was asked or the worst relative error is within it."""
        return self.tolerance is None or self.rel_l2 <= self.tolerance


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


def compare(name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputComparison:
    """Compare one output tensor pair (computed in float64)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        raise ShapeError(f"output {name!r}: converted shape {b.shape} differs from original {a.shape}")
    diff = a - b
    norm_a, norm_b, norm_d = (float(np.linalg.norm(x.ravel())) for x in (a, b, diff))
    rel = norm_d / norm_a if norm_a > 0 else (0.0 if norm_d == 0 else float("inf"))
    if norm_a > 0 and norm_b > 0:
        cosine = float(np.dot(a.ravel(), b.ravel()) / (norm_a * norm_b))
    else:
        cosine = 1.0 if norm_a == norm_b else 0.0
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    return OutputComparison(name, max_abs, rel, cosine, _top1(a, b))


def _top1(a: np.ndarray, b: np.ndarray) -> float | None:
    """Argmax agreement over rows for ``(N, C)`` outputs with C > 1 (classifier logits/probabilities)."""
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] == 0:
        return None
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def compare_all(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> tuple[OutputComparison, ...]:
    """Compare every output of ``reference`` with the same-named output of ``candidate``."""
    missing = [n for n in reference if n not in candidate]
    if missing:
        raise ShapeError(f"converted model lacks output(s) {', '.join(missing)}")
    return tuple(compare(n, reference[n], candidate[n]) for n in reference)


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


def random_inputs(inputs: tuple[TensorInfo, ...], seed: int = 0, samples: int = 1) -> Arrays:
    """Seeded inputs for every model input: standard normal floats, integers in [0, 10), random bools.
    ``samples`` > 1 stacks that many along the leading (batch) axis, when every input has one that is
    shared (a fixed batch, run in chunks of it, or a dynamic one); otherwise one sample is drawn."""
    rng = np.random.default_rng(seed)
    batched = samples > 1 and all(i.shape for i in inputs) and (
        fixed_batch(inputs) is not None or all(not isinstance(i.shape[0], int) for i in inputs))
    out: Arrays = {}
    for info in inputs:
        dtype, shape = numpy_dtype(info), concrete_shape(info)
        if batched:
            shape = (shape[0] * samples,) + shape[1:]
        if dtype.kind == "f":
            out[info.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[info.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            out[info.name] = rng.integers(0, 10, shape).astype(dtype)
    return out


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
           tolerance: float | None = None, role: str = "") -> Verification:
    """Bundle the per-output comparisons with where the inputs came from and the tolerance asked."""
    samples = max((int(v.shape[0]) if np.ndim(v) else 1 for v in reference.values()), default=0)
    return Verification(compare_all(reference, candidate), source, samples, tolerance, role)


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
