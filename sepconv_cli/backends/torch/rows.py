"""Turn a trace of ATen op events (from either PyTorch engine) into report rows.

Both engines (eager dispatch mode in ``torch_count``, ``.pt2`` graph in ``torch_graph``) fill a ``Trace``:
leaf-module calls and op events tagged with the innermost module scope. Rows are then one per leaf module
(MACs = sum of its ops) plus one per MAC-costing op called directly from a non-leaf module, named
``<parent>.<aten op>_<n>``. Params (elements) go to the first row that owns or uses them, so shared
tensors are counted once; buffers (elements) are reported apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from sepconv_cli.core.records import (
    ConvSpec,
    Layer,
    ModelInfo,
    Report,
    Shape,
    Uncounted,
)


@dataclass
class OpEvent:
    """One ATen op call: its name, innermost module scope, MACs (None: formula defeated), and details.

    ``weights`` are the (weight, bias) parameter names of a conv call; a None weight means the kernel is
    computed at run time (not a constant: not convertible)."""

    op: str
    scope: str
    macs: int | None
    known: bool
    input_shapes: tuple[Shape | None, ...] = ()
    output_shapes: tuple[Shape | None, ...] = ()
    conv: ConvSpec | None = None
    param_names: tuple[str, ...] = ()
    bn_follows: str | None = None
    row: str = ""
    weights: tuple[str | None, str | None] = (None, None)


@dataclass
class ModuleCall:
    """A leaf module's first call: its type name, boundary shapes and (for convs) its own ConvSpec."""

    name: str
    type_name: str
    input_shapes: tuple[Shape | None, ...] = ()
    output_shapes: tuple[Shape | None, ...] = ()
    conv: ConvSpec | None = None


