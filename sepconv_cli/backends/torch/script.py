"""Module scopes for a TorchScript run, where Python module hooks never fire.

An op belongs to the module owning its first parameter argument. A tied parameter has several owners:
the op goes to the owner whose own TorchScript code calls an op that dispatches to it
(``SCRIPT_OPS``: ``head``'s ``aten::linear`` runs as ``addmm``, ``emb``'s ``aten::embedding`` as
``embedding``). A row's shapes are activation shapes (elements per dim): the op's non-parameter tensor
inputs and its output, looking through the reshapes ``linear``/``matmul`` wrap around ``mm`` over a
sequence (3x7x32 -> 21x32 -> 21x64 -> 3x7x64). Parameter-free modules (ReLU, pooling, Flatten) touch
no parameter, so a TorchScript run cannot tell which module ran them: they get no row.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from sepconv_cli.backends.torch.ties import shared_names

# dispatched ATen op -> TorchScript ops (in a module's own code) that run it
SCRIPT_OPS: dict[str, frozenset[str]] = {
    "addmm": frozenset({"aten::linear", "aten::addmm"}),
    "mm": frozenset({"aten::linear", "aten::mm", "aten::matmul"}),
    "bmm": frozenset({"aten::linear", "aten::bmm", "aten::matmul"}),
    "embedding": frozenset({"aten::embedding"}),
}
_RESHAPES = frozenset({"view", "_unsafe_view", "reshape"})


def _script_kinds(module: Any) -> frozenset[str]:
    graph = getattr(getattr(module, "forward", None), "graph", None)
    return frozenset(node.kind() for node in graph.nodes()) if graph is not None else frozenset()


class ScriptScopes:
    """Scope of each op of a TorchScript run, and the activation tensors around each module's ops."""

    def __init__(self, model: torch.nn.Module):
        self.modules = dict(model.named_modules())
        self.owners: dict[str, list[str]] = {}  # canonical param name -> every module owning it
        for name, first in shared_names(model).items():
            self.owners.setdefault(first, []).append(name.rpartition(".")[0])
        self.kinds: dict[str, frozenset[str]] = {}
        self.folded: WeakIdKeyDictionary = WeakIdKeyDictionary()  # 2-D view -> the N-D tensor it folds
        self.outputs: WeakIdKeyDictionary = WeakIdKeyDictionary()  # a module's last output -> module

    def scope(self, op: str, params: tuple[str, ...]) -> str:
        """The module an op with these parameter arguments belongs to ('' for none)."""
        if not params:
            return ""
        owners = self.owners.get(params[0]) or [params[0].rpartition(".")[0]]
        wanted = SCRIPT_OPS.get(op, frozenset({f"aten::{op}"}))
        return next((o for o in owners if wanted & self._kinds(o)), owners[0])

    def _kinds(self, name: str) -> frozenset[str]:
        if name not in self.kinds:
            self.kinds[name] = _script_kinds(self.modules.get(name))
        return self.kinds[name]

    def source(self, tensor: torch.Tensor) -> torch.Tensor:
        """The activation a folded 2-D view was made from (the tensor itself otherwise)."""
        return self.folded.get(tensor, tensor)

    def reshaped(self, op: str, tensor: Any, out: Any, calls: dict) -> None:
        """Follow a reshape: folding leading dims into one, or unfolding a module's 2-D output again."""
        if op not in _RESHAPES or not isinstance(tensor, torch.Tensor) or not isinstance(out, torch.Tensor):
            return
        if out.dim() == 2 < tensor.dim() and out.shape[-1] == tensor.shape[-1]:
            self.folded[out] = self.source(tensor)
        owner = self.outputs.get(tensor)
        call = calls.get(owner) if owner is not None else None
        if call is not None and tensor.dim() == 2 < out.dim() and call.input_shapes and \
                tuple(out.shape[:-1]) == tuple(call.input_shapes[0][:-1]):
            call.output_shapes = (tuple(int(d) for d in out.shape),)
            self.outputs[out] = owner

    def type_name(self, name: str) -> str:
        module = self.modules.get(name)
        return getattr(module, "original_name", type(module).__name__)

    def last_output(self, scope: str, out: Any) -> Any | None:
        """Remember ``out`` as ``scope``'s latest output (the module's output once its ops end)."""
        if isinstance(out, torch.Tensor):
            self.outputs[out] = scope
        return out
