"""What a model's weights count as, and the model totals: params, buffers, bytes per dtype.

Every weight source is counted once, as what its readers make of it (``roles.INPUT_ROLES``): a param when
any reader uses it in a learnable role, a buffer when readers only keep statistics or quantisation
metadata in it, config when readers only take shapes, scales or indices from it (never a param, whatever
its element type). The all-ones/all-zeros InstanceNormalization scale and bias that exporters write to
emulate GroupNorm (Reshape -> InstanceNormalization -> Reshape -> Mul -> Add) are config too: the Mul and
Add carry the GroupNorm's weight and bias. Weights inside control-flow bodies count for the node owning
the body. Units: elements and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from math import prod

import numpy as np
import onnx

from sepconv_cli.backends.onnx.roles import Role, input_role, is_config
from sepconv_cli.backends.onnx.subgraphs import BodyWeight, body_weights, outer_reads
from sepconv_cli.backends.onnx.weights import ALIAS_OPS, FLOAT_TYPES, WeightCatalogue, dtype_bytes, dtype_name


class Kind(str, Enum):
    """What a weight source counts as in the totals."""

    PARAM = "param"
    BUFFER = "buffer"
    CONFIG = "config"  # feeds only configuration inputs (shapes, scales, indices) or a norm identity
    LITERAL = "literal"  # a scalar constant of the code
    OTHER = "other"  # integer data that is not a weight (index tables, masks)
    UNUSED = "unused"  # read by no node


@dataclass(frozen=True)
class WeightTotals:
    """Model totals: unique param and buffer elements, bytes per dtype name, what each source counts as
    (``kinds``), and the float tensors set aside: ``unused`` (read by no node), ``scalars`` (rank-0
    literals) and ``config`` (read only as shapes, scales, indices or norm identities)."""

    params: int
    buffers: int
    weight_bytes: tuple[tuple[str, int], ...]
    kinds: dict[str, Kind]
    unused: tuple[str, ...] = ()
    unused_elements: int = 0
    scalars: int = 0
    config: int = 0

    @property
    def buffer_names(self) -> frozenset[str]:
        """Sources counted as buffers."""
        return frozenset(k for k, v in self.kinds.items() if v is Kind.BUFFER)


def _body_param(weight: BodyWeight) -> bool:
    return bool(weight.shape) and weight.dtype in FLOAT_TYPES  # float, not a scalar literal


def body_params(node: onnx.NodeProto) -> int:
    """Param elements held inside ``node``'s bodies."""
    return sum(prod(w.shape) for w in body_weights(node) if _body_param(w))


def totals(catalogue: WeightCatalogue, model: onnx.ModelProto, order: list[int]) -> WeightTotals:
    """Count every source once, as what its readers make it (``roles.INPUT_ROLES``): a param when any
    reader uses it as a learnable role, a buffer when readers only keep statistics or quantisation
    metadata in it, config when readers only take shapes, scales or indices from it."""
    kinds = classify(catalogue, model, order)
    params = buffers = scalars = config = 0
    by_dtype: dict[str, int] = {}
    for source in catalogue.sources.values():
        name = dtype_name(source.dtype)
        by_dtype[name] = by_dtype.get(name, 0) + dtype_bytes(source.dtype, source.elements)
        kind = kinds[source.name]
        params += source.elements if kind is Kind.PARAM else 0
        buffers += source.elements if kind is Kind.BUFFER else 0
        scalars += int(kind is Kind.LITERAL and source.is_float)
        config += int(kind is Kind.CONFIG and source.is_float)
    for node in model.graph.node:
        for weight in body_weights(node):
            key = dtype_name(weight.dtype)
            by_dtype[key] = by_dtype.get(key, 0) + dtype_bytes(weight.dtype, prod(weight.shape))
            params += prod(weight.shape) if _body_param(weight) else 0
    unused = tuple(k for k, v in kinds.items() if v is Kind.UNUSED)
    unused_elements = sum(catalogue.sources[n].elements for n in unused)
    return WeightTotals(params, buffers, tuple(sorted(by_dtype.items())), kinds, unused, unused_elements,
                        scalars, config)


