"""Static inspection of pickle streams: which callables would unpickling import, before anything runs.

Unpickling can only reach Python code through the names a stream imports (``GLOBAL``, ``STACK_GLOBAL``,
``INST``, the ``EXT*`` extension registry). ``unsafe_names`` walks a stream's opcodes without executing
them, tracks the strings on the stack so that a ``STACK_GLOBAL`` built from memoised strings is resolved,
and returns every imported name outside ``allowed()``: the names torch's weights-only unpickler accepts
(tensor rebuild functions, storages, dtypes, ``collections.OrderedDict``...). A stream with none of them
unpickles to the same tensors and containers under the full unpickler as under the weights-only one, so
nothing but torch's own rebuild code runs. A name that cannot be known statically (``STACK_GLOBAL`` over
computed values, an extension code) counts as unsafe.

``torch_save_findings`` applies this to a ``torch.save`` blob (a zip with ``data.pkl``, or the legacy
sequence of pickles) the way ``torch.load`` would read it.
"""

from __future__ import annotations

import _compat_pickle
import functools
import io
import pickletools
import tarfile
from collections.abc import Iterator

_MAX_NAMES = 3  # unsafe names quoted in one finding
_LEGACY_PICKLES = 5  # torch's legacy format: magic, protocol, sys info, the object, storage keys
_STRING_OPS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                         "SHORT_BINUNICODE", "BINUNICODE8"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_EXT_OPS = frozenset({"EXT1", "EXT2", "EXT4"})
_MARK = object()
_UNKNOWN = object()


@functools.lru_cache(maxsize=1)
def allowed() -> frozenset[str]:
    """``module.name`` of every global torch's weights-only unpickler accepts."""
    from torch._weights_only_unpickler import _get_allowed_globals

    return frozenset(_get_allowed_globals())


def _mapped(module: str, name: str, proto: int) -> str:
    """The name ``pickle`` resolves (Python 2 names are mapped below protocol 3, as ``fix_imports`` does)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


class _Walker:
    """Follows a stream's stack effects far enough to know the strings a ``STACK_GLOBAL`` consumes."""

    def __init__(self) -> None:
        self.stack: list = []
        self.memo: dict = {}
        self.proto = 0
        self.names: list[str] = []

    def _pop(self, count: int) -> list:
        start = max(0, len(self.stack) - count)
        taken, self.stack = self.stack[start:], self.stack[:start]
        return taken

    def _pop_mark(self) -> None:
        while self.stack and self.stack.pop() is not _MARK:
            pass

    def step(self, op: pickletools.OpcodeInfo, arg) -> None:
        name = op.name
        if name == "PROTO":
            self.proto = arg
        elif name in ("GLOBAL", "INST"):
            self._global_text(arg)
        elif name == "STACK_GLOBAL":
            parts = self._pop(2)
            known = len(parts) == 2 and all(isinstance(p, str) for p in parts)
            self.names.append(_mapped(parts[0], parts[1], self.proto) if known else "<computed name>")
        elif name in _EXT_OPS:
            self.names.append(f"<extension code {arg}>")
        if name == "MARK":
            self.stack.append(_MARK)
        elif name in _STRING_OPS:
            self.stack.append(arg if isinstance(arg, str) else _UNKNOWN)
        elif name in _GET_OPS:
            self.stack.append(self.memo.get(arg, _UNKNOWN))
        elif name in _PUT_OPS or name == "MEMOIZE":
            key = len(self.memo) if name == "MEMOIZE" else arg
            self.memo[key] = self.stack[-1] if self.stack else _UNKNOWN
        elif name == "DUP":
            self.stack.append(self.stack[-1] if self.stack else _UNKNOWN)
        elif name != "STACK_GLOBAL":
            self._generic(op)
        else:
            self.stack.append(_UNKNOWN)

    def _global_text(self, arg: str) -> None:
        parts = arg.split(" ")
        self.names.append(_mapped(parts[0], parts[1], self.proto) if len(parts) == 2 else f"<odd name {arg!r}>")

    def _generic(self, op: pickletools.OpcodeInfo) -> None:
        before = op.stack_before
        if pickletools.markobject in before:
            self._pop_mark()
            self._pop(before.index(pickletools.markobject))
        else:
            self._pop(len(before))
        self.stack.extend(_UNKNOWN for _ in op.stack_after)


def _walk(stream: io.BytesIO) -> tuple[list[str], bool]:
    """Names one pickle (from the stream's position) imports, and whether it ended cleanly at STOP.

    Opcodes are read up to a STOP or the first byte that is not a valid opcode; pickle would have run
    every opcode before that point, so their names count either way.
    """
    walker = _Walker()
    try:
        for op, arg, _pos in pickletools.genops(stream):
            walker.step(op, arg)
            if op.name == "STOP":
                return walker.names, True
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, IndexError):
        pass
    return walker.names, False


def unsafe_names(data: bytes, pickles: int = 1) -> list[str]:
    """Names outside ``allowed()`` imported by the first ``pickles`` pickle streams of ``data``."""
    stream, found = io.BytesIO(data), []
    for _ in range(pickles):
        names, clean = _walk(stream)
        found.extend(n for n in names if n not in allowed())
        if not clean:
            break
    return list(dict.fromkeys(found))


def describe(names: list[str]) -> str:
    """``names os.system, builtins.exec`` (at most a few)."""
    shown = ", ".join(names[:_MAX_NAMES]) + (f" and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES else "")
    return f"imports {shown}"


def _zip_records(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every record of a zip blob, read with torch's own archive reader."""
    import torch

    reader = torch._C.PyTorchFileReader(io.BytesIO(data))
    for name in reader.get_all_records():
        yield name, reader.get_record(name)


def torch_save_findings(data: bytes) -> list[str]:
    """Why ``torch.load(data, weights_only=False)`` could run code: empty when it would only rebuild tensors.

    A zip blob is read as ``torch.load`` reads it (every ``.pkl`` record is checked; a TorchScript archive
    would be handed to ``torch.jit.load`` and is refused); an old tar-format file is refused; anything else
    is the legacy format, a sequence of pickles.
    """
    if data[:4] == b"PK\x03\x04":
        try:
            records = list(_zip_records(data))
        except RuntimeError:
            return []  # torch cannot read it either: loading fails before any unpickling
        names = [n for n, _ in records]
        if len(set(names)) != len(names):
            return ["holds two records of the same name"]
        if "constants.pkl" in names:
            return ["is a TorchScript archive (torch.load hands it to torch.jit.load)"]
        found = [n for name, blob in records if name.endswith(".pkl") for n in unsafe_names(blob)]
        return [describe(list(dict.fromkeys(found)))] if found else []
    if _is_tar(data):
        return ["is an old tar-format torch.save file (unpickled without restriction)"]
    found = unsafe_names(data, _LEGACY_PICKLES)
    return [describe(found)] if found else []


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:"):
            return True
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return False