@dataclass
class Trace:
    """What an engine saw: leaf-module calls, op events, and the model's unique params/buffers (elements)."""

    modules: dict[str, ModuleCall] = field(default_factory=dict)
    events: list[OpEvent] = field(default_factory=list)
    params: dict[str, int] = field(default_factory=dict)
    buffers: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _tuple(value: Any, dims: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * dims
    if isinstance(value, int):
        return (value,) * dims
    values = tuple(int(v) for v in value)
    return values * dims if len(values) == 1 else values


# positional index of (stride, padding, dilation, transposed, output_padding, groups) per conv op form
_CONV_ARGS = {
    "convolution": (3, 4, 5, 6, 7, 8),
    "_convolution": (3, 4, 5, 6, 7, 8),
    "convolution_overrideable": (3, 4, 5, 6, 7, 8),
    "conv": (3, 4, 5, None, None, 6),
    "conv_transpose": (3, 4, 7, None, 5, 6),
}
_CONV_KW = ("stride", "padding", "dilation", "transposed", "output_padding", "groups")


def conv_spec_from_op(op: str, args: tuple, kwargs: dict) -> ConvSpec:
    """ConvSpec of a conv-family ATen call (``convolution``, ``conv2d``, ``conv_transpose3d``...)."""
    family = op if op in _CONV_ARGS else ("conv_transpose" if op.startswith("conv_transpose") else "conv")
    slots = _CONV_ARGS[family]
    vals = [args[i] if i is not None and i < len(args) else kwargs.get(k) for i, k in zip(slots, _CONV_KW)]
    stride, padding, dilation, transposed, _, groups = vals
    transposed = bool(transposed) or family == "conv_transpose"
    weight = tuple(int(d) for d in args[1].shape)
    dims = len(weight) - 2
    groups = int(groups or 1)
    text = padding if isinstance(padding, str) else ""
    pads = () if text else _tuple(padding, dims, 0) * 2
    out_channels = weight[1] * groups if transposed else weight[0]
    return ConvSpec(
        in_channels=int(args[0].shape[1]), out_channels=out_channels, kernel=weight[2:],
        stride=_tuple(stride, dims, 1), dilation=_tuple(dilation, dims, 1), groups=groups, pads=pads,
        padding_text=text, transposed=transposed, has_bias=len(args) > 2 and args[2] is not None,
    )


def _scope_rows(trace: Trace) -> list[tuple[str, str, list[OpEvent], ConvSpec | None]]:
    """(row name, op, events, conv) in first-seen order: leaf modules and functional MAC ops."""
    rows: dict[str, tuple[str, str, list[OpEvent], ConvSpec | None]] = {}
    counters: Counter = Counter()
    for name, call in trace.modules.items():
        rows[name] = (name, call.type_name, [], call.conv)
    for event in trace.events:
        if event.scope in trace.modules:
            event.row = event.scope
            rows[event.scope][2].append(event)
        elif event.macs != 0 or not event.known:
            prefix = f"{event.scope}." if event.scope else ""
            if event.known:
                key = (event.scope, event.op)
                event.row = f"{prefix}{event.op}_{counters[key]}"
                counters[key] += 1
                rows[event.row] = (event.row, event.op, [event], event.conv)
            else:
                event.row = event.scope or event.op
    return list(rows.values())


def _row_macs(events: list[OpEvent]) -> tuple[int | None, str]:
    known = [e for e in events if e.known]
    missing = sorted({e.op for e in events if not e.known})
    if any(e.macs is None for e in known):
        return None, "shape unknown: " + ", ".join(sorted({e.op for e in known if e.macs is None}))
    if missing and not any(e.macs for e in known):
        return None, "no formula: " + ", ".join(missing)
    note = ("partly uncounted: " + ", ".join(missing)) if missing else ""
    return sum(e.macs or 0 for e in known), note


def _owned(names: list[str], fqns: dict[str, int], taken: set[str]) -> int:
    total = 0
    for fqn in names:
        if fqn in fqns and fqn not in taken:
            taken.add(fqn)
            total += fqns[fqn]
    return total


def _children_of(name: str, fqns: dict[str, int]) -> list[str]:
    return [f for f in fqns if f.rpartition(".")[0] == name]


def build_layers(trace: Trace) -> tuple[Layer, ...]:
    """One ``Layer`` per leaf module / functional MAC op, params attributed to their first user."""
    taken_p: set[str] = set()
    taken_b: set[str] = set()
    layers = []
    for name, op, events, conv in _scope_rows(trace):
        call = trace.modules.get(name)
        used = [p for e in events for p in e.param_names]
        owned = _children_of(name, trace.params) if call else []
        params = _owned(owned + used, trace.params, taken_p)
        buffers = _owned(_children_of(name, trace.buffers) if call else [], trace.buffers, taken_b)
        macs, note = _row_macs(events)
        first = events[0] if events else None
        ins = call.input_shapes if call else (first.input_shapes if first else ())
        outs = call.output_shapes if call else (first.output_shapes if first else ())
        conv = conv or next((e.conv for e in events if e.conv is not None), None)
        bn = next((e.bn_follows for e in events if e.bn_follows), None)
        constant = all(e.weights[0] is not None for e in events if e.conv is not None)
        layers.append(Layer(name=name, op=op, input_shapes=ins, output_shapes=outs, params=params,
                            buffers=buffers, macs=macs if events or not note else 0, note=note,
                            path=tuple(name.split(".")), conv=conv, weight_constant=constant,
                            bn_follows=bn))
    return tuple(layers)


def build_uncounted(trace: Trace) -> tuple[Uncounted, ...]:
    """Ops with no formula that are not zero by convention, with how often and where they ran."""
    counts: Counter = Counter()
    where: dict[str, list[str]] = {}
    for event in trace.events:
        if not event.known:
            counts[event.op] += 1
            names = where.setdefault(event.op, [])
            if event.row not in names:
                names.append(event.row)
    return tuple(Uncounted(op, n, tuple(where[op])) for op, n in counts.most_common())


def build_report(trace: Trace, info: ModelInfo, extra: tuple[tuple[str, int], ...] = (),
                 weight_bytes: tuple[tuple[str, int], ...] = ()) -> Report:
    """The full report of a trace (rows, totals in elements, uncounted ops, warnings)."""
    layers = build_layers(trace)
    return Report(model=info, layers=layers, params=sum(trace.params.values()),
                  buffers=sum(trace.buffers.values()), weight_bytes=weight_bytes,
                  uncounted=build_uncounted(trace), warnings=tuple(trace.warnings), extra=extra)


def with_bn_folded(report: Report, affine: dict[str, int]) -> Report:
    """``report`` plus ``extra["params_bn_folded"]`` when a BN follows a conv: the params after folding
    each such BN into its conv, as ONNX exporters do. ``affine`` maps a BN row name to its gamma+beta
    elements; folding drops them and gives a bias-less conv a bias of Cout elements. A note (shown on
    request, ``--verbose``) states both figures, so every format can say why the extra figure differs."""
    saved = 0
    for layer in report.layers:
        if layer.conv is not None and affine.get(layer.bn_follows or ""):
            saved += affine[layer.bn_follows] - (0 if layer.conv.has_bias else layer.conv.out_channels)
    if not saved:
        return report
    folded = report.params - saved
    note = (f"params {folded:,} after folding BatchNorm into the preceding convs (as ONNX exporters do): "
            f"{report.params:,} as trained")
    return replace(report, extra=report.extra + (("params_bn_folded", folded),), notes=report.notes + (note,))
