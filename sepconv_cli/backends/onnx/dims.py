"""Symbolic dims of an ONNX model's inputs: the batch taken as 1, the others left to a formula.

Almost every export has a symbolic batch dim (``dynamic_axes={0: 'N'}``); peers count per sample, and so
does sepconv: a symbolic leading dim of a data input of rank >= 2 that ``--input-shape`` did not pin is
taken as 1, and the report records it (``assumed_dims``). Other symbolic dims (H, W, a sequence length)
stay symbolic: ``symbolic.py`` fits the MACs as a polynomial in them. An unnamed dynamic dim is named
``<input>:<axis>`` so that it can still be pinned and shown. All edits happen on the skeleton
(``graph.skeleton``), never on the loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

BATCH = 1
"""Size a symbolic batch dim is taken at (per sample)."""


@dataclass(frozen=True)
class Dims:
    """Where each free symbol sits: ``symbol -> ((input name, axis), ...)``, in first-seen order."""

    places: dict[str, tuple[tuple[str, int], ...]]

    @property
    def symbols(self) -> tuple[str, ...]:
        """The free symbols, in the order the inputs declare them."""
        return tuple(self.places)


def _data_inputs(sk: onnx.ModelProto, input_names: list[str]) -> list[onnx.ValueInfoProto]:
    wanted = set(input_names)
    return [info for info in sk.graph.input if info.name in wanted]


def _symbol(info: onnx.ValueInfoProto, axis: int, dim: onnx.TensorShapeProto.Dimension) -> str:
    return dim.dim_param or f"{info.name}:{axis}"


def assume_batch(sk: onnx.ModelProto, input_names: list[str], pinned: set[str]) -> tuple[tuple[str, int], ...]:
    """Set the symbolic leading dim of every data input of rank >= 2 not in ``pinned`` to ``BATCH``
    (everywhere its symbol appears); returns the ``(symbol, size)`` pairs assumed, once each."""
    assumed: dict[str, int] = {}
    for info in _data_inputs(sk, input_names):
        dims = info.type.tensor_type.shape.dim
        if info.name in pinned or len(dims) < 2 or dims[0].HasField("dim_value"):
            continue
        assumed.setdefault(_symbol(info, 0, dims[0]), BATCH)
        dims[0].dim_value = BATCH
    substitute(sk.graph, assumed)
    return tuple(assumed.items())


def free_dims(sk: onnx.ModelProto, input_names: list[str]) -> Dims:
    """The symbols still free on the data inputs, and where each sits."""
    places: dict[str, list[tuple[str, int]]] = {}
    for info in _data_inputs(sk, input_names):
        for axis, dim in enumerate(info.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                places.setdefault(_symbol(info, axis, dim), []).append((info.name, axis))
    return Dims({s: tuple(p) for s, p in places.items()})


def pinned_copy(sk: onnx.ModelProto, dims: Dims, sizes: dict[str, int]) -> onnx.ModelProto:
    """A copy of the skeleton with every free symbol set to ``sizes[symbol]``."""
    out = onnx.ModelProto()
    out.CopyFrom(sk)
    by_name = {info.name: info for info in out.graph.input}
    for symbol, places in dims.places.items():
        for name, axis in places:
            by_name[name].type.tensor_type.shape.dim[axis].dim_value = sizes[symbol]
    substitute(out.graph, {s: v for s, v in sizes.items() if ":" not in s})
    return out


def substitute(graph: onnx.GraphProto, symbols: dict[str, int]) -> None:
    """Replace every dim named by ``symbols`` (inputs, outputs, value_info) by its size."""
    if not symbols:
        return
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_value = symbols[dim.dim_param]


__all__ = ["BATCH", "Dims", "assume_batch", "free_dims", "pinned_copy", "substitute"]
