"""Structural checks of a parsed ONNX model, before anything reads it: each corrupt or hostile file gets
its own one-line ``InputError`` instead of failing somewhere deep inside onnx, numpy or sepconv.

Checked, in order: every string field is valid UTF-8 (protobuf hands back ``bytes`` otherwise; a bit
flipped in a name does that); every node's domain is imported by the model (or by the local function
that holds it); no model-local function calls itself, directly or through others; every element and data
type is one ONNX defines; no graph defines an initializer twice; no initializer declares more values than
it stores (a ``[2^31-1, ...]`` weight would otherwise be allocated); weights of arithmetic ops are numbers,
not strings. Linear in the size of the proto; weight bytes are measured, never decoded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from math import prod

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from sepconv_cli.backends.onnx.subgraphs import bodies
from sepconv_cli.backends.onnx.weights import dtype_bytes
from sepconv_cli.errors import InputError

KNOWN_TYPES = frozenset(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}
"""ONNX data types this onnx release defines."""

NUMERIC_WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Add", "Mul"})
"""Ops whose inputs must be numbers (a string initializer there is a corrupt file, not a model)."""

_STRING, _MESSAGE = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE
_SCALAR_FIELDS = {onnx.TensorProto.FLOAT: "float_data", onnx.TensorProto.DOUBLE: "double_data",
                  onnx.TensorProto.INT64: "int64_data", onnx.TensorProto.INT32: "int32_data",
                  onnx.TensorProto.STRING: "string_data"}
"""Data type -> the typed field holding one value per element when ``raw_data`` is not used."""


def _repeated(field: FieldDescriptor) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 6; ``label`` before
    return bool(is_repeated) if is_repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _bad_string(message: Message, path: str) -> str | None:
    """Path of the first string field of ``message`` (recursively) that is not valid UTF-8."""
    for field, value in message.ListFields():
        if field.type not in (_STRING, _MESSAGE):
            continue
        repeated = _repeated(field)
        items = value if repeated else (value,)
        for index, item in enumerate(items):
            where = f"{path}.{field.name}" + (f"[{index}]" if repeated else "")
            if field.type == _STRING and not isinstance(item, str):
                return where
            if field.type == _MESSAGE and (found := _bad_string(item, where)) is not None:
                return found
    return None


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph of its nodes (Loop, If, Scan bodies), depth first."""
    stack = [graph]
    while stack:
        current = stack.pop()
        yield current
        for node in current.node:
            stack.extend(bodies(node))


def _domains(imports) -> set[str]:
    return {entry.domain or "" for entry in imports} | {"", "ai.onnx"}


def _check_domains(source: str, model: onnx.ModelProto) -> None:
    declared = _domains(model.opset_import)
    for graph in _graphs(model.graph):
        for node in graph.node:
            if (node.domain or "") not in declared:
                raise InputError(f"{source}: node {node.name or node.op_type!r} uses domain {node.domain!r}, which "
                                 "the model does not import (no opset_import entry; corrupt or hand-edited file)")
    for function in model.functions:
        own = _domains(function.opset_import) | declared
        for node in function.node:
            if (node.domain or "") not in own:
                raise InputError(f"{source}: function {function.name!r} uses domain {node.domain!r}, which it "
                                 "does not import")


def _check_functions(source: str, model: onnx.ModelProto) -> None:
    """InputError naming a model-local function that calls itself (directly or through others)."""
    local = {(f.domain, f.name): f for f in model.functions}
    calls = {key: {(n.domain, n.op_type) for n in f.node if (n.domain, n.op_type) in local}
             for key, f in local.items()}
    state: dict[tuple[str, str], int] = {}  # 1: on the current path, 2: done
    for start in calls:
        stack = [(start, iter(sorted(calls[start])))]
        state[start] = state.get(start) or 1
        while stack:
            key, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[key] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise InputError(f"{source}: model-local function {nxt[1]!r} calls itself (recursive functions "
                                 "cannot run)")
            elif state.get(nxt) is None:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(calls[nxt]))))


def _value_types(graph: onnx.GraphProto) -> Iterator[tuple[str, int]]:
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        if info.type.HasField("tensor_type"):
            yield info.name, info.type.tensor_type.elem_type


