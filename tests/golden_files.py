"""Golden (snapshot) files for renderer and CLI output: compare, or rewrite with SEPCONV_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
import re
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
UPDATE_ENV = "SEPCONV_UPDATE_GOLDEN"


# file sizes depend on the serializer version, not on what is being tested
_SIZE_PATTERNS = (
    (re.compile(r'"file_size": \d+'), '"file_size": "<size>"'),       # JSON
    (re.compile(r"^File     .*$", re.M), "File     <size>"),            # table
    (re.compile(r"^\| file size \(bytes\) \| [\d,]+ \|$", re.M), "| file size (bytes) | <size> |"),  # Markdown
    (re.compile(r"^(total,file_size,+)\d+", re.M), r"\1<size>"),  # CSV
)


# energies come from an SVD whose last bits depend on the LAPACK build
_LONG_FLOAT = re.compile(r"\d+\.\d{7,}(e-?\d+)?")


def normalise(text: str) -> str:
    """Replace the machine-dependent parts of CLI outputs: the model file size, and float digits past
    the sixth decimal."""
    for pattern, replacement in _SIZE_PATTERNS:
        text = pattern.sub(replacement, text)
    return _LONG_FLOAT.sub(lambda m: f"{float(m.group()):.6f}", text)


def check_golden(name: str, text: str) -> None:
    """Assert ``text`` equals ``golden/name``; with SEPCONV_UPDATE_GOLDEN=1 write it instead."""
    path = GOLDEN / name
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"golden file {name} missing: run with {UPDATE_ENV}=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file (regenerate with {UPDATE_ENV}=1 if intended)"
