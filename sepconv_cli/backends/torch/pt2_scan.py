"""Inspect a ``torch.export`` archive before ``torch.export.load`` reads it: nothing in it may run code.

``torch.export.load`` reaches Python code from an archive in four ways, each checked here first:

- pickles: weights and constants stored with ``use_pickle`` (``torch.load(..., weights_only=False)``),
  opaque constants (``pickle.loads``), TorchScript custom objects, the sample inputs and legacy ``.pt``
  members (a weights-only attempt, then the full unpickler). Every such member, and any other member that
  starts like a pickle or a zip, is scanned with ``pickle_scan`` against the weights-only allow-list;
  TorchScript custom objects are refused outright;
- compiled code: ``data/aotinductor/`` holds shared libraries the loader would open;
- shape expressions: ``expr_str`` strings go through ``sympy.sympify``, which evaluates Python. They may
  only use sympy and torch shape functions, symbol names, numbers and operators;
- generated code: names in the graph (parameters, buffers, submodules) are pasted into the Python source
  torch.fx generates, so they may not hold quotes, backslashes or control characters.

Records are listed and read with torch's own archive reader (the bytes torch will read); the legacy
pre-2.8 layout, which torch reads with ``zipfile``, is read with ``zipfile`` too.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import re
import tokenize
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from sepconv_cli.backends.torch.pickle_scan import describe, torch_save_findings, unsafe_names

_AOTI = "data/aotinductor/"
_WEIGHTS, _CONSTANTS = "data/weights/", "data/constants/"
_LEGACY_MEMBERS = ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt")
_FREE_TEXT = frozenset({"metadata", "in_spec", "out_spec"})  # never pasted into code or evaluated
_CONTROL = re.compile(r'["\\\x00-\x1f\x7f]')
_SYMBOL = re.compile(r"[a-z]+[0-9]+")
_SYMBOL_TEXT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = frozenset("( ) , + - * / // % ** < > <= >= == != & | ~ ^ =".split())
_SYMPY_NAMES = frozenset(
    "Symbol Integer Rational Float Add Mul Pow Max Min Mod floor ceiling Abs sqrt sign exp log Eq Ne Lt Le Gt Ge "
    "StrictLessThan StrictGreaterThan LessThan GreaterThan Equality Unequality And Or Not Xor Piecewise "
    "ExprCondPair true false BooleanTrue BooleanFalse oo zoo nan Infinity NegativeInfinity NaN ComplexInfinity "
    "One Zero NegativeOne Half Tuple True False None".split())
_MAX_EXPRESSION = 10_000  # characters


@dataclass(frozen=True)
class Finding:
    """Why the archive cannot be loaded safely: the archive ``member`` and the ``reason``."""

    member: str
    reason: str
    needs_trust: bool = True


@functools.lru_cache(maxsize=1)
def _expression_names() -> frozenset[str]:
    """Names a shape expression may use: sympy's, torch's shape functions, assumption keywords."""
    import inspect

    import sympy
    import torch.utils._sympy.functions as functions
    from sympy.core.assumptions import _assume_defined

    torch_names = {n for n, o in vars(functions).items()
                   if not n.startswith("_") and inspect.isclass(o) and issubclass(o, sympy.Basic)}
    return frozenset(_SYMPY_NAMES | torch_names | set(_assume_defined))


def expression_ok(text: str) -> bool:
    """Whether ``sympy.sympify(text)`` can only build an expression (no Python name that runs code)."""
    if len(text) > _MAX_EXPRESSION:
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    return all(_token_ok(tok) for tok in tokens)


def _token_ok(tok: tokenize.TokenInfo) -> bool:
    if tok.type == tokenize.NAME:
        return tok.string in _expression_names() or bool(_SYMBOL.fullmatch(tok.string))
    if tok.type == tokenize.STRING:
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):
            return False
        return isinstance(value, str) and bool(_SYMBOL_TEXT.fullmatch(value))
    if tok.type == tokenize.OP:
        return tok.string in _OPS
    return tok.type in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER,
                        tokenize.INDENT, tokenize.DEDENT)


def _strings(node, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, string) of every string in a parsed JSON document (dict keys too), skipping free text."""
    stack = [(key, node)]
    while stack:
        key, node = stack.pop()
        if key in _FREE_TEXT:
            continue
        if isinstance(node, dict):
            for k, v in node.items():
                yield f"{key}.key", k
                stack.append((k, v))
        elif isinstance(node, list):
            stack.extend((key, v) for v in node)
        elif isinstance(node, str):
            yield key, node