def _stored_bytes(tensor: onnx.TensorProto) -> tuple[int, int] | None:
    """(bytes declared by the dims, bytes stored in the file); None for external data or for a packing
    not measured here."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    declared = dtype_bytes(tensor.data_type, prod(tensor.dims))
    if tensor.HasField("raw_data"):
        return (declared, len(tensor.raw_data)) if declared or not tensor.dims else None
    field = _SCALAR_FIELDS.get(tensor.data_type)
    if field is None:
        return None
    return prod(tensor.dims), len(getattr(tensor, field))


def _check_tensor(source: str, tensor: onnx.TensorProto, what: str) -> None:
    if tensor.data_type not in KNOWN_TYPES:
        raise InputError(f"{source}: {what} {tensor.name!r} has unknown data type {tensor.data_type}")
    if any(d < 0 for d in tensor.dims):
        raise InputError(f"{source}: {what} {tensor.name!r} has a negative dimension {list(tensor.dims)}")
    sizes = _stored_bytes(tensor)
    if sizes is not None and sizes[0] != sizes[1]:
        dims = "x".join(str(d) for d in tensor.dims) or "a scalar"
        unit = "bytes" if tensor.HasField("raw_data") else "values"
        raise InputError(f"{source}: {what} {tensor.name!r} is declared {dims} ({sizes[0]:,} {unit}) but the "
                         f"file holds {sizes[1]:,} (corrupt or truncated file)")


def _check_interface(source: str, graph: onnx.GraphProto) -> None:
    """InputError for a graph with no output, a nameless input or output, or an output nothing produces."""
    if not graph.output:
        raise InputError(f"{source}: the graph declares no outputs")
    for kind, values in (("input", graph.input), ("output", graph.output)):
        index = next((i for i, v in enumerate(values) if not v.name), None)
        if index is not None:
            raise InputError(f"{source}: graph {kind} {index} has no name")
    made = {o for node in graph.node for o in node.output} | {i.name for i in graph.input}
    made |= {t.name for t in graph.initializer}
    orphan = next((o.name for o in graph.output if o.name not in made), None)
    if orphan is not None:
        raise InputError(f"{source}: graph output {orphan!r} is produced by no node")


def _check_graph(source: str, graph: onnx.GraphProto) -> None:
    seen: set[str] = set()
    for tensor in graph.initializer:
        if tensor.name in seen:
            raise InputError(f"{source}: initializer {tensor.name!r} is defined twice (corrupt or hand-edited file)")
        seen.add(tensor.name)
        _check_tensor(source, tensor, "initializer")
    for name, elem_type in _value_types(graph):
        if elem_type not in KNOWN_TYPES:
            raise InputError(f"{source}: value {name!r} has unknown element type {elem_type}")
    strings = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.STRING}
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                _check_tensor(source, attr.t, f"constant of node {node.name or node.op_type!r}")
        bad = next((i for i in node.input if i in strings), None) if node.op_type in NUMERIC_WEIGHT_OPS else None
        if bad is not None:
            raise InputError(f"{source}: {node.op_type} node {node.name or node.op_type!r} reads the string-typed "
                             f"initializer {bad!r}; it takes numbers")


_UNKNOWN_OP: tuple[dict[str, int], frozenset[str], tuple[int, int], tuple[int, ...]] = ({}, frozenset(), (0, 2**31), ())

ATTRIBUTE_TYPES = frozenset(onnx.AttributeProto.AttributeType.values()) - {onnx.AttributeProto.UNDEFINED}


@functools.lru_cache(maxsize=512)
def _schema(op_type: str, version: int) -> tuple[dict[str, int], frozenset[str], tuple[int, int], tuple[int, ...]]:
    """(attribute name -> declared type, required attributes, (min, max) inputs, positions of the inputs
    that must be given) of a standard op at opset ``version`` (nothing known for an op onnx lacks)."""
    try:
        schema = onnx.defs.get_schema(op_type, max(version, 1), "")
    except onnx.defs.SchemaError:
        return _UNKNOWN_OP
    types = {name: int(attr.type) for name, attr in schema.attributes.items()}
    required = frozenset(name for name, attr in schema.attributes.items() if attr.required)
    single = onnx.defs.OpSchema.FormalParameterOption.Single
    needed = tuple(i for i, formal in enumerate(schema.inputs) if formal.option == single)
    return types, required, (schema.min_input, schema.max_input), needed


def _check_node(source: str, node: onnx.NodeProto, version: int) -> None:
    standard = node.domain in ("", "ai.onnx")
    declared, required, (least, most), needed = _schema(node.op_type, version) if standard else _UNKNOWN_OP
    what = f"{node.op_type} node {node.name or node.op_type!r}"
    missing = sorted(required - {a.name for a in node.attribute})
    if missing:
        raise InputError(f"{source}: {what} lacks its required attribute {missing[0]!r}")
    if not least <= len(node.input) <= most:
        raise InputError(f"{source}: {what} has {len(node.input)} inputs; {node.op_type} takes {least} to {most}")
    empty = next((i for i in needed if i < len(node.input) and not node.input[i]), None)
    if empty is not None:
        raise InputError(f"{source}: {what} has no name for its required input {empty}")
    for attr in node.attribute:
        where = f"{source}: attribute {attr.name!r} of {what}"
        if attr.type not in ATTRIBUTE_TYPES:
            raise InputError(f"{where} has unknown type {attr.type}")
        expected = declared.get(attr.name, attr.type)
        if expected != attr.type:
            names = onnx.AttributeProto.AttributeType.Name
            raise InputError(f"{where} is {names(attr.type)}; {node.op_type} takes {names(expected)}")


def _check_nodes(source: str, model: onnx.ModelProto) -> None:
    """InputError for a standard op without a required attribute, with too few or too many inputs, or with
    an attribute of unknown type or of another type than the op declares."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    for graph in _graphs(model.graph):
        for node in graph.node:
            _check_node(source, node, version)


def check_model(source: str, model: onnx.ModelProto) -> None:
    """InputError (one line naming ``source`` and the problem) for the first structural fault found."""
    where = _bad_string(model, "model")
    if where is not None:
        raise InputError(f"{source}: {where} is not valid UTF-8 text (corrupt file: a flipped bit?)")
    _check_domains(source, model)
    _check_functions(source, model)
    _check_nodes(source, model)
    _check_interface(source, model.graph)
    for graph in _graphs(model.graph):
        _check_graph(source, graph)


__all__ = ["KNOWN_TYPES", "check_model"]
