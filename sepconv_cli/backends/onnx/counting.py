"""Counting rows at given input sizes: static inference first, the shape probe only for what it leaves.

``Counter.rows`` turns a shape table into report rows. ``Counter.at`` counts a skeleton whose inputs are
pinned: onnx shape inference with data propagation, and when rows that have a formula still lack shapes,
one bounded onnxruntime run (``shape_probe``) reads the missing shapes. ``Counter.at_points`` does the
same for several sizes of the same skeleton with at most one probe run for all of them (the symbolic
fit counts at a grid of sizes). The model is never run when static shapes suffice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import onnx

from sepconv_cli.backends.onnx.dims import Dims, pinned_copy
from sepconv_cli.backends.onnx.graph import Inferred, infer
from sepconv_cli.backends.onnx.layers import GraphFacts, build_layers, cost_rows
from sepconv_cli.core.records import Layer, Shape, is_static
from sepconv_cli.errors import SepconvError


def unresolved(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Rows with a formula whose MACs are unknown because a shape is."""
    return tuple(layer for layer in layers if layer.macs is None and layer.note.startswith("shape unknown"))


@dataclass(frozen=True)
class Counted:
    """Rows at one set of sizes, the shapes they came from, and how the missing shapes were found."""

    layers: tuple[Layer, ...]
    shapes: dict[str, Shape | None]
    source: str = ""  # "" or shape_probe.SOURCE (imported only when a probe runs)
    problem: str = ""  # why the probe did not run, when it was needed


@dataclass(frozen=True)
class Counter:
    """Everything fixed while sizes vary: the graph, its order, weight facts and the probe's bounds."""

    graph: onnx.GraphProto
    order: list[int]
    facts: GraphFacts
    limits: Any = None  # shape_probe.ProbeLimits; None: the command's (shape_probe.current_limits)

    def rows(self, shapes: dict[str, Shape | None]) -> tuple[Layer, ...]:
        """Report rows for the shape table ``shapes``."""
        return build_layers(self.graph, self.order, replace(self.facts, shapes=shapes))

    def costs(self, shapes: dict[str, Shape | None]) -> tuple[Layer, ...]:
        """Rows with only their size-dependent parts (shapes, MACs, formula), for counting at many sizes."""
        return cost_rows(self.graph, self.order, replace(self.facts, shapes=shapes))

    def at(self, sk: onnx.ModelProto, inferred: Inferred) -> Counted:
        """Rows of the pinned skeleton ``sk`` (``inferred``: its static shapes), probing once if needed."""
        layers = self.rows(inferred.shapes)
        if not unresolved(layers):
            return Counted(layers, inferred.shapes)
        found = self._probe(sk, [_feed(sk, inferred.shapes)], [inferred])
        if found.error:
            return Counted(layers, inferred.shapes, problem=found.error)
        shapes = merge(sk, inferred.shapes, found.shapes[0])
        return Counted(self.rows(shapes), shapes, found.source)

    def at_points(self, sk: onnx.ModelProto, dims: Dims, points: list[dict[str, int]]) -> list[Counted | None]:
        """Rows at each of ``points`` (``{symbol: size}``) of the symbolic skeleton ``sk``; None where the
        sizes are impossible for the model (a conv output would be empty, inference finds a conflict)."""
        statics: list[tuple[onnx.ModelProto, Inferred, tuple[Layer, ...]] | None] = []
        for sizes in points:
            statics.append(self._static(pinned_copy(sk, dims, sizes)))
        needing = [i for i, s in enumerate(statics) if s is not None and unresolved(s[2])]
        out: list[Counted | None] = [None if s is None else Counted(s[2], s[1].shapes) for s in statics]
        if not needing:
            return out
        feeds = [_feed(statics[i][0], statics[i][1].shapes) for i in needing]  # type: ignore[index]
        found = self._probe(sk, feeds, [statics[i][1] for i in needing])  # type: ignore[index]
        for slot, index in enumerate(needing):
            pinned, inferred, layers = statics[index]  # type: ignore[misc]
            if found.error:
                out[index] = Counted(layers, inferred.shapes, problem=found.error)
            else:
                shapes = merge(pinned, inferred.shapes, found.shapes[slot])
                out[index] = Counted(self.costs(shapes), shapes, found.source)
        return out

    def _static(self, sk: onnx.ModelProto) -> tuple[onnx.ModelProto, Inferred, tuple[Layer, ...]] | None:
        try:
            inferred = infer(self.facts.source, sk, check=False)
            return sk, inferred, self.costs(inferred.shapes)
        except SepconvError:
            return None

    def _probe(self, sk: onnx.ModelProto, feeds: list[dict], inferred: list[Inferred]):
        from sepconv_cli.backends.onnx import shape_probe  # only graphs static inference cannot resolve


        """One run per feed set; the memory bound is the largest prediction among them. Only the values
        whose shape is unknown somewhere and does not depend on the data are read."""
        dtypes = inferred[0].dtypes
        skip = shape_probe.tainted(sk.graph)
        outputs = {o: dtypes[o] for n in sk.graph.node for o in n.output if o and dtypes.get(o) and o not in skip
                   and not all(is_static(i.shapes.get(o)) for i in inferred)}
        if not outputs:
            return shape_probe.Probe(error="the unknown shapes depend on the data, which a run on zeros cannot tell")
        predicted = max(shape_probe.predicted_bytes(sk, i.shapes, i.dtypes) for i in inferred)
        return shape_probe.probe(sk, feeds, outputs, self.limits or shape_probe.current_limits(), predicted)


def _feed(sk: onnx.ModelProto, shapes: dict[str, Shape | None]) -> dict[str, tuple[tuple[int, ...], int]]:
    """Every graph input of the pinned skeleton at its static shape (weights included: fed zeros)."""
    feed = {}
    for info in sk.graph.input:
        shape = shapes.get(info.name)
        if is_static(shape):
            feed[info.name] = (tuple(shape), info.type.tensor_type.elem_type)  # type: ignore[arg-type]
    return feed


def merge(sk: onnx.ModelProto, static: dict[str, Shape | None], probed: dict[str, Shape]) -> dict[str, Shape | None]:
    """Static shapes, with the probe's filling the ones that are not static, except downstream of an op
    whose output shape depends on the data (zeros say nothing there)."""
    from sepconv_cli.backends.onnx.shape_probe import tainted

    skip = tainted(sk.graph)
    shapes = dict(static)
    for name, shape in probed.items():
        if name not in skip and not is_static(shapes.get(name)):
            shapes[name] = tuple(shape)
    return shapes


__all__ = ["Counted", "Counter", "merge", "unresolved"]
