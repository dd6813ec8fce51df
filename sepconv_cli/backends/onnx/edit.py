"""Small ONNX graph-editing functions for the rewriter: layer names, attributes, tensor uses, renames.

Works on ``onnx`` protobufs directly. Layer names are the ONNX loader's (``layer_names``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import onnx
from onnx import external_data_helper, helper

from sepconv_cli.backends.onnx.layers import layer_names
from sepconv_cli.backends.onnx.subgraphs import used_names, walk_nodes
from sepconv_cli.errors import InputError

# Attributes a depthwise replacement inherits unchanged from the conv it replaces.
INHERITED_ATTRS = ("strides", "pads", "dilations", "auto_pad", "output_padding", "output_shape")


def nodes_by_layer(graph: onnx.GraphProto) -> dict[str, int]:
    """Layer name (as the ONNX loader names rows) -> position of the node in ``graph.node``."""
    return {name: i for i, name in enumerate(layer_names(graph))}


def attrs(node: onnx.NodeProto) -> dict:
    """The node's attributes as plain Python values."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Make every reader of tensor ``old`` (subgraphs included) read ``new`` instead."""
    for node in walk_nodes(graph):
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def drop_unused(graph: onnx.GraphProto, candidates: Iterable[str]) -> None:
    """Remove initializers and Constant nodes among ``candidates`` that nothing reads any more.

    Only tensors the rewrite made unused are considered: untouched dead weights stay as they were.
    Matching graph inputs (IR < 4 lists initializers as inputs) go with their initializer.
    """
    used = used_names(graph)
    dead = {name for name in candidates if name and name not in used}
    if not dead:
        return
    keep_init = [t for t in graph.initializer if t.name not in dead]
    keep_nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] in dead)]
    keep_inputs = [i for i in graph.input if i.name not in dead]
    keep_info = [v for v in graph.value_info if v.name not in dead]
    for field, kept in ((graph.initializer, keep_init), (graph.node, keep_nodes), (graph.input, keep_inputs),
                        (graph.value_info, keep_info)):
        if len(field) != len(kept):
            del field[:]
            field.extend(kept)


def has_external_data(model: onnx.ModelProto) -> bool:
    """True when any initializer of the main graph stores its bytes outside the model file."""
    return any(external_data_helper.uses_external_data(t) for t in model.graph.initializer)


def load_missing_external_data(model: onnx.ModelProto, model_path: str) -> None:
    """Read the external bytes of ``model`` (saved at ``model_path``) into memory, in place."""
    if not has_external_data(model):
        return
    try:
        external_data_helper.load_external_data_for_model(model, os.path.dirname(os.path.abspath(model_path)))
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:  # outside, missing, short
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{model_path}: external data cannot be read ({reason})") from None


def tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name produced or declared in the main graph (to avoid collisions)."""
    names = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.output)
    return names
