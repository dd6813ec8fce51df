"""Glob expansion for model paths in configs and on the command line, safe on hostile folder trees.

Python's ``glob(..., recursive=True)`` follows symlinked folders under ``**``, so a folder holding a link
to its parent makes the expansion endless. Here ``**`` walks with ``os.walk(followlinks=False)`` and
matches each path segment by segment; patterns without ``**`` have a fixed depth and use ``glob``.
As with ``glob``, names starting with a dot match only a pattern segment that starts with one.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os

GLOB_CHARS = frozenset("*?[")


def expand_glob(pattern: str) -> list[str]:
    """Regular files (or links to them) matching ``pattern``, sorted; ``**`` matches any folder depth."""
    if "**" not in pattern:
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    parts = pattern.split(os.sep)
    fixed = next(i for i, part in enumerate(parts) if GLOB_CHARS & set(part))
    base = os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else "")
    rest = tuple(parts[fixed:])
    hidden_ok = any(part.startswith(".") for part in rest)
    found = []
    for folder, subfolders, names in os.walk(base or os.curdir, followlinks=False):
        if not hidden_ok:
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        rel = os.path.relpath(folder, base or os.curdir)
        prefix = () if rel == os.curdir else tuple(rel.split(os.sep))
        found.extend(os.path.join(base, *prefix, n) for n in names if matches(rest, (*prefix, n)))
    return sorted(p for p in found if os.path.isfile(p))


def matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether path segments ``parts`` match glob segments ``pattern`` (``**``: zero or more folders)."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(parts)
        if pattern[i] == "**":
            return match(i + 1, j) or (j < len(parts) and not _hidden(parts[j], "**") and match(i, j + 1))
        if j == len(parts) or _hidden(parts[j], pattern[i]):
            return False
        return fnmatch.fnmatchcase(parts[j], pattern[i]) and match(i + 1, j + 1)

    return match(0, 0)


def _hidden(name: str, segment: str) -> bool:
    return name.startswith(".") and not segment.startswith(".")
