"""Load unlabeled calibration inputs and check them against the model's inputs.

Accepted sources: an ``.npz`` file (one array per model input, keyed by input name, or a single array of
any name for a single-input model), a single ``.npy`` file (single-input models), or a folder of ``.npy``
files (single-input models; each file one sample or a batch) and/or ``.npz`` files (read like one
``.npz`` each), taken in name order. Arrays are ``(samples, *input_shape[1:])``; a file without the batch
axis is one sample. Every problem is an ``InputError`` whose message is one line naming the file.

The same rule reads verification inputs (``verify.load_inputs``): a file is accepted or refused alike
whichever step reads it. A cast within a dtype kind (float64 -> float32) is fine and noted.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np

from sepconv_cli.core.records import TensorInfo, format_shape
from sepconv_cli.errors import InputError
from sepconv_cli.files import require_regular

# Model dtype name -> numpy dtype. Names follow the loaders' TensorInfo.dtype (ONNX element type names).
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64), "float": np.dtype(np.float32), "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}


def numpy_dtype(info: TensorInfo) -> np.dtype:
    """The numpy dtype of a model input (InputError for types we cannot feed)."""
    try:
        return DTYPES[info.dtype]
    except KeyError:
        raise InputError(f"input {info.name!r}: cannot build inputs of dtype {info.dtype}") from None


# A model input dtype accepts arrays of the same numpy kind (casting within the kind, e.g. float64 to
# float32, is fine; float images for an int input or the reverse are refused).
KINDS = {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean"}


def _kind(dtype: np.dtype) -> str:
    return "i" if dtype.kind == "u" else dtype.kind


def _read(path: str) -> dict[str, np.ndarray]:
    """Arrays of one ``.npz`` / ``.npy`` file (``{"": array}`` for ``.npy``); a FIFO or device is refused
    before it is opened (numpy would block on a FIFO)."""
    require_regular(path, "numpy file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file")
    try:
        if path.endswith(".npy"):
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, MemoryError) as exc:  # MemoryError: huge header
        raise InputError(f"{path}: not a readable numpy file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not arrays:
        raise InputError(f"{path}: holds no arrays")
    return arrays


def _assign(path: str, arrays: dict[str, np.ndarray], inputs: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
    """Map the file's arrays to model inputs by name (a lone array feeds a lone input)."""
    names = [t.name for t in inputs]
    if len(names) == 1 and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        found = ", ".join(sorted(k for k in arrays if k)) or "one unnamed array"
        raise InputError(f"{path}: needs arrays named {', '.join(names)} (the model's inputs); found {found}")
    return {n: arrays[n] for n in names}


def expected_shape(shape: Sequence) -> str:
    """How an input's shape reads in messages: the sample axis is free (``N``), e.g. ``Nx3x32x32``."""
    return "x".join(["N"] + [str(d) for d in shape[1:]])


def conform(path: str, array: np.ndarray, info: TensorInfo) -> np.ndarray:
    """``array`` as a batch for input ``info``: batch axis added for a single sample, dtype cast within kind."""
    shape = info.shape
    a = np.asarray(array)
    if shape is not None and a.ndim == len(shape) - 1:
        a = a[None]
    if shape is not None:
        wrong = a.ndim != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(shape[1:], a.shape[1:]))
        if wrong:
            raise InputError(f"{path}: array for input {info.name!r} has shape {format_shape(np.shape(array))}, "
                             f"the model expects {expected_shape(shape)}")
    target = numpy_dtype(info)
    if _kind(a.dtype) != _kind(target):
        raise InputError(f"{path}: array for input {info.name!r} is {a.dtype} ({KINDS.get(a.dtype.kind, a.dtype.kind)}), "
                         f"the model expects {target}")
    if a.shape[0] == 0:
        raise InputError(f"{path}: array for input {info.name!r} holds no samples")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise InputError(f"{path}: array for input {info.name!r} contains NaN or Inf")
    return a.astype(target, copy=False)


def _note_cast(notes: list[str] | None, path: str, name: str, source: np.dtype, target: np.dtype) -> None:
    note = f"{path}: {source} arrays for input {name!r} were cast to {target}"
    if notes is not None and source != target and note not in notes:
        notes.append(note)


def _files(path: str) -> list[str]:
    """The numpy files ``path`` names: itself, or the ``.npy``/``.npz`` files of a folder in name order."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or folder")
    if not os.path.isdir(path):
        return [path]
    found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".npy", ".npz")))
    if not found:
        raise InputError(f"{path}: folder holds no .npy or .npz files")
    return found


def load_calibration_inputs(path: str, inputs: Sequence[TensorInfo], samples: int | None = 256,
                            notes: list[str] | None = None) -> dict[str, np.ndarray]:
    """``{input name: (S, ...) array}`` from ``path``, at most ``samples`` samples (None: all), checked
    against ``inputs``; a note per input whose arrays were cast to the model's dtype goes to ``notes``."""
    if samples is not None and samples < 1:
        raise InputError(f"{path}: --calib-samples must be at least 1, got {samples}")
    parts: dict[str, list[np.ndarray]] = {t.name: [] for t in inputs}
    have = 0
    for file in _files(path):
        if samples is not None and have >= samples:
            break
        arrays = _read(file)
        if "" in arrays and len(inputs) != 1:
            raise InputError(f"{file}: a .npy file can only feed a single-input model; use an .npz keyed by input name")
        batch = {}
        for info, array in zip(inputs, _assign(file, arrays, inputs).values()):
            batch[info.name] = conform(file, array, info)
            _note_cast(notes, path, info.name, array.dtype, batch[info.name].dtype)
        counts = {len(a) for a in batch.values()}
        if len(counts) != 1:
            raise InputError(f"{file}: inputs hold different sample counts ({', '.join(map(str, sorted(counts)))})")
        for name, a in batch.items():
            parts[name].append(a)
        have += counts.pop()
    return {name: np.concatenate(chunks)[:samples] for name, chunks in parts.items()}
