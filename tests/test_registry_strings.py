"""Every lazy registry target written as ``"sepconv_cli.module:attribute"`` names something that exists.

Registries (backends, renderers, calibration drivers, latency probes) name their implementations by
string so heavy backends load only when chosen; a typo there would surface only when a user picks that
entry. The strings are found in the source (AST), so a new registry is covered without listing it here.
"""

from __future__ import annotations

import ast
import os
import re

import pytest
from repo_paths import REPO

from sepconv_cli.lazy import resolve

TARGET = re.compile(r"^sepconv_cli(\.\w+)+:\w+$")


def _targets() -> list[tuple[str, str]]:
    found = []
    root = os.path.join(REPO, "sepconv_cli")
    for folder, _, files in os.walk(root):
        for file in sorted(files):
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), path)
            where = os.path.relpath(path, REPO)
            found += [(f"{where}:{node.lineno}", node.value) for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.match(node.value)]
    return sorted(found)


TARGETS = _targets()


def test_the_backend_registry_strings_are_found():
    files = {where.split(":")[0] for where, _ in TARGETS}
    assert os.path.join("sepconv_cli", "backends", "registry.py") in files
    assert len(TARGETS) >= 10


@pytest.mark.parametrize("where, target", TARGETS, ids=[t for _, t in TARGETS])
def test_registry_string_resolves(where, target):
    assert resolve(target) is not None, f"{where}: {target}"
