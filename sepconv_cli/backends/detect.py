"""Format detection by content: ONNX protobuf, torch zip archives (.pt2 / TorchScript / torch.save),
legacy pickles, or a ``module:factory`` entry point. Imports neither torch nor onnx.
"""

from __future__ import annotations

import os
import re
import zipfile

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.errors import InputError

_ENTRYPOINT = re.compile(r"^(?P<target>[\w./\\-]+?(\.py)?):(?P<attr>[A-Za-z_][\w.]*)$")
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
# suffixes only PyTorch writes: such a file that is neither a zip nor a pickle is a broken PyTorch file
_TORCH_SUFFIXES = {".pt2": "a torch.export .pt2 archive", ".pt": "a PyTorch file", ".pth": "a PyTorch file",
                   ".ts": "a TorchScript archive", ".jit": "a TorchScript archive"}


def is_entrypoint(source: str) -> bool:
    """``package.module:factory`` or ``path/to/file.py:factory`` (and not an existing file)."""
    return not os.path.exists(source) and bool(_ENTRYPOINT.match(source))


def _zip_kind(path: str) -> str:
    """Tell a torch.export archive, a TorchScript archive and a torch.save zip apart by member names."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
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
    if is_entrypoint(source):
        return "entrypoint"
    if not os.path.exists(source):
        raise InputError(f"{source}: no such file")
    if os.path.isdir(source):
        raise InputError(f"{source}: is a directory, expected a model file")
    try:
        with open(source, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror})") from None
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
