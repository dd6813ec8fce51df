"""Fuzz cases for sepconv's command line: seeded, structure-aware and byte-level mutations of every input
it reads. ``generate(seed, count)`` returns the same cases for the same seed; each ``Case`` is the files
to write into a fresh folder and the command line to run there. Nothing here imports sepconv: the cases
run in real processes (``fuzz_run``), so a crash or a hang in sepconv cannot hide in the generator.

Classes (``CLASSES``, with their share of the cases):

- ``onnx-struct``: a seed ONNX model with one to three structure-aware edits (``fuzz_onnx``); a convert
  may calibrate or verify on an arrays file, itself valid or hostile (``fuzz_files.arrays_file``);
- ``onnx-bytes``: a serialised seed with one or two byte-level edits;
- ``config``: a budget config (pyproject.toml / sepconv.toml) mutated (``fuzz_files``);
- ``baseline``: a baseline report (JSON) mutated, read by ``check --baseline --max-growth 0%``;
- ``pytorch``: hostile ``.pt2`` and ``.pt`` archives (members swapped, corrupted, payload pickles);

run under ``analyze``, ``check`` or ``convert`` (convert with ``--run-timeout`` and ``--max-memory``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import fuzz_files
import fuzz_onnx
import onnx


@dataclass(frozen=True)
class Case:
    """One run: ``files`` (relative path -> bytes) written into a fresh folder, ``argv`` run there.
    ``expect_json``: stdout must be one JSON document when the command succeeds; ``outputs``: files the
    command may leave behind when it succeeds; ``marker``: the file a payload would create."""

    klass: str
    mutation: str
    files: dict[str, bytes]
    argv: tuple[str, ...]
    expect_json: bool = False
    outputs: tuple[str, ...] = ()
    marker: str = fuzz_files.MARKER
    index: int = 0


CONVERT_OUT = ("out/model.onnx", "out/model.onnx.manifest.json", "out/model.onnx.data")


INPUT_SHAPES = {"conv": (8, 16, 16), "classifier": (4, 12, 12), "function": (8, 16, 16)}
"""Seed -> one sample's input shape (input ``x``), for ``--calibrate`` and ``--inputs`` arrays."""


def _onnx_command(rng: random.Random, seed: str, files: dict[str, bytes]) -> tuple[tuple[str, ...], bool,
                                                                                   tuple[str, ...], str]:
    """(argv, expect_json, outputs, what the arrays are) of a command reading ``model.onnx``; a convert may
    calibrate or verify on an arrays file (added to ``files``)."""
    choice, name = rng.random(), "model.onnx"
    if choice < 0.3:
        return ("analyze", name, "--format", "json"), True, (), ""
    if choice < 0.4:
        return ("analyze", name), False, (), ""
    if choice < 0.6:
        return ("check", name, "--max-params", "1G", "--no-config"), False, (), ""
    argv = ("convert", name, "-o", "out/model.onnx", "--rank", "1", "--run-timeout", "10", "--max-memory", "1GiB")
    if choice < 0.8:
        return argv, False, CONVERT_OUT, ""
    files["arrays.npz"], what = fuzz_files.arrays_file(rng, "x", INPUT_SHAPES[seed])
    flag = ("--calibrate", "arrays.npz", "--calib-samples", "8") if rng.random() < 0.6 else ("--inputs", "arrays.npz")
    return argv + flag, False, CONVERT_OUT, f"; {flag[0]} arrays: {what}"


def _with_side_files(rng: random.Random, files: dict[str, bytes]) -> dict[str, bytes]:
    if rng.random() < 0.3:
        files["weights.bin"] = rng.randbytes(rng.choice([0, 16, 4608]))
    files["out/.keep"] = b""
    return files


