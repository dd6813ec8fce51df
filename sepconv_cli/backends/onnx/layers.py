"""One report row per ONNX node that matters: names, scopes, shapes, params, MACs, conv geometry.

Rows follow the graph's dependency order. ``Constant`` nodes (and ``ConstantOfShape`` of a constant
shape) are weight sources, not rows: their elements are credited to the first node that reads them.
Units: params/buffers in elements, MACs in multiply-accumulates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import onnx

from sepconv_cli.backends.onnx.ops import OP_HANDLERS, NodeView, OpCost, UnknownShape
from sepconv_cli.backends.onnx.roles import Role, input_role
from sepconv_cli.backends.onnx.subgraphs import GRAPH_ATTRIBUTES, outer_reads
from sepconv_cli.backends.onnx.totals import Kind, body_params
from sepconv_cli.backends.onnx.weights import WeightCatalogue
from sepconv_cli.core.records import Layer, Operand, Shape, Uncounted
from sepconv_cli.errors import ShapeError

CONV_OPS = ("Conv", "ConvTranspose")
NO_FORMULA = "no formula"


def scope_path(name: str) -> tuple[str, ...]:
    """``"/layer1/0/conv1/Conv"`` -> ``("layer1", "0", "conv1")``: every ``/`` part except the last."""
    parts = [p for p in name.split("/") if p]
    return tuple(parts[:-1])


def layer_names(graph: onnx.GraphProto) -> list[str]:
    """Unique row names: the node name, ``<OpType>_<index>`` when empty, ``<name>_<index>`` if repeated."""
    names: list[str] = []
    seen: set[str] = set()
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if name in seen:
            name = f"{name}_{index}"
        seen.add(name)
        names.append(name)
    return names


@dataclass(frozen=True)
class GraphFacts:
    """What row building needs besides the node: shapes, weights, names, consumers, graph outputs."""

    source: str
    shapes: dict[str, Shape | None]
    catalogue: WeightCatalogue
    names: list[str]
    consumers: dict[str, list[int]]
    graph_outputs: frozenset[str]
    kinds: dict[str, Kind]  # weight source -> what it counts as (weights.classify)
    bn_inputs: dict[int, str]  # BatchNormalization node index -> its data input
    overridable: frozenset[str] = frozenset()  # initializers also listed as inputs (IR >= 4): run-time defaults
    attrs: dict[int, dict] = field(default_factory=dict)  # node index -> attributes, read once


def consumers_of(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Tensor name -> indices of the nodes reading it."""
    users: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name:
                users.setdefault(name, []).append(index)
    return users


def build_layers(graph: onnx.GraphProto, order: list[int], facts: GraphFacts) -> tuple[Layer, ...]:
    """Rows in dependency order, each weight credited to its first reader."""
    credited: set[str] = set()
    rows = []
    for index in order:
        node = graph.node[index]
        if facts.catalogue.produced_here(node):
            continue
        rows.append(_row(node, index, facts, credited))
    return tuple(rows)


def cost_rows(graph: onnx.GraphProto, order: list[int], facts: GraphFacts) -> tuple[Layer, ...]:
    """The same rows as ``build_layers`` with only what depends on sizes: shapes, MACs, note, formula
    (params and operands left out). Cheap enough to call once per size the symbolic fit counts at."""
    rows = []
    for index in order:
        node = graph.node[index]
        if facts.catalogue.produced_here(node):
            continue
        view = _view(node, index, facts)
        cost, note = _cost(view, node, facts.source)
        rows.append(Layer(name=view.name, op=node.op_type, output_shapes=view.output_shapes,
                          input_shapes=tuple(s for s, here in zip(view.input_shapes, view.present) if here),
                          macs=cost.macs if cost is not None else None, note=note, formula=_formula(cost)))
    return tuple(rows)


def _view(node: onnx.NodeProto, index: int, facts: GraphFacts) -> NodeView:
    attrs = facts.attrs.get(index)
    if attrs is None:
        attrs = facts.attrs[index] = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute
                                      if a.type not in GRAPH_ATTRIBUTES}
    return NodeView(
        name=facts.names[index], op=node.op_type, attrs=attrs,
        input_shapes=tuple(facts.shapes.get(i) if i else None for i in node.input),
        output_shapes=tuple(facts.shapes.get(o) if o else None for o in node.output),
        present=tuple(bool(i) for i in node.input),
    )


