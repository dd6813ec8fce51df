"""The package's layering, read from the source (AST, no imports): pure layers stay pure, arrows point
down, and no two modules import each other in a circle. One end-to-end run checks what the AST cannot
see (imports reached through registry strings): analysing and checking an ONNX file import no torch.

Layers, lowest first (DESIGN §2): the leaves (errors, lazy, cpu) < core < planner, calibration <
backends < pipeline < render < cli. A module may import its own layer and any lower one, at module level
or inside a function alike (a lazy import still depends on what it imports). The package's own
``__init__.py`` is the public API, above everything, and may only import lazily. Imports under
``if TYPE_CHECKING:`` never run and are ignored.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from repo_paths import REPO

PACKAGE = "sepconv_cli"
ROOT = os.path.join(REPO, PACKAGE)

# Third-party frameworks: only backends/ imports them at module level.
FRAMEWORKS = frozenset({"torch", "onnx", "onnxruntime", "onnx_ir", "onnxscript", "fvcore"})
# The pure layers import none of these, at any level.
PURE_LAYERS = ("core", "planner", "calibration")
NOT_IN_PURE = FRAMEWORKS | {"rich", "typer"}

# Top-level part of a module name -> layer rank (higher may import lower, never the reverse).
LAYERS: dict[str, int] = {
    "errors": 0, "lazy": 0, "cpu": 0, "files": 0,
    "core": 1,
    "planner": 2, "calibration": 2,
    "backends": 3,
    "pipeline": 4,
    "render": 5,
    "cli": 6, "__main__": 6,
    "__init__": 7, "api": 7,
}


@dataclass(frozen=True)
class Import:
    """One import statement: the importing module, the imported module, and whether it runs at import."""

    source: str
    target: str
    module_level: bool
    line: int


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _is_package(name: str) -> bool:
    return os.path.isfile(os.path.join(REPO, *name.split("."), "__init__.py"))


def _is_module(name: str) -> bool:
    return _is_package(name) or os.path.isfile(os.path.join(REPO, *name.split(".")) + ".py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, source: str, package: bool) -> list[str]:
    """Fully qualified modules an import statement loads (``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = source.split(".")
        anchor = parts if package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    submodules = [f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")]
    return submodules or [base]


def _walk(node: ast.AST, source: str, package: bool, module_level: bool, out: list[Import]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            out.extend(Import(source, t, module_level, child.lineno) for t in _targets(child, source, package))
        inside = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        _walk(child, source, package, module_level and not inside, out)


def _collect() -> list[Import]:
    found: list[Import] = []
    for folder, _, files in os.walk(ROOT):
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path, encoding="utf-8") as handle:
                    tree = ast.parse(handle.read(), path)
                _walk(tree, _module_name(path), file == "__init__.py", True, found)
    return found


IMPORTS = _collect()
MODULES = sorted({i.source for i in IMPORTS} | {_module_name(os.path.join(f, n)) for f, _, ns in os.walk(ROOT)
                                                for n in ns if n.endswith(".py")})


def _own(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS["__init__"] if len(parts) == 1 else LAYERS[parts[1]]


def _where(imp: Import) -> str:
    return f"{imp.source}:{imp.line} imports {imp.target}"


def test_the_import_reader_sees_every_module_and_the_known_edges():
    # Guards the reader itself: a parser that found nothing would pass every rule below.
    assert len(MODULES) > 80 and all(_layer(m) is not None for m in MODULES)
    edges = {(i.source, i.target) for i in IMPORTS}
    assert ("sepconv_cli.backends.torch.rewriter", "sepconv_cli.backends.torch.factors") in edges
    assert ("sepconv_cli.backends.torch.count", "torch") in edges


@pytest.mark.parametrize("layer", PURE_LAYERS)
def test_pure_layers_import_no_framework_and_no_terminal_library(layer):
    prefix = f"{PACKAGE}.{layer}"
    bad = [_where(i) for i in IMPORTS if (i.source == prefix or i.source.startswith(prefix + "."))
           and i.target.split(".")[0] in NOT_IN_PURE]
    assert bad == []


def test_only_backends_import_a_framework_at_module_level():
    bad = [_where(i) for i in IMPORTS if i.module_level and i.target.split(".")[0] in FRAMEWORKS
           and not i.source.startswith(f"{PACKAGE}.backends.")]
    assert bad == []


def test_only_render_and_cli_import_the_terminal_libraries():
    allowed = (f"{PACKAGE}.render", f"{PACKAGE}.cli")
    bad = [_where(i) for i in IMPORTS if i.target.split(".")[0] in ("rich", "typer")
           and not any(i.source == a or i.source.startswith(a + ".") for a in allowed)]
    assert bad == []


def test_the_public_api_imports_only_lazily():
    bad = [_where(i) for i in IMPORTS if i.source == PACKAGE and i.module_level and _own(i.target)]
    assert bad == []


def test_no_module_imports_a_higher_layer():
    bad = [_where(i) for i in IMPORTS if _own(i.target) and i.target != PACKAGE and i.source != PACKAGE
           and _layer(i.target) > _layer(i.source)]
    assert bad == []


def test_onnx_and_torch_backends_never_import_each_other():
    pairs = (("onnx", "torch"), ("torch", "onnx"))
    bad = [_where(i) for i in IMPORTS for a, b in pairs
           if i.source.startswith(f"{PACKAGE}.backends.{a}.") and i.target.startswith(f"{PACKAGE}.backends.{b}")]
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself): Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.module_level and _own(imp.target) and imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    return graph


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_the_package_modules():
    assert _cycles(_module_graph()) == []


def _imported_modules(importtime: str) -> set[str]:
    """Module names from ``python -X importtime`` lines (``import time: self | cumulative | name``)."""
    rows = [line.split("|") for line in importtime.splitlines() if line.startswith("import time:")]
    return {row[-1].strip() for row in rows if len(row) == 3}


def test_analysing_and_checking_an_onnx_file_import_no_torch(tmp_path):
    sample = os.path.join(REPO, "samples", "vgg_cifar.onnx")
    report = tmp_path / "analysis.json"
    commands = [["analyze", sample, "--format", "json", "-o", str(report)],
                ["check", sample, "--max-params", "2M", "--format", "json"]]
    code = ("from sepconv_cli.cli import app\n"
            f"for argv in {commands!r}:\n"
            "    try:\n        app(argv)\n"
            "    except SystemExit as exc:\n        assert exc.code in (0, None), (argv, exc.code)\n")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr[-2000:]
    imported = _imported_modules(done.stderr)
    assert "onnx" in imported and any(m.startswith(f"{PACKAGE}.backends.onnx.") for m in imported)
    assert sorted(m for m in imported if m.split(".")[0] in ("torch", "fvcore", "onnxscript")) == []
    assert json.loads(report.read_text())["totals"]["params"] == 1_186_378
    assert json.loads(done.stdout)["ok"] is True
