"""Every ``sepconv_cli`` name the samples and benchmarks import exists.

Those scripts are run by hand, never by the suite, so a module moved or renamed in the package would
break them silently. The imports are read from the source (AST) and resolved here, without running the
scripts.
"""

from __future__ import annotations

import ast
import importlib
import os

import pytest
from repo_paths import REPO

FOLDERS = ("samples", "benchmarks")


def _imports() -> list[tuple[str, str, str | None]]:
    """(where, module, name or None) for every ``sepconv_cli`` import of the scripts."""
    found = []
    for folder in FOLDERS:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for file in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(root, file)
                with open(path, encoding="utf-8") as handle:
                    tree = ast.parse(handle.read(), path)
                where = os.path.relpath(path, REPO)
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith(
                            "sepconv_cli"):
                        found += [(f"{where}:{node.lineno}", node.module, a.name) for a in node.names]
                    elif isinstance(node, ast.Import):
                        found += [(f"{where}:{node.lineno}", a.name, None) for a in node.names
                                  if a.name.startswith("sepconv_cli")]
    return found


IMPORTS = _imports()


def test_the_scripts_import_the_package():
    assert len({where.split(":")[0] for where, _, _ in IMPORTS}) >= 5


@pytest.mark.parametrize("where, module, name", IMPORTS, ids=[w for w, _, _ in IMPORTS])
def test_script_import_resolves(where, module, name):
    imported = importlib.import_module(module)
    if name is not None and not hasattr(imported, name):
        importlib.import_module(f"{module}.{name}")  # a submodule not yet loaded; ImportError if missing