def program_findings(member: str, data: bytes) -> list[Finding]:
    """What in a serialized program (``models/*.json``) would be evaluated or pasted into code."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return [Finding(member, "is not readable JSON", needs_trust=False)]
    for key, text in _strings(document):
        if key == "expr_str" or key == "range_constraints.key":
            if not expression_ok(text):
                return [Finding(member, f"shape expression {text!r} is not plain arithmetic "
                                        "(sympy would evaluate it as Python)")]
        elif _CONTROL.search(text):
            return [Finding(member, f"name {text!r} holds quotes, backslashes or control characters "
                                    "(torch pastes names into generated Python code)")]
    return []


class _Archive:
    """The records of a ``.pt2`` archive as torch's reader sees them (root folder stripped)."""

    def __init__(self, path: str):
        import torch

        self.path = path
        self.reader = torch._C.PyTorchFileReader(path)
        self.names = list(self.reader.get_all_records())

    def read(self, name: str) -> bytes:
        return self.reader.get_record(name)

    def head(self, name: str) -> bytes:
        with open(self.path, "rb") as fh:
            fh.seek(self.reader.get_record_offset(name))
            return fh.read(4)


def _payload_configs(archive: _Archive) -> Iterator[tuple[str, str, dict]]:
    """(folder, config member, entry) of every weights / constants payload entry."""
    for name in archive.names:
        folder = _WEIGHTS if name.startswith(_WEIGHTS) else _CONSTANTS if name.startswith(_CONSTANTS) else None
        if folder is None or not name.endswith("_config.json"):
            continue
        try:
            config = json.loads(archive.read(name)).get("config", {})
        except (ValueError, RecursionError, AttributeError):
            continue  # torch cannot parse it either: loading fails before any payload is read
        for entry in config.values() if isinstance(config, dict) else ():
            if isinstance(entry, dict) and isinstance(entry.get("path_name"), str):
                yield folder, name, entry


def _payload_findings(archive: _Archive, handled: set[str]) -> list[Finding]:
    """Findings of every payload the configs name; adds each payload member to ``handled``."""
    found: list[Finding] = []
    for folder, config, entry in _payload_configs(archive):
        path_name = entry["path_name"]
        member = folder + path_name
        handled.add(member)
        if path_name.startswith("/") or ".." in path_name.split("/"):
            found.append(Finding(config, f"payload path {path_name!r} leaves its folder"))
        elif folder == _CONSTANTS and path_name.startswith("custom_obj"):
            found.append(Finding(member, "is a TorchScript custom object (loading it runs its class's code)"))
        elif folder == _CONSTANTS and path_name.startswith("opaque_obj"):
            names = unsafe_names(_read_or_empty(archive, member))
            found.extend([Finding(member, describe(names))] if names else [])
        elif entry.get("use_pickle"):
            found.extend(Finding(member, r) for r in torch_save_findings(_read_or_empty(archive, member)))
    return found


def _read_or_empty(archive: _Archive, name: str) -> bytes:
    return archive.read(name) if name in archive.names else b""


def _member_findings(archive: _Archive, name: str, handled: set[str]) -> list[Finding]:
    if name.startswith(_AOTI):
        return [Finding(name, "holds AOTInductor compiled code (a shared library the loader would open)")]
    if name.startswith("models/") and name.endswith(".json"):
        return program_findings(name, archive.read(name))
    if name in handled or name.endswith(".json"):
        return []
    if name.endswith(".pt") or archive.head(name)[:1] in (b"\x80", b"P"):
        return [Finding(name, r) for r in torch_save_findings(archive.read(name))]
    return []


def _legacy_findings(path: str) -> list[Finding]:
    """The pre-2.8 layout torch falls back to, read with ``zipfile`` as torch reads it."""
    found = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename in _LEGACY_MEMBERS:
                    found.extend(Finding(info.filename, r) for r in torch_save_findings(zf.read(info)))
                elif info.filename == "serialized_exported_program.json":
                    found.extend(program_findings(info.filename, zf.read(info)))
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
        return found  # zipfile cannot read it either: torch's fallback fails before unpickling
    return found


def scan_pt2(path: str) -> Finding | None:
    """The first reason loading the archive at ``path`` could run code (None: it only rebuilds tensors).
    An archive this inspection cannot read is a finding too (``needs_trust`` False): never loaded unread."""
    try:
        return _scan(path)
    except (RuntimeError, UnicodeDecodeError, OSError, ValueError, EOFError, IndexError, KeyError,
            OverflowError) as exc:  # IndexError: torch's reader on a torn record ("stoull")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Finding(path, f"cannot be read as a PyTorch archive ({reason})", needs_trust=False)


def _scan(path: str) -> Finding | None:
    found: list[Finding] = []
    try:
        archive = _Archive(path)
    except RuntimeError:
        archive = None  # not readable by torch's reader: only the legacy layout can load
    if archive is not None:
        if len(set(archive.names)) != len(archive.names):
            return Finding(path, "holds two members of the same name")
        handled: set[str] = set()
        found.extend(_payload_findings(archive, handled))
        for name in archive.names:
            found.extend(_member_findings(archive, name, handled))
    found.extend(_legacy_findings(path))
    return found[0] if found else None