def onnx_struct(rng: random.Random) -> Case:
    model = onnx.ModelProto()
    seed = rng.choice(sorted(fuzz_onnx.SEEDS))
    model.CopyFrom(fuzz_onnx.SEEDS[seed]())
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        name = rng.choice(sorted(fuzz_onnx.STRUCTURE_MUTATORS))
        try:
            done.append(f"{name}: {fuzz_onnx.STRUCTURE_MUTATORS[name](rng, model)}")
        except (IndexError, ValueError, TypeError, AttributeError):
            done.append(f"{name}: not applicable")
    data = fuzz_onnx.serialise(model)
    if rng.random() < 0.1:
        data, what = fuzz_onnx.flip_utf8(rng, data)
        done.append(what)
    files = _with_side_files(rng, {"model.onnx": data})
    argv, expect_json, outputs, arrays = _onnx_command(rng, seed, files)
    return Case("onnx-struct", f"{seed}; " + "; ".join(done) + arrays, files, argv, expect_json, outputs)


def onnx_bytes(rng: random.Random) -> Case:
    seed = rng.choice(sorted(fuzz_onnx.SEEDS))
    data = fuzz_onnx.serialise(fuzz_onnx.SEEDS[seed]())
    done = []
    for _ in range(rng.choice([1, 1, 2])):
        data, what = fuzz_onnx.mutate_bytes(rng, data or b"\0")
        done.append(what)
    files = _with_side_files(rng, {"model.onnx": data})
    argv, expect_json, outputs, arrays = _onnx_command(rng, seed, files)
    return Case("onnx-bytes", f"{seed}; " + "; ".join(done) + arrays, files, argv, expect_json, outputs)


def config(rng: random.Random) -> Case:
    files, what = fuzz_files.mutate_config(rng)
    files["model.onnx"] = fuzz_onnx.serialise(fuzz_onnx.seed_conv())
    files["base.json"] = json.dumps(fuzz_files.baseline_seed()).encode()
    name = next(n for n in files if n.endswith(".toml"))
    argv = rng.choice([("check",), ("check", "model.onnx"), ("check", "--config", name, "model.onnx"),
                       ("check", "--format", "json")])
    return Case("config", what, files, argv, expect_json="json" in argv)


def baseline(rng: random.Random) -> Case:
    data, what = fuzz_files.mutate_baseline(rng)
    files = {"model.onnx": fuzz_onnx.serialise(fuzz_onnx.seed_conv()), "base.json": data}
    argv = ("check", "model.onnx", "--baseline", "base.json", "--max-growth", "0%", "--no-config")
    if rng.random() < 0.3:
        argv += ("--baseline-any",)
    return Case("baseline", what, files, argv)


def pytorch(rng: random.Random) -> Case:
    suffix = rng.choice([".pt2", ".pt2", ".pt"])
    data, what = fuzz_files.mutate_archive(rng, suffix)
    name = "model" + suffix
    choice = rng.random()
    if choice < 0.5:
        argv, expect_json, outputs = ("analyze", name, "--format", "json"), True, ()
    elif choice < 0.85 or suffix == ".pt":
        argv, expect_json, outputs = ("check", name, "--max-params", "1G", "--no-config"), False, ()
    else:
        argv, expect_json = ("convert", name, "-o", "out/model.pt2", "--rank", "1", "--run-timeout", "10"), False
        outputs = ("out/model.pt2", "out/model.pt2.manifest.json")
    return Case("pytorch", f"{suffix}: {what}", {name: data, "out/.keep": b""}, argv, expect_json, outputs)


CLASSES: dict[str, tuple[float, Callable[[random.Random], Case]]] = {
    "onnx-struct": (0.42, onnx_struct),
    "onnx-bytes": (0.18, onnx_bytes),
    "config": (0.14, config),
    "baseline": (0.12, baseline),
    "pytorch": (0.14, pytorch),
}
"""Class -> (share of the cases, generator)."""


def generate(seed: int, count: int, classes: tuple[str, ...] = tuple(CLASSES)) -> list[Case]:
    """``count`` cases drawn with ``random.Random(seed)``: the same list for the same arguments."""
    rng = random.Random(seed)
    weights = [CLASSES[name][0] for name in classes]
    cases = []
    for index in range(count):
        name = rng.choices(classes, weights)[0]
        case_rng = random.Random(f"{seed}:{index}")  # each case reproducible on its own
        case = CLASSES[name][1](case_rng)
        cases.append(Case(case.klass, case.mutation, case.files, case.argv, case.expect_json, case.outputs,
                          case.marker, index))
    return cases


__all__ = ["CLASSES", "Case", "generate"]
