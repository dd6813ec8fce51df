"""Run an ONNX graph forward in pieces, keeping the tensors alive at the cut for every sample chunk.

Calibration walks a graph once: ``Walker.advance(q)`` runs the nodes between its position and node ``q``
(topological order) as one extracted sub-model whose inputs are the live set, i.e. the tensors produced
before the cut and read after it (outer-scope reads of ``If``/``Loop``/``Scan`` bodies included) plus the
graph outputs produced so far. Samples go through in fixed chunks, and the live set is stored per chunk,
so tensors that are not per-sample (a ``Shape`` output, a batch-sized constant) stay with the chunk that
made them. Memory: the live set of every chunk, in the model's own dtypes (float32 stays float32).
Initializers are read from the model at the moment a segment is built, so weights installed before a
segment runs are the weights it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx
from onnx import helper

from sepconv_cli.backends.onnx.probe import session
from sepconv_cli.backends.onnx.subgraphs import node_reads
from sepconv_cli.errors import RewriteError

Chunk = dict[str, np.ndarray]
Runner = Callable[[int], list[np.ndarray]]


def _input_info(name: str, value: np.ndarray) -> onnx.ValueInfoProto:
    """A graph input typed like ``value`` with every dim left unknown (chunks differ in size)."""
    elem = helper.np_dtype_to_tensor_dtype(value.dtype)
    return helper.make_tensor_value_info(name, elem, [None] * value.ndim)


def _untyped(name: str) -> onnx.ValueInfoProto:
    """A graph output without a declared type: onnxruntime infers it."""
    info = onnx.ValueInfoProto()
    info.name = name
    return info


def sub_model(model: onnx.ModelProto, nodes: list[onnx.NodeProto], feeds: Chunk, outputs: list[str],
              extra: Iterable[onnx.TensorProto] = ()) -> onnx.ModelProto:
    """A model of ``nodes`` (copied) reading ``feeds`` (typed from the arrays), the initializers they
    need from ``model`` and the ``extra`` ones (which win over the model's), and returning ``outputs``."""
    reads = {name for node in nodes for name in node_reads(node)}
    extra = list(extra)
    mine = {t.name for t in extra}
    inits = [t for t in model.graph.initializer if t.name in reads and t.name not in feeds and t.name not in mine]
    inits += extra
    inputs = [_input_info(name, value) for name, value in feeds.items() if name in reads]
    graph = helper.make_graph(nodes, model.graph.name or "segment", inputs, [_untyped(o) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


class Walker:
    """Runs ``model`` forward over ``chunks`` (one feed dict per chunk) a segment at a time; each chunk
    moves on its own (``advance_chunk``), through segments whose sessions are built once and shared."""

    def __init__(self, model: onnx.ModelProto, chunks: list[Chunk], threads: int):
        self.model, self.threads = model, threads
        self.nodes = list(model.graph.node)
        self.live: list[Chunk] = [dict(c) for c in chunks]
        self.at = [0] * len(chunks)
        self.nodes_run = 0  # nodes put into segments so far (each runs once per chunk): the walk's cost
        self._sessions: dict[tuple[int, int, tuple[str, ...]], tuple[Any, list[str]]] = {}
        end = len(self.nodes)
        self.last_use: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            for name in node_reads(node):
                self.last_use[name] = index
        for out in model.graph.output:
            self.last_use[out.name] = end

    @property
    def pos(self) -> int:
        """The node every chunk has reached (the slowest chunk's position)."""
        return min(self.at)

    def position_of(self, node_name: str) -> int:
        """Index of the node called ``node_name`` in the walked order."""
        for index, node in enumerate(self.nodes):
            if node.name == node_name:
                return index
        raise RewriteError(f"{node_name}: no such node in the graph")

    def producer(self, tensor: str) -> int:
        """Index of the node producing ``tensor`` (-1 for a graph input)."""
        for index, node in enumerate(self.nodes):
            if tensor in node.output:
                return index
        return -1

    def _segment(self, start: int, stop: int, extras: tuple[str, ...], like: Chunk) -> tuple[Any, list[str]]:
        """The session running nodes ``[start, stop)`` and the names it returns (built once)."""
        key = (start, stop, extras)
        if key not in self._sessions:
            nodes = self.nodes[start:stop]
            outputs = list(dict.fromkeys(o for node in nodes for o in node.output
                                         if o and (self.last_use.get(o, -1) >= stop or o in extras)))
            self._sessions = {k: v for k, v in self._sessions.items() if k[0] >= self.pos}
            self._sessions[key] = (session(sub_model(self.model, nodes, like, outputs), self.threads, False), outputs)
            self.nodes_run += len(nodes)
        return self._sessions[key]

    def advance_chunk(self, index: int, stop: int, extras: Iterable[str] = ()) -> Chunk:
        """Run chunk ``index`` through nodes ``[at, stop)``; returns the ``extras`` it has (produced there or
        live) and keeps as live only what nodes from ``stop`` on, or the graph outputs, read."""
        start, extras = self.at[index], tuple(extras)
        if stop < start:
            raise RewriteError(f"cannot walk back from node {start} to node {stop}")
        values = dict(self.live[index])
        if stop > start:
            runner, outputs = self._segment(start, stop, extras, values)
            feeds = {i.name: values[i.name] for i in runner.get_inputs()}
            values.update(zip(outputs, runner.run(outputs, feeds)))
        self.live[index] = {n: v for n, v in values.items() if self.last_use.get(n, -1) >= stop}
        self.at[index] = stop
        return {name: values[name] for name in extras if name in values}

    def advance(self, stop: int, extras: Iterable[str] = ()) -> list[Chunk]:
        """``advance_chunk`` for every chunk, in order."""
        extras = tuple(extras)
        return [self.advance_chunk(i, stop, extras) for i in range(len(self.live))]

    def run_nodes(self, nodes: list[onnx.NodeProto], outputs: list[str], extra: Iterable[onnx.TensorProto] = ()
                  ) -> Runner:
        """A runner of the stand-alone ``nodes`` (reading the ``extra`` initializers too) on a chunk's live
        values: ``runner(index)`` -> ``outputs``; the walk does not move."""
        runner = session(sub_model(self.model, nodes, self.live[0], outputs, extra), self.threads, False)

        def run(index: int) -> list[np.ndarray]:
            chunk = self.live[index]
            return runner.run(outputs, {i.name: chunk[i.name] for i in runner.get_inputs()})

        return run


__all__ = ["Walker", "node_reads", "sub_model"]
