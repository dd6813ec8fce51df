"""Tensors shared between names: a reused module (``b = a``) or a tied weight (``head.weight = emb.weight``)
is one tensor, so it is counted once, under the first name that reaches it.

``shared_names`` reads a live module by tensor identity; ``tied_names`` reads a state dict (an exported
program's, whose tied entries are distinct tensor objects over one storage) by storage.
"""

from __future__ import annotations

import torch


def _storage_key(tensor: torch.Tensor) -> tuple:
    if tensor.is_meta:  # no storage to compare
        return (id(tensor),)
    return (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tensor.stride(), tensor.dtype)


def tied_names(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """fqn -> the first fqn viewing the same storage (a reused module or tied weight is one tensor)."""
    first: dict[tuple, str] = {}
    return {fqn: first.setdefault(_storage_key(t), fqn) for fqn, t in state.items()}


def shared_names(model: torch.nn.Module) -> dict[str, str]:
    """Every parameter name (aliases included) -> the first name of the same parameter."""
    first: dict[int, str] = {}
    return {name: first.setdefault(id(p), name) for name, p in model.named_parameters(remove_duplicate=False)}
