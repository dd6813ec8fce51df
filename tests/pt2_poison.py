"""Poisoned ``torch.export`` archives for the hostile-input tests, built from a real ``torch.export.save``.

Every payload writes the file ``marker`` when it runs, so a test proves that nothing ran by checking that
the marker never appears. ``VARIANTS`` maps a name to a builder ``(clean archive bytes, marker) -> bytes``;
each places the payload where ``torch.export.load`` would reach it (a pickled weight, an opaque constant,
the sample inputs, a legacy weights file, a shape expression, a generated-code name, a custom object).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable

import torch
from torch import nn


class Payload:
    """Unpickling this calls ``exec`` on code that writes ``marker`` (a ``__reduce__`` payload)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class ShellPayload(Payload):
    """The same through ``os.system`` (a different import: ``posix.system``)."""

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class TinyNet(nn.Module):
    """conv 3->8 3x3, ReLU, conv 8->8 3x3: two candidates, a few hundred weights."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)))


def clean_archive(dynamic: bool = False) -> bytes:
    """A real ``torch.export.save`` archive of ``TinyNet`` (batch dim dynamic when ``dynamic``)."""
    torch.manual_seed(0)
    shapes = ({0: torch.export.Dim("N", min=2, max=64)},) if dynamic else None
    program = torch.export.export(TinyNet().eval(), (torch.randn(2, 3, 8, 8),), dynamic_shapes=shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _members(archive: bytes) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        names = zf.namelist()
        root = names[0].split("/")[0] + "/"
        return root, {n[len(root):]: zf.read(n) for n in names}


def _zip(root: str, members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(root + name, data)
    return out.getvalue()


def _torch_save(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _edit(archive: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    root, members = _members(archive)
    change(members)
    return _zip(root, members)


def pickled_weight(archive: bytes, marker: str) -> bytes:
    """The first weight stored as a ``torch.save`` pickle (``use_pickle``) holding the payload."""
    def change(members):
        key = "data/weights/model_weights_config.json"
        config = json.loads(members[key])
        entry = next(iter(config["config"].values()))
        entry["use_pickle"] = True
        members[key] = json.dumps(config).encode()
        members["data/weights/" + entry["path_name"]] = _torch_save({"w": ShellPayload(marker)})
    return _edit(archive, change)


def opaque_constant(archive: bytes, marker: str) -> bytes:
    """An opaque constant (read with ``pickle.loads``) holding the payload."""
    def change(members):
        key = "data/constants/model_constants_config.json"
        config = json.loads(members.get(key, b'{"config": {}}'))
        config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                    "tensor_meta": None}
        members[key] = json.dumps(config).encode()
        members["data/constants/opaque_obj_0"] = pickle.dumps(Payload(marker), protocol=4)
    return _edit(archive, change)


def sample_inputs(archive: bytes, marker: str) -> bytes:
    """Sample inputs whose pickle holds the payload (torch retries them with the full unpickler)."""
    def change(members):
        name = next(n for n in members if n.startswith("data/sample_inputs/"))
        members[name] = _torch_save(((Payload(marker),), {}))
    return _edit(archive, change)


def legacy_weights(archive: bytes, marker: str) -> bytes:
    """A legacy ``data/weights/model.pt`` (read instead of the weight payloads) holding the payload."""
    def change(members):
        members["data/weights/model.pt"] = _torch_save({"state": Payload(marker)})
    return _edit(archive, change)


def shape_expression(archive: bytes, marker: str) -> bytes:
    """A shape expression (``sympy.sympify`` evaluates it) that writes the marker, with no quote in it."""
    code = f"open({marker!r}, 'w').write('ran')"
    built = "+".join(f"chr({ord(c)})" for c in code)

    def change(members):
        text = members["models/model.json"].decode()
        old = text[text.index('"expr_str": "') + len('"expr_str": "'):]
        old = old[:old.index('"')]
        members["models/model.json"] = text.replace(old, f"exec({built})", 1).encode()
    return _edit(archive, change)


def generated_code_name(archive: bytes, marker: str) -> bytes:
    """A parameter name that breaks out of the quoted string torch.fx pastes it into (``getattr(self.c1,
    "<name>")``); the payload runs when the unlifted module is called. ``marker`` must hold no dot."""
    name = f'weight") if open("{marker}", "w") else getattr(getattr(self, "c1"), "weight'

    def change(members):
        for key in ("models/model.json", "data/weights/model_weights_config.json"):
            text = members[key].decode()
            members[key] = text.replace('"c1.weight"', json.dumps("c1." + name)).encode()
    return _edit(archive, change)


def custom_object(archive: bytes, marker: str) -> bytes:
    """A TorchScript custom object constant (its class's ``__setstate__`` would run on load)."""
    def change(members):
        key = "data/constants/model_constants_config.json"
        config = json.loads(members.get(key, b'{"config": {}}'))
        config["config"]["obj"] = {"path_name": "custom_obj_0", "is_param": False, "use_pickle": True,
                                   "tensor_meta": None}
        members[key] = json.dumps(config).encode()
        members["data/constants/custom_obj_0"] = pickle.dumps(Payload(marker), protocol=2)
    return _edit(archive, change)


def legacy_layout(archive: bytes, marker: str) -> bytes:
    """The pre-2.8 layout (top-level ``serialized_*`` members) with a poisoned state dict."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("version", "8.0")
        zf.writestr("serialized_exported_program.json", "{}")
        zf.writestr("serialized_state_dict.pt", _torch_save({"w": Payload(marker)}))
        zf.writestr("serialized_constants.pt", _torch_save({}))
        zf.writestr("serialized_example_inputs.pt", _torch_save(((), {})))
    return out.getvalue()


VARIANTS: dict[str, Callable[[bytes, str], bytes]] = {
    "pickled_weight": pickled_weight,
    "opaque_constant": opaque_constant,
    "sample_inputs": sample_inputs,
    "legacy_weights": legacy_weights,
    "shape_expression": shape_expression,
    "generated_code_name": generated_code_name,
    "custom_object": custom_object,
    "legacy_layout": legacy_layout,
}
