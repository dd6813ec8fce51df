"""Run a ``torch.fx`` graph forward in pieces, keeping the values alive at the cut for every sample chunk.

The PyTorch twin of ``backends/onnx/segments.py``: ``FxWalker.advance(q)`` runs the graph's nodes from its
position up to node ``q`` for every chunk, then keeps only the values that nodes from ``q`` on (or the
graph's output) read. ``get_attr`` values (parameters, buffers) are never kept: they are fetched when a
node reads them, so factors installed before a segment runs are the ones it uses. Works on graphs from
``torch.fx.symbolic_trace`` (``call_module`` nodes) and on ``ExportedProgram.module()`` (aten calls).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import fx

from sepconv_cli.errors import RewriteError

Env = dict[fx.Node, Any]


class FxWalker:
    """Walks ``gm`` over ``chunks`` (positional input tensors per chunk) a segment at a time; each chunk
    moves on its own (``advance_chunk``)."""

    def __init__(self, gm: fx.GraphModule, chunks: list[list[torch.Tensor]]):
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.last_use = {node: max((self.index[u] for u in node.users), default=-1) for node in self.nodes}
        output = next((n for n in self.nodes if n.op == "output"), None)
        for node in (output.all_input_nodes if output is not None else []):
            self.last_use[node] = len(self.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.live: list[Env] = [dict(zip(placeholders, args)) for args in chunks]
        self.at = [0] * len(chunks)
        self.nodes_run = 0  # nodes walked by the first chunk (each runs once per chunk): the walk's cost
        self.interpreter = fx.Interpreter(gm, garbage_collect_values=False)

    @property
    def pos(self) -> int:
        """The node every chunk has reached (the slowest chunk's position)."""
        return min(self.at)

    def _run(self, env: Env, nodes: list[fx.Node]) -> None:
        interp = self.interpreter
        interp.env = env
        for node in nodes:
            if node.op in ("placeholder", "get_attr", "output"):
                continue
            for arg in node.all_input_nodes:
                if arg.op == "get_attr":
                    env[arg] = interp.fetch_attr(arg.target)
            env[node] = interp.run_node(node)
        interp.env = {}

    def advance_chunk(self, index: int, stop: int, extras: Iterable[fx.Node] = ()) -> Env:
        """Run chunk ``index`` through nodes ``[at, stop)``; returns the ``extras`` values it has (produced
        there or live) and keeps as live only what later nodes or the output read."""
        start = self.at[index]
        if stop < start:
            raise RewriteError(f"cannot walk back from node {start} to node {stop}")
        env = dict(self.live[index])
        with torch.no_grad():
            self._run(env, self.nodes[start:stop])
        if index == 0:
            self.nodes_run += stop - start
        self.live[index] = {n: v for n, v in env.items() if self.last_use[n] >= stop and n.op != "get_attr"}
        self.at[index] = stop
        return {n: env[n] for n in extras if n in env}

    def advance(self, stop: int, extras: Iterable[fx.Node] = ()) -> list[Env]:
        """``advance_chunk`` for every chunk, in order."""
        extras = list(extras)
        return [self.advance_chunk(i, stop, extras) for i in range(len(self.live))]


__all__ = ["FxWalker"]
