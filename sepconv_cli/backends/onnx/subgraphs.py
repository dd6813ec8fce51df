"""Weights and reads inside control-flow bodies (``If`` branches, ``Loop`` and ``Scan`` bodies).

A body graph may hold its own initializers and ``Constant`` nodes, and may read tensors of the graphs
around it (outer-scope names). Both belong to the top-level node that owns the body: its row is credited
with the body's weights, and outer weights read only inside a body still count as used. Bodies nest, so
everything here recurses. Units: elements.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx

GRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


@dataclass(frozen=True)
class BodyWeight:
    """A constant tensor defined inside a body graph: its name there, element type and dims."""

    name: str
    dtype: int
    shape: tuple[int, ...]


def bodies(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held in ``node``'s attributes (none for ordinary ops)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def walk_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its bodies, depth first."""
    for node in graph.node:
        yield node
        for body in bodies(node):
            yield from walk_nodes(body)


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Tensor names read by any node (bodies included) or exposed as graph outputs."""
    names = {o.name for o in graph.output}
    for node in walk_nodes(graph):
        names.update(i for i in node.input if i)
    return names


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Tensors ``node`` reads, in order: its inputs, then what its bodies read from the enclosing graphs."""
    return [name for name in list(node.input) + outer_reads(node) if name]


def ancestors(graph: onnx.GraphProto, wanted: set[str]) -> tuple[list[onnx.NodeProto], set[str]]:
    """The nodes of ``graph`` (in its order) that the ``wanted`` tensors are computed from, and every
    tensor name those nodes read (``wanted`` included)."""
    wanted, keep = set(wanted), []
    for node in reversed(graph.node):
        if wanted & set(node.output):
            keep.append(node)
            wanted.update(node_reads(node))
    return keep[::-1], wanted


def body_weights(node: onnx.NodeProto) -> list[BodyWeight]:
    """Initializers and tensor-valued ``Constant`` outputs of every body under ``node`` (recursively)."""
    found: list[BodyWeight] = []
    for graph in bodies(node):
        found += [BodyWeight(t.name, t.data_type, tuple(t.dims)) for t in graph.initializer]
        for inner in graph.node:
            if inner.op_type == "Constant" and inner.output:
                found += [BodyWeight(inner.output[0], a.t.data_type, tuple(a.t.dims))
                          for a in inner.attribute if a.type == onnx.AttributeProto.TENSOR]
            found += body_weights(inner)
    return found


def outer_reads(node: onnx.NodeProto) -> list[str]:
    """Names read inside ``node``'s bodies that no body defines: tensors of the enclosing graphs."""
    reads: list[str] = []
    for graph in bodies(node):
        local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        local |= {o for inner in graph.node for o in inner.output}
        for inner in graph.node:
            wanted = [name for name in inner.input if name] + outer_reads(inner)
            reads += [name for name in wanted if name not in local]
        reads += [o.name for o in graph.output if o.name not in local]
    return list(dict.fromkeys(reads))


__all__ = ["BodyWeight", "GRAPH_ATTRIBUTES", "bodies", "body_weights", "ancestors", "node_reads", "outer_reads", "used_names", "walk_nodes"]
