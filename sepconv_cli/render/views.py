"""Pure views of a Report for the renderers: grouped (``--depth``), sorted (``--sort``), cut (``--top``).

A view row is a layer, or with ``--depth N`` a name scope that sums the layers under it (a hierarchy
like fvcore's table: ``layer1`` holds ``layer1/0`` holds ``layer1/0/conv1``). ``--top N`` keeps the N
heaviest rows (most params with ``--sort params``, else most MACs), whatever the order they are shown in;
with ``--depth`` it cuts the top-level scopes. Units: params and buffers are tensor elements, MACs are multiply-accumulates;
``share`` is a fraction of the model's counted MACs. The candidate views live in ``candidates.py``.
Nothing here prints or imports rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from sepconv_cli.core.records import ConvSpec, Layer, Report, Shape

NO_FORMULA = "no formula"

P = TypeVar("P", bound=tuple)
"""A (row, node) pair of a view under construction."""


class SortKey(str, Enum):
    """Row order of the layer view."""

    ORDER = "order"
    PARAMS = "params"
    MACS = "macs"
    NAME = "name"


@dataclass(frozen=True)
class ViewOptions:
    """``depth``: group rows by the first N name scopes (None = one row per layer);
    ``sort``: order of sibling rows; ``top``: keep the N heaviest top-level rows (and the N candidates
    saving the most MACs), shown in ``sort`` order."""

    depth: int | None = None
    sort: SortKey = SortKey.ORDER
    top: int | None = None


@dataclass(frozen=True)
class Row:
    """One line of the layer view. ``macs`` sums the counted layers under it (None when none was counted);
    ``unknown`` counts layers under it whose MACs could not be counted; ``level`` is the indentation
    (0 for flat views); ``count`` is how many layers it covers."""

    name: str
    op: str
    params: int
    macs: int | None
    share: float
    output_shapes: tuple[Shape | None, ...] = ()
    input_shapes: tuple[Shape | None, ...] = ()
    conv: ConvSpec | None = None
    note: str = ""
    level: int = 0
    count: int = 1
    unknown: int = 0


def share_of(part: int | None, total: int) -> float:
    """``part / total`` as a fraction in [0, 1]; 0.0 when either is missing or zero."""
    if not part or not total:
        return 0.0
    return part / total


def _layer_row(layer: Layer, total_macs: int, level: int = 0) -> Row:
    unknown = int(layer.macs is None and layer.note != NO_FORMULA)
    return Row(name=layer.name, op=layer.op, params=layer.params, macs=layer.macs,
               share=share_of(layer.macs, total_macs), output_shapes=layer.output_shapes,
               input_shapes=layer.input_shapes, conv=layer.conv, note=layer.note, level=level,
               unknown=unknown)


def scope_separator(report: Report) -> str:
    """``/`` for ONNX-style scoped names (``/layer1/0/conv1/Conv``), ``.`` for module names."""
    return "/" if any("/" in layer.name for layer in report.layers) else "."


def layer_path(layer: Layer) -> tuple[str, ...]:
    """Where ``layer`` sits in the hierarchy, ending with the layer itself.

    Module paths already end with the module (``layer1.0.conv1`` -> ``(layer1, 0, conv1)``); ONNX paths
    name the enclosing scopes only (``/layer1/0/conv1/Conv`` -> ``(layer1, 0, conv1)``), so the node is
    appended. A layer without a recorded path is a scope of its own.
    """
    if not layer.path:
        return (layer.name,)
    last = layer.path[-1]
    if layer.name == last or layer.name.endswith(("." + last, "/" + last)):
        return layer.path
    return layer.path + (layer.name,)


@dataclass
class _Node:
    """A scope under construction: its layers (in model order) and child scopes."""

    key: tuple[str, ...]
    layers: list[Layer]
    children: dict[tuple[str, ...], _Node]


def _build_tree(layers: Iterable[Layer], depth: int) -> _Node:
    root = _Node((), [], {})
    for layer in layers:
        path = layer_path(layer)
        node = root
        node.layers.append(layer)
        for level in range(1, min(depth, len(path)) + 1):
            key = path[:level]
            node = node.children.setdefault(key, _Node(key, [], {}))
            node.layers.append(layer)
        if len(path) <= depth:
            # a layer that is itself a scope of the view is its own row, next to any deeper scopes
            node.children.setdefault(_leaf_key(layer), _Node(_leaf_key(layer), [layer], {}))
    return root


def _leaf_key(layer: Layer) -> tuple[str, ...]:
    return ("\0leaf", layer.name)


def _node_row(node: _Node, total_macs: int, sep: str, level: int) -> Row:
    if len(node.layers) == 1:
        return _layer_row(node.layers[0], total_macs, level)
    counted = [layer.macs for layer in node.layers if layer.macs is not None]
    macs = sum(counted) if counted else None
    unknown = sum(1 for layer in node.layers if layer.macs is None and layer.note != NO_FORMULA)
    return Row(name=sep.join(node.key), op=_group_op(node.layers), params=sum(x.params for x in node.layers),
               macs=macs, share=share_of(macs, total_macs), level=level, count=len(node.layers),
               unknown=unknown)


def _group_op(layers: list[Layer]) -> str:
    """``"Conv+Relu"`` for a scope of at most two op types, else ``"12 ops"``."""
    kinds = list(dict.fromkeys(layer.op for layer in layers))
    return "+".join(kinds) if len(kinds) <= 2 else f"{len(layers)} ops"


SORTERS: dict[SortKey, Callable[[Row], object] | None] = {
    SortKey.ORDER: None,
    SortKey.PARAMS: lambda r: -r.params,
    SortKey.MACS: lambda r: -(r.macs or 0),
    SortKey.NAME: lambda r: r.name,
}


def _sorted(rows: list[P], key: SortKey) -> list[P]:
    func = SORTERS[key]
    if func is None:
        return rows
    return sorted(rows, key=lambda pair: func(pair[0]))  # type: ignore[arg-type,return-value]  # stable: ties keep model order


def _weight(row: Row, key: SortKey) -> tuple[int, int]:
    """How heavy a row is: by params when sorting by params, else by MACs (then params)."""
    if key is SortKey.PARAMS:
        return row.params, row.macs or 0
    return row.macs or 0, row.params


def heaviest(rows: list[P], top: int | None, key: SortKey = SortKey.MACS) -> list[P]:
    """The ``top`` heaviest rows (``_weight``), in their given order; all rows without ``top``. Ties keep
    model order."""
    if top is None or top >= len(rows):
        return rows
    weights = [_weight(row, key) for row, _ in rows]
    ranked = sorted(range(len(rows)), key=lambda i: (-weights[i][0], -weights[i][1], i))
    chosen = set(ranked[:top])
    return [pair for i, pair in enumerate(rows) if i in chosen]


def _walk(node: _Node, ctx: tuple[int, str, ViewOptions], level: int, top: int | None) -> list[Row]:
    """Rows of ``node``'s children (sorted, cut to ``top``), each followed by its own children while the
    view is not yet ``depth`` scopes deep; a scope at the depth limit is one row."""
    total_macs, sep, view = ctx
    pairs = [(_node_row(child, total_macs, sep, level), child) for child in node.children.values()]
    pairs = _sorted(heaviest(pairs, top, view.sort), view.sort)
    rows: list[Row] = []
    for row, child in pairs:
        rows.append(row)
        if row.count > 1 and len(child.key) < (view.depth or 0):
            rows.extend(_walk(child, ctx, level + 1, None))
    return rows


def layer_view(report: Report, options: ViewOptions) -> tuple[Row, ...]:
    """Rows for the layer table of ``report`` as asked by ``options`` (see module docstring)."""
    total = report.macs
    if options.depth is None:
        pairs = [(_layer_row(layer, total), None) for layer in report.layers]
        return tuple(row for row, _ in _sorted(heaviest(pairs, options.top, options.sort), options.sort))
    root = _build_tree(report.layers, max(options.depth, 1))
    return tuple(_walk(root, (total, scope_separator(report), options), 0, options.top))




_MOVED = frozenset({"Outcome", "CandidateView", "candidate_views", "excluded_by_reason", "has_energy",
                    "rank_saving", "summary", "top_candidates"})


def __getattr__(name: str):
    # candidate views moved to candidates.py; older imports from here keep working (PEP 562)
    if name in _MOVED:
        from sepconv_cli.render import candidates

        return getattr(candidates, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
