"""Pure views of a Report for the renderers: grouped (``--depth``), sorted (``--sort``), cut (``--top``).

A view row is a layer, or with ``--depth N`` a name scope that sums the layers under it (a hierarchy
like fvcore's table: ``layer1`` holds ``layer1/0`` holds ``layer1/0/conv1``). Units: params and buffers
are tensor elements, MACs are multiply-accumulates; ``share`` is a fraction of the model's counted MACs.
Also the candidate summary: the whole model after converting every candidate (at T=1, and at the
energy-chosen ranks). Nothing here prints or imports rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from sepconv_cli.core.records import Candidate, ConvSpec, Layer, Report, Shape

NO_FORMULA = "no formula"


class SortKey(str, Enum):
    """Row order of the layer view."""

    ORDER = "order"
    PARAMS = "params"
    MACS = "macs"
    NAME = "name"


@dataclass(frozen=True)
class ViewOptions:
    """``depth``: group rows by the first N name scopes (None = one row per layer);
    ``sort``: order of sibling rows; ``top``: keep the first N top-level rows after sorting."""

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


def _sorted(rows: list[tuple[Row, _Node | None]], key: SortKey) -> list[tuple[Row, _Node | None]]:
    func = SORTERS[key]
    if func is None:
        return rows
    return sorted(rows, key=lambda pair: func(pair[0]))  # stable: ties keep model order


def _walk(node: _Node, ctx: tuple[int, str, ViewOptions], level: int, top: int | None) -> list[Row]:
    """Rows of ``node``'s children (sorted, cut to ``top``), each followed by its own children while the
    view is not yet ``depth`` scopes deep; a scope at the depth limit is one row."""
    total_macs, sep, view = ctx
    pairs = []
    for child in node.children.values():
        pairs.append((_node_row(child, total_macs, sep, level), child))
    pairs = _sorted(pairs, view.sort)
    if top is not None:
        pairs = pairs[:top]
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
        pairs = _sorted(pairs, options.sort)
        if options.top is not None:
            pairs = pairs[:options.top]
        return tuple(row for row, _ in pairs)
    root = _build_tree(report.layers, max(options.depth, 1))
    return tuple(_walk(root, (total, scope_separator(report), options), 0, options.top))


@dataclass(frozen=True)
class Outcome:
    """The whole model after a set of conversions: params and MACs, and the ratios now/after."""

    label: str
    converted: int
    params: int
    macs: int

    def ratios(self, report: Report) -> tuple[float | None, float | None]:
        """(params now / after, MACs now / after); None where a figure is 0 (nothing counted)."""
        return _ratio(report.params, self.params), _ratio(report.macs, self.macs)


def _ratio(before: int, after: int) -> float | None:
    return before / after if before and after else None


def _outcome(report: Report, label: str, savings: list[tuple[int, int]]) -> Outcome:
    return Outcome(label=label, converted=len(savings), params=report.params - sum(p for p, _ in savings),
                   macs=report.macs - sum(m for _, m in savings))


def rank_saving(cand: Candidate) -> tuple[int, int] | None:
    """(params saved, MACs saved) at the energy-chosen rank, None when no rank was chosen."""
    if cand.rank is None or cand.params_at_rank is None:
        return None
    macs = 0
    if cand.macs is not None and cand.macs_at_rank is not None:
        macs = cand.macs - cand.macs_at_rank
    return cand.params - cand.params_at_rank, macs


def summary(report: Report) -> tuple[Outcome, ...]:
    """Whole-model outcomes: every convertible candidate at T=1, and at its energy-chosen rank
    (only when some rank was chosen: a model without weights has none)."""
    convertible = [c for c in report.candidates if c.convertible]
    outcomes = [_outcome(report, "T=1", [(c.params_saved, c.macs_saved) for c in convertible])]
    at_rank = [s for s in (rank_saving(c) for c in convertible) if s is not None]
    if at_rank:
        target = report.energy_target if report.energy_target is not None else 0.0
        outcomes.append(_outcome(report, f"energy {target:g}", at_rank))
    return tuple(outcomes)


def has_energy(report: Report) -> bool:
    """True when at least one candidate carries a spectrum (the model has weights)."""
    return any(c.energy_t1 is not None for c in report.candidates)


def excluded_by_reason(report: Report) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Exclusions condensed: (reason, names) in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for item in report.excluded:
        groups.setdefault(item.reason, []).append(item.name)
    return tuple((reason, tuple(names)) for reason, names in groups.items())


@dataclass(frozen=True)
class CandidateView:
    """A candidate with its savings as shares of the model totals (fractions): at T=1 and at the
    energy-chosen rank (``None`` when no rank was chosen)."""

    cand: Candidate
    macs_share_t1: float | None
    params_share_t1: float
    macs_share_rank: float | None
    params_share_rank: float | None


def candidate_views(report: Report) -> tuple[CandidateView, ...]:
    """The report's candidates, in the planner's order, with their shares of the model totals."""
    out = []
    for cand in report.candidates:
        at_rank = rank_saving(cand)
        params = report.params + _fed_at_run_time(report, cand)
        out.append(CandidateView(
            cand=cand,
            macs_share_t1=None if cand.macs is None else share_of(cand.macs_saved, report.macs),
            params_share_t1=share_of(cand.params_saved, params),
            macs_share_rank=None if at_rank is None else share_of(at_rank[1], report.macs),
            params_share_rank=None if at_rank is None else share_of(at_rank[0], params),
        ))
    return tuple(out)


def _fed_at_run_time(report: Report, cand: Candidate) -> int:
    """Kernel elements of a candidate whose weight is a run-time input: not among the model's params, so
    its shares are taken of the model plus that kernel (never above 100%)."""
    if cand.convertible:
        return 0
    return max(0, cand.params - report.layer(cand.name).params)