def classify(catalogue: WeightCatalogue, model: onnx.ModelProto, order: list[int]) -> dict[str, Kind]:
    """Source name -> what it counts as, from the roles of every input that reads it. A reader whose
    outputs all end up only in configuration inputs (the Concat building Resize scales, the Cast of
    Pad pads) makes what it reads config too."""
    graph = model.graph
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, position))
    feeds_config = config_only(graph, order, readers)
    roles: dict[str, set[Role]] = {}
    for node in graph.node:
        if node.op_type in ALIAS_OPS and node.output and node.output[0] in catalogue.aliases:
            continue  # the alias's readers decide
        identities = norm_identities(catalogue, node, readers)
        for position, name in enumerate(node.input):
            key = catalogue.resolve(name) if name else None
            if key is not None:
                config = position in identities or id(node) in feeds_config
                role = Role.CONFIG if config else input_role(node.op_type, position).role
                roles.setdefault(key, set()).add(role)
        for name in outer_reads(node):
            key = catalogue.resolve(name)
            if key is not None:
                roles.setdefault(key, set()).add(Role.PARAM)
    used = {catalogue.resolve(o.name) for o in graph.output}
    return {key: _kind(catalogue, key, roles.get(key, set()), key in used) for key in catalogue.sources}


def config_only(graph: onnx.GraphProto, order: list[int],
                readers: dict[str, list[tuple[onnx.NodeProto, int]]]) -> set[int]:
    """``id()`` of the nodes whose every output is read only as configuration (directly, or through
    nodes like these), never as data and never as a graph output. Walked in reverse dependency order."""
    outputs = {o.name for o in graph.output}
    found: set[int] = set()
    for index in reversed(order):
        node = graph.node[index]
        names = [o for o in node.output if o]
        if names and all(_config_value(o, readers, outputs, found) for o in names):
            found.add(id(node))
    return found


def _config_value(name: str, readers: dict[str, list[tuple[onnx.NodeProto, int]]], outputs: set[str],
                  found: set[int]) -> bool:
    users = readers.get(name, [])
    return bool(users) and name not in outputs and all(
        id(user) in found or is_config(user.op_type, position) for user, position in users)


def _kind(catalogue: WeightCatalogue, key: str, roles: set[Role], is_output: bool) -> Kind:
    if not roles and not is_output:
        return Kind.UNUSED if catalogue.sources[key].is_float and not catalogue.is_literal(key) else Kind.OTHER
    if catalogue.is_literal(key):
        return Kind.LITERAL
    if not catalogue.is_param(key):  # integer data: config when only configuration reads it
        return Kind.CONFIG if roles and roles <= {Role.CONFIG} else Kind.OTHER
    if Role.PARAM in roles or is_output:
        return Kind.PARAM
    return Kind.BUFFER if Role.BUFFER in roles else Kind.CONFIG


def norm_identities(catalogue: WeightCatalogue, node: onnx.NodeProto,
                    readers: dict[str, list[tuple[onnx.NodeProto, int]]]) -> frozenset[int]:
    """Input positions of an ``InstanceNormalization`` that emulates GroupNorm: scale all ones and bias
    all zeros (stored inline), output only reshaped back. Those tensors are no trainable parameter (the
    following Mul/Add carry the GroupNorm's weight and bias); empty for any other node. ``readers``: tensor
    name -> (node, input position) reading it."""
    if node.op_type != "InstanceNormalization" or len(node.input) < 3 or not node.output:
        return frozenset()
    if {user.op_type for user, _ in readers.get(node.output[0], [])} != {"Reshape"}:
        return frozenset()
    scale, bias = (catalogue.inline_array(name) for name in node.input[1:3])
    if scale is None or bias is None or not (np.all(scale == 1) and np.all(bias == 0)):
        return frozenset()
    return frozenset({1, 2})
