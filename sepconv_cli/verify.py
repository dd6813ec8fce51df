"""Numerical verification of a conversion, in plain numpy.

Compares the outputs of the original and converted models (max abs error, relative L2 error, cosine
similarity, top-1 agreement for classifier-shaped outputs), builds seeded random inputs from the
analysed input shapes, loads user inputs from an ``.npz`` file with dtype/shape checks, and times two
callables side by side (interleaved runs, medians in milliseconds).
"""

from __future__ import annotations

import os
import time
import zipfile
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from sepconv_cli.errors import InputError, ShapeError
from sepconv_cli.records import TensorInfo, format_shape

Arrays = dict[str, np.ndarray]

# Model dtype name -> numpy dtype. Names follow the loaders' TensorInfo.dtype (ONNX element type names).
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64), "float": np.dtype(np.float32), "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}


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
    """All outputs compared, where the inputs came from, and the verdict against ``tolerance``."""

    outputs: tuple[OutputComparison, ...]
    inputs_source: str
    samples: int
    tolerance: float | None = None

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


def numpy_dtype(info: TensorInfo) -> np.dtype:
    """The numpy dtype of a model input (InputError for types we cannot feed)."""
    try:
        return DTYPES[info.dtype]
    except KeyError:
        raise InputError(f"input {info.name!r}: cannot build inputs of dtype {info.dtype}") from None


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


def random_inputs(inputs: tuple[TensorInfo, ...], seed: int = 0) -> Arrays:
    """Seeded inputs for every model input: standard normal floats, integers in [0, 10), random bools."""
    rng = np.random.default_rng(seed)
    out: Arrays = {}
    for info in inputs:
        dtype, shape = numpy_dtype(info), concrete_shape(info)
        if dtype.kind == "f":
            out[info.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[info.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            out[info.name] = rng.integers(0, 10, shape).astype(dtype)
    return out


def load_inputs(path: str, inputs: tuple[TensorInfo, ...]) -> Arrays:
    """Read ``path`` (``.npz``) and check it against the model inputs: names (a lone array may have any
    name for a single-input model), dtype, rank, static dims, and finite values."""
    arrays = _read_npz(path)
    if len(inputs) == 1 and len(arrays) == 1 and inputs[0].name not in arrays:
        arrays = {inputs[0].name: next(iter(arrays.values()))}
    missing = [i.name for i in inputs if i.name not in arrays]
    if missing:
        raise InputError(f"{path}: needs arrays named {', '.join(missing)} (the model's inputs); "
                         f"found {', '.join(sorted(arrays))}")
    return {info.name: _checked(path, info, arrays[info.name]) for info in inputs}


def _read_npz(path: str) -> Arrays:
    """All arrays of an ``.npz`` file (InputError naming the file on any failure)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    if not arrays:
        raise InputError(f"{path}: contains no arrays")
    return arrays


def _checked(path: str, info: TensorInfo, array: np.ndarray) -> np.ndarray:
    """``array`` if it fits ``info`` (dtype, rank, static dims, finite), else InputError/ShapeError."""
    want = numpy_dtype(info)
    if array.dtype != want:
        raise InputError(f"{path}: array {info.name!r} has dtype {array.dtype}, the model expects {want}")
    shape = info.shape
    if shape is not None:
        # a fixed leading batch dim takes any number of samples: they run in chunks of that size
        batched = bool(shape) and isinstance(shape[0], int) and array.ndim == len(shape) and (
            array.shape[0] % shape[0] == 0)
        bad = len(shape) != array.ndim or any(
            isinstance(d, int) and d != a and not (axis == 0 and batched)
            for axis, (d, a) in enumerate(zip(shape, array.shape)))
        if bad:
            raise ShapeError(f"{path}: array {info.name!r} has shape {format_shape(array.shape)}, "
                             f"the model expects {format_shape(shape)}")
    if array.size == 0:
        raise InputError(f"{path}: array {info.name!r} is empty")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{path}: array {info.name!r} contains NaN or Inf")
    return array


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
           tolerance: float | None = None) -> Verification:
    """Bundle the per-output comparisons with where the inputs came from and the tolerance asked."""
    samples = max((int(v.shape[0]) if np.ndim(v) else 1 for v in reference.values()), default=0)
    return Verification(compare_all(reference, candidate), source, samples, tolerance)


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
