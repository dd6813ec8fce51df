"""Format detection by content: ONNX protobuf, torch zip archives (.pt2 / TorchScript / torch.save),
legacy pickles, or a ``module:factory`` entry point. Imports neither torch nor onnx.

A model path must be a regular file (a FIFO would block the first read, ``/dev/zero`` never ends), and a
PyTorch format without torch installed is an ``InputError`` telling how to install it, so that ``check``
still reports every other model.
"""

from __future__ import annotations

import importlib.util
import os
import re
import zipfile

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.errors import InputError
from sepconv_cli.files import read_head

_ENTRYPOINT = re.compile(r"^(?P<target>[\w./\\-]+?(\.py)?):(?P<attr>[A-Za-z_][\w.]*)$")
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
# suffixes only PyTorch writes: such a file that is neither a zip nor a pickle is a broken PyTorch file
_TORCH_SUFFIXES = {".pt2": "a torch.export .pt2 archive", ".pt": "a PyTorch file", ".pth": "a PyTorch file",
                   ".ts": "a TorchScript archive", ".jit": "a TorchScript archive"}


TORCH_FORMATS = frozenset({"pt2", "torchscript", "state_dict", "pickle", "entrypoint"})
TORCH_MISSING = "PyTorch models need the torch extra: pip install 'sepconv[torch]'"


def torch_installed() -> bool:
    """Whether ``import torch`` can succeed (found without importing it)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def is_entrypoint(source: str) -> bool:
    """``package.module:factory`` or ``path/to/file.py:factory`` (and not an existing file)."""
    return not os.path.exists(source) and bool(_ENTRYPOINT.match(source))


def _zip_kind(path: str) -> str:
    """Tell a torch.export archive, a TorchScript archive and a torch.save zip apart by member names."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, NotImplementedError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: corrupt zip archive ({exc})") from None
    if any(n.endswith("serialized_exported_program.json") or "/models/" in n and n.endswith(".json")
           for n in names) or any(n.endswith("archive_format") for n in names) and any(
               "/models/" in n for n in names):
        return "pt2"
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "state_dict"  # torch.save zip: a state_dict, or a pickled module (decided on load)
    raise InputError(f"{path}: zip archive is not a PyTorch file (no .pt2, TorchScript or torch.save layout)")


def detect_format(source: str, options: LoadOptions | None = None) -> str:
    """Return the loader format name for ``source`` or raise ``InputError`` naming the problem."""
    fmt = _format_of(source)
    if fmt in TORCH_FORMATS and not torch_installed():
        raise InputError(f"{source}: {TORCH_MISSING}")
    return fmt


def _format_of(source: str) -> str:
    if is_entrypoint(source):
        return "entrypoint"
    if not os.path.lexists(source):
        raise InputError(f"{source}: no such file")
    head = read_head(source, 8, "model file")
    if not head:
        raise InputError(f"{source}: empty file")
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(source)
    if head[:2] in _PICKLE_MAGIC:
        return "state_dict"  # legacy (non-zip) torch.save
    kind = _TORCH_SUFFIXES.get(os.path.splitext(source)[1].lower())
    if kind:
        raise InputError(f"{source}: not {kind} (not a zip file)")
    return "onnx"
