"""Seeds and mutators of the fuzzer's non-ONNX inputs: budget configs (TOML), baselines (JSON) and hostile
PyTorch archives (``.pt2`` from torch.export, ``.pt`` from torch.save). Seeded and pure: each returns bytes
and a phrase saying what it did; torch is imported only to build the clean archives once.

A payload is a pickle whose ``__reduce__`` runs ``touch MARKER`` with the full unpickler; a config entry
point is a module beside the config whose import creates the marker. Neither may ever run.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import random
import warnings
import zipfile

from fuzz_onnx import mutate_bytes

MARKER = "PAYLOAD_RAN"
"""File a payload creates in the case folder (relative path)."""

CONFIG_SEED = """[tool.sepconv]
max-params = "5M"

[tool.sepconv.models."model.onnx"]
max-macs = "200M"
input-shape = "1x8x16x16"
baseline = "base.json"
max-growth = "5%"
"""

ODD_VALUES = ('5', '-1', '"NaN"', 'nan', 'inf', '-inf', '"1e400"', '1e400', '"5X"', 'true', '[]', '{}', '""',
              '"' + "9" * 5000 + '"', "9" * 5000, '"/dev/zero"', '"\\u001b[31m"', '"' + "a" * 200_000 + '"')


class _Payload:
    """Unpickled with the full unpickler, runs ``touch`` on the marker."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def payload_pickle(marker: str = MARKER, protocol: int = 2) -> bytes:
    """A pickle that runs the payload (built here; never loaded here)."""
    return pickle.dumps(_Payload(marker), protocol=protocol)


def _deep(open_: str, close: str, depth: int) -> str:
    return open_ * depth + close * depth


def mutate_config(rng: random.Random) -> tuple[dict[str, bytes], str]:
    """A config file (``pyproject.toml`` or ``sepconv.toml``) and any file it needs, and what changed."""
    text, what = CONFIG_SEED, ""
    lines = text.splitlines()
    choice = rng.random()
    files: dict[str, bytes] = {}
    if choice < 0.35:
        index = rng.choice([i for i, line in enumerate(lines) if "=" in line])
        key = lines[index].split("=")[0].strip()
        lines[index] = f"{key} = {rng.choice(ODD_VALUES)}"
        text, what = "\n".join(lines), f"value of {key}"
    elif choice < 0.45:
        text, what = "tool = 5\n" if rng.random() < 0.5 else "[tool]\nsepconv = 5\n", "tool table replaced"
    elif choice < 0.55:
        text = f"[tool.sepconv]\nmax-params = {_deep('[', ']', rng.choice([100, 5000, 50000]))}\n"
        what = "deeply nested array"
    elif choice < 0.62:
        text = CONFIG_SEED + f"\n[tool.sepconv.models.\"{rng.choice(['evilmod:build', 'evilmod.sub:make'])}\"]\n"
        files["evilmod.py"] = f"import os\nopen(os.path.join(os.path.dirname(__file__), {MARKER!r}), 'w')\n" \
                              "def build():\n    return None\n".encode()
        what = "entry point in the config"
    elif choice < 0.72:
        pattern = rng.choice(["**/*.onnx", "../*", "/etc/*", "**", "[", "model.onnx/..", "*" * 500])
        text = CONFIG_SEED.replace('"model.onnx"', json.dumps(pattern))
        what = f"glob {pattern[:20]}"
    elif choice < 0.8:
        text = CONFIG_SEED + "\n" + rng.choice(["max-params = \"1M\"\n", "[tool.sepconv]\n", "max-pararms = 5\n",
                                                 "baseline = \"/dev/zero\"\n", "\x00\n"])
        what = "duplicate or unknown key"
    data = text.encode()
    if choice >= 0.8:
        data, what = mutate_bytes(rng, data)
    name = rng.choice(["pyproject.toml", "sepconv.toml"])
    if name == "sepconv.toml":
        data = data.replace(b"[tool.sepconv.", b"[").replace(b"[tool.sepconv]\n", b"")
    files[name] = data
    return files, f"{name}: {what}"


def baseline_seed(model_path: str = "model.onnx") -> dict:
    """A minimal valid analyze report for the seed conv model."""
    return {"schema_version": 1, "model": {"path": model_path, "format": "onnx"},
            "totals": {"params": 1152, "macs": 294912, "flops": 589824, "buffers": 0},
            "layers": [], "uncounted": [], "candidates": [], "excluded": []}


def _set_random_leaf(rng: random.Random, data: dict, value) -> str:
    path = []
    node = data
    while True:
        key = rng.choice(list(node))
        path.append(key)
        if isinstance(node[key], dict) and node[key] and rng.random() < 0.7:
            node = node[key]
            continue
        node[key] = value
        return ".".join(path)


