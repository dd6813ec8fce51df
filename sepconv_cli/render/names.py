"""Layer names as tables show them: ONNX node names read as the module path they came from.

Exporters name a node after the module scopes it was traced in, then its op:
``/layer1/layer1.0/conv1/Conv`` is the ``Conv`` of module ``layer1.0.conv1``. Tables show that module path
(shorter, and what a PyTorch user types); JSON, CSV and ``--explain`` keep the full node name. When two
rows come from one module (``/block1/conv1/Conv`` and ``/block1/conv1/Relu``), the first keeps the bare
path and the others add their own last part (``block1.conv1/Relu``), so every shown name stays unique.
Names that are not scoped (PyTorch module names, ``conv_a``) are shown as they are. Pure strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sepconv_cli.core.names import fold_scopes, module_path

if TYPE_CHECKING:
    from sepconv_cli.core.records import Report
    from sepconv_cli.render.views import Row


def _tail(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def display_names(names: Iterable[str]) -> dict[str, str]:
    """Full name -> the name tables show (see module docstring); the shown names are unique. A name
    whose module path would collide even with its last part added is shown in full."""
    names = list(names)
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        short = module_path(name)
        if short in taken:
            short = f"{short}/{_tail(name)}" if short != name else name
        if short in taken:
            short = name
        out[name] = short
        taken.add(short)
    if len(set(out.values())) != len(out):  # a full name equal to another's short form: keep all in full
        return {name: name for name in names}
    return out


def scope_display(name: str, sep: str) -> str:
    """A ``--depth`` scope row (``"layer1/layer1.0"``) as a module path (``"layer1.0"``)."""
    return fold_scopes(name.split(sep)) if sep == "/" else name


def row_names(report: Report, rows: Sequence[Row]) -> list[str]:
    """The names tables show for view rows: module paths for layers, folded scopes for ``--depth`` groups."""
    from sepconv_cli.render.views import scope_separator

    shown = display_names(layer.name for layer in report.layers)
    sep = scope_separator(report)
    return [shown.get(row.name) or scope_display(row.name, sep) for row in rows]