def _row(node: onnx.NodeProto, index: int, facts: GraphFacts, credited: set[str]) -> Layer:
    name = facts.names[index]
    view = _view(node, index, facts)
    cost, note = _cost(view, node, facts.source)
    params, buffers, operands = _credit(node, facts, credited)
    is_conv = node.op_type in CONV_OPS and node.domain in ("", "ai.onnx")
    return Layer(
        name=name, op=node.op_type,
        input_shapes=tuple(s for s, present in zip(view.input_shapes, view.present) if present),
        output_shapes=view.output_shapes, params=params, buffers=buffers,
        macs=cost.macs if cost is not None else None, note=note, path=scope_path(name),
        conv=cost.conv if cost is not None else None,
        weight_constant=_constant_weights(node, facts) if is_conv else True,
        bn_follows=_bn_follows(node, facts) if is_conv else None,
        formula=_formula(cost),
        operands=operands,
    )


def _formula(cost: OpCost | None) -> str:
    """``"MACs = M·K·N = 1·512·10 = 5,120"``; empty when the MACs are unknown or have no formula."""
    if cost is None or cost.macs is None or not cost.formula:
        return ""
    if cost.formula.startswith("0 "):
        return f"MACs = {cost.formula}"
    return f"MACs = {cost.formula} = {cost.macs:,}"


def _constant_weights(node: onnx.NodeProto, facts: GraphFacts) -> bool:
    """True when a conv's kernel (and bias) are constants of the model: not computed, and not graph inputs
    that a caller may override at run time (a converted model could not keep such an input)."""
    if len(node.input) < 2 or not node.input[1]:
        return False
    tensors = [name for name in node.input[1:3] if name]  # kernel, and bias when present
    return all(facts.catalogue.resolve(n) is not None and n not in facts.overridable for n in tensors)


def _cost(view: NodeView, node: onnx.NodeProto, source: str) -> tuple[OpCost | None, str]:
    handler = OP_HANDLERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if handler is None:
        return None, NO_FORMULA
    try:
        cost = handler(view)
        return cost, cost.note
    except UnknownShape as exc:
        return None, f"shape unknown: {exc}"
    except ShapeError as exc:
        raise ShapeError(f"{source}: {exc}") from None


def _credit(node: onnx.NodeProto, facts: GraphFacts, credited: set[str]) -> tuple[int, int, tuple[Operand, ...]]:
    """(params, buffers) elements of weights this node is the first reader of (inside its bodies too),
    plus the weights its bodies hold; and what each of its inputs counts as (``Operand``)."""
    params, buffers, operands = body_params(node), 0, []
    alias = node.op_type in ("Identity", "Cast") and bool(node.output) and node.output[0] in facts.catalogue.aliases
    names = [(i, name) for i, name in enumerate(node.input) if name] + [(-1, n) for n in outer_reads(node)]
    for position, name in names:
        key = facts.catalogue.resolve(name)
        kind = facts.kinds.get(key) if key is not None else None
        elements = 0
        if key is not None and kind in (Kind.PARAM, Kind.BUFFER) and key not in credited and not alias:
            # (an alias's reader gets the credit, not the Identity/Cast making it)
            credited.add(key)
            elements = facts.catalogue.sources[key].elements
            params += elements if kind is Kind.PARAM else 0
            buffers += elements if kind is Kind.BUFFER else 0
        if position >= 0:
            operands.append(_operand(node, position, name, kind, elements, facts))
    return params, buffers, tuple(operands)


def _operand(node: onnx.NodeProto, position: int, name: str, kind: Kind | None, elements: int,
             facts: GraphFacts) -> Operand:
    listed = input_role(node.op_type, position)
    role = listed.name
    if kind is Kind.CONFIG and node.op_type == "InstanceNormalization" and position in (1, 2):
        role = "identity of a GroupNorm emulation (all ones / zeros)"
    elif kind is Kind.CONFIG and listed.role is not Role.CONFIG:
        role = f"{role}, which only feeds configuration inputs (shapes, scales, indices)"
    text = "activation" if kind is None else ("constant" if kind is Kind.OTHER else kind.value)
    return Operand(name=name, shape=facts.shapes.get(name), kind=text, role=role, elements=elements)


def _bn_follows(node: onnx.NodeProto, facts: GraphFacts) -> str | None:
    """Name of the BatchNormalization that is the only reader of the conv's output, if any."""
    out = node.output[0] if node.output else ""
    users = facts.consumers.get(out, [])
    if len(users) != 1 or out in facts.graph_outputs:
        return None
    return facts.names[users[0]] if facts.bn_inputs.get(users[0]) == out else None


def uncounted(layers: tuple[Layer, ...]) -> tuple[Uncounted, ...]:
    """Ops without a formula, most frequent first, with the names of their rows."""
    counts = Counter(layer.op for layer in layers if layer.note == NO_FORMULA)
    return tuple(
        Uncounted(op, n, tuple(layer.name for layer in layers if layer.op == op and layer.note == NO_FORMULA))
        for op, n in counts.most_common()
    )