def mutate_baseline(rng: random.Random) -> tuple[bytes, str]:
    """A baseline JSON file and what changed (non-finite numbers, huge strings, nesting, bytes)."""
    data = baseline_seed()
    choice = rng.random()
    if choice < 0.45:
        raw = rng.choice(["Infinity", "-Infinity", "NaN", "1e400", "-1", '"5"', "null", "[]", "9" * 5000, "true",
                          '"' + "x" * 10_000_000 + '"', "0"])
        placeholder = "@@VALUE@@"
        where = _set_random_leaf(rng, data, placeholder)
        return json.dumps(data).replace(f'"{placeholder}"', raw).encode(), f"{where} = {raw[:12]}"
    if choice < 0.55:
        return (_deep("[", "]", rng.choice([1000, 100_000]))).encode(), "deeply nested array"
    if choice < 0.65:
        del data[rng.choice(list(data))]
        return json.dumps(data).encode(), "key removed"
    if choice < 0.7:
        return json.dumps([data]).encode(), "report wrapped in a list"
    return mutate_bytes(rng, json.dumps(data).encode())


def _npy_header_bomb(shape: tuple[int, ...]) -> bytes:
    """An .npy member declaring ``shape`` float32 values with no data behind the header."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def arrays_file(rng: random.Random, name: str, shape: tuple[int, ...]) -> tuple[bytes, str]:
    """An ``.npz`` of inputs for ``--calibrate`` / ``--inputs`` (``name``: the input, ``shape``: one
    sample's), valid or not: NaN/Inf values, wrong shapes or dtypes, object arrays holding a payload, a
    member declaring 2**40 values, or byte-level edits."""
    import numpy as np

    values = np.random.default_rng(rng.randrange(2**32)).standard_normal((8, *shape)).astype(np.float32)
    choice, what = rng.random(), "valid"
    members: dict[str, object] = {name: values}
    if choice < 0.15:
        values[rng.randrange(8)] = rng.choice([np.nan, np.inf])
        what = "non-finite samples"
    elif choice < 0.3:
        members = {name: values.reshape(-1)[: rng.randrange(1, values.size)]} if rng.random() < 0.5 else \
            {name: values.astype(rng.choice([np.float64, np.int8, np.bool_, np.complex64]))}
        what = "wrong shape or dtype"
    elif choice < 0.42:
        members = {name: np.array([_Payload(MARKER)] * 2, dtype=object)}
        what = "object array holding a payload"
    elif choice < 0.5:
        members = {"other": values}
        what = "input named otherwise"
    out = io.BytesIO()
    np.savez(out, **members)
    data = out.getvalue()
    if choice >= 0.5 and choice < 0.6:
        data = _rezip([(f"{name}.npy", _npy_header_bomb((2**40,) + tuple(shape)))])
        what = "member declaring 2**40 samples"
    elif choice >= 0.6 and choice < 0.75:
        data, what = mutate_bytes(rng, data)
    return data, what


@functools.lru_cache(maxsize=1)
def torch_seeds() -> dict[str, bytes]:
    """Clean archives: a ``.pt2`` of a tiny conv net (torch.export) and its state_dict (torch.save)."""
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    net.eval()
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(net, (torch.randn(1, 3, 8, 8),)), buffer)
    state = io.BytesIO()
    torch.save(net.state_dict(), state)
    return {".pt2": buffer.getvalue(), ".pt": state.getvalue()}


def _members(archive: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _rezip(members: list[tuple[str, bytes]], compress: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compress) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compress)
    return out.getvalue()


def mutate_archive(rng: random.Random, suffix: str) -> tuple[bytes, str]:
    """A hostile PyTorch archive: members swapped, corrupted, truncated or renamed, payload pickles put
    in, a zip bomb, or byte-level edits of the whole file."""
    members = [(info.filename, data) for info, data in _members(torch_seeds()[suffix])]
    names = [name for name, _ in members]
    choice = rng.random()
    if choice < 0.2 and len(members) > 1:
        i, j = rng.sample(range(len(members)), 2)
        members[i], members[j] = (members[i][0], members[j][1]), (members[j][0], members[i][1])
        return _rezip(members), f"members {names[i]} and {names[j]} swapped"
    if choice < 0.45:
        pickles = [i for i, name in enumerate(names) if name.endswith((".pkl", "/data", ".pt")) or "pickle" in name
                   or members[i][1][:1] == b"\x80"] or list(range(len(members)))
        index = rng.choice(pickles)
        members[index] = (names[index], payload_pickle(protocol=rng.choice([0, 2, 4])))
        return _rezip(members), f"payload in {names[index]}"
    if choice < 0.6:
        index = rng.randrange(len(members))
        data, what = mutate_bytes(rng, members[index][1] or b"\0")
        members[index] = (names[index], data)
        return _rezip(members), f"{names[index]}: {what}"
    if choice < 0.7:
        index = rng.randrange(len(members))
        new = rng.choice(["../../evil", "/abs/path", names[index] + "\x00x", names[0], "a/" * 200 + "b"])
        members[index] = (new, members[index][1])
        return _rezip(members), f"{names[index]} renamed {new[:20]!r}"
    if choice < 0.77:
        index = rng.randrange(len(members))
        members[index] = (names[index], b"\0" * 64 * 2**20)
        return _rezip(members, zipfile.ZIP_DEFLATED), f"{names[index]}: 64 MiB of zeros, deflated"
    if choice < 0.85:
        return payload_pickle(protocol=rng.choice([2, 4])), "a bare payload pickle"
    return mutate_bytes(rng, torch_seeds()[suffix])
