"""Where calibration finds, reads and replaces a converted layer's factors in a PyTorch model.

Two layouts, one interface: ``ModuleLayout`` for ``nn.Module`` sources (the torch rewriter puts a module
with ``.depthwise`` and ``.pointwise`` submodules at the conv's qualified name, a folded BatchNorm becomes
an ``nn.Identity``; in a ``torch.fx.symbolic_trace`` graph they are ``call_module`` nodes) and
``ProgramLayout`` for ``.pt2`` programs (``ExportedProgram.module()``: aten conv calls reading
``<name>.depthwise.weight`` / ``<name>.pointwise.weight`` / ``<name>.pointwise.bias`` through ``get_attr``
nodes, the naming of ``backends/torch/pt2.py``). Factors cross as numpy arrays, in the model dtype inside.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional

from sepconv_cli.backends.torch.modules import conv_kind, get_module
from sepconv_cli.backends.torch.pt2 import _bn_node, _bn_params, _kwargs, _transposed, conv_nodes
from sepconv_cli.backends.torch.runtime import batchnorm_params, to_numpy
from sepconv_cli.core.decompose import fold_batchnorm
from sepconv_cli.core.plans import Plan
from sepconv_cli.core.weights import ConvWeights
from sepconv_cli.errors import RewriteError, UsageError

_TRANSPOSED = {1: functional.conv_transpose1d, 2: functional.conv_transpose2d, 3: functional.conv_transpose3d}
_RELU_CALLS = {torch.relu, torch.relu_, functional.relu, torch.ops.aten.relu.default, torch.ops.aten.relu_.default}


def _param(array: np.ndarray, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(array)).to(dtype=like.dtype, device=like.device),
                        requires_grad=like.requires_grad)


def _bn_of(plan: Plan, name: str) -> str | None:
    return next(p.bn_folded for p in plan.layers if p.name == name)


def _is_relu(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_function":
        return node.target in _RELU_CALLS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return node.op == "call_module" and isinstance(root.get_submodule(node.target), nn.ReLU)


def relu_only_users(node: fx.Node, root: nn.Module) -> bool:
    """True when ``node``'s value is read, and read only by ReLUs."""
    return bool(node.users) and all(_is_relu(u, root) for u in node.users)


def _first(gm: fx.GraphModule, op: str, target: str, what: str) -> fx.Node:
    node = next((n for n in gm.graph.nodes if n.op == op and n.target == target), None)
    if node is None:
        raise RewriteError(f"{what} {target!r} is not called in the traced graph")
    return node


class ModuleLayout:
    """Factors of converted ``nn.Module`` layers (``model`` is the calibrated copy, ``original`` the source)."""

    def __init__(self, model: nn.Module, original: nn.Module, plan: Plan):
        self.model, self.original, self.plan = model, original, plan

    def separable(self, name: str) -> nn.Module:
        sep = get_module(self.model, name, "converted layer")
        if not (hasattr(sep, "depthwise") and hasattr(sep, "pointwise")):
            raise UsageError(f"converted layer {name!r} has no depthwise/pointwise submodules")
        return sep

    def target_module(self, name: str) -> nn.Module:
        return get_module(self.original, _bn_of(self.plan, name) or name, "layer")

    def depthwise_node(self, gm: fx.GraphModule, name: str) -> fx.Node:
        return _first(gm, "call_module", f"{name}.depthwise", "depthwise conv")

    def target_node(self, gm: fx.GraphModule, name: str) -> fx.Node:
        return _first(gm, "call_module", _bn_of(self.plan, name) or name, "layer")

    def apply_depthwise(self, name: str, x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
        """The layer's depthwise conv (its stride, padding and padding mode; no bias) with ``kernel``."""
        dw = self.separable(name).depthwise
        k = torch.from_numpy(np.ascontiguousarray(kernel)).to(dtype=dw.weight.dtype, device=dw.weight.device)
        if conv_kind(dw)[1].transposed:
            return _TRANSPOSED[k.ndim - 2](x, k, None, dw.stride, dw.padding, dw.output_padding, dw.groups,
                                           dw.dilation)
        return dw._conv_forward(x, k, None)

    def folded_weight(self, name: str) -> tuple[np.ndarray, int, bool]:
        """(BN-folded float64 kernel, groups, transposed) of the original conv ``name``."""
        conv = get_module(self.original, name, "layer")
        bn_name = _bn_of(self.plan, name)
        bn = batchnorm_params(get_module(self.original, bn_name), bn_name) if bn_name else None
        bias = None if conv.bias is None else to_numpy(conv.bias)
        transposed = conv_kind(conv)[1].transposed
        w64, _ = fold_batchnorm(ConvWeights(to_numpy(conv.weight), bias, bn), conv.groups, transposed)
        return w64, conv.groups, transposed

    def factors(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        sep = self.separable(name)
        bias = sep.pointwise.bias
        return to_numpy(sep.depthwise.weight), to_numpy(sep.pointwise.weight), None if bias is None else to_numpy(bias)

    def install(self, name: str, depthwise: np.ndarray, pointwise: np.ndarray, bias: np.ndarray | None) -> None:
        sep = self.separable(name)
        dw, pw = sep.depthwise, sep.pointwise
        dw.weight = _param(depthwise, dw.weight)
        transposed = conv_kind(dw)[1].transposed
        dw.out_channels = depthwise.shape[0] * (depthwise.shape[1] if transposed else 1)
        if dw.bias is not None and dw.bias.shape[0] != dw.out_channels:
            dw.bias = _param(np.zeros(dw.out_channels), dw.bias)  # zero-initialised, as rewritten
        pw.weight = _param(pointwise, pw.weight)
        pw.in_channels = pointwise.shape[1] * pw.groups
        if bias is not None:
            pw.bias = _param(bias, pw.weight)


def _fetch(gm: nn.Module, target: str) -> Any:
    owner, _, leaf = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, leaf, None)


class ProgramLayout:
    """Factors of converted layers in ``gm`` (``ExportedProgram.module()`` of the converted program)."""

    def __init__(self, gm: fx.GraphModule, original: fx.GraphModule, plan: Plan):
        self.gm, self.original, self.plan = gm, original, plan

    def folded_weight(self, name: str) -> tuple[np.ndarray, int, bool]:
        """(BN-folded float64 kernel, groups, transposed) of the original conv call of ``name``."""
        conv = self.conv_reading(self.original, f"{name}.weight")
        kwargs = _kwargs(conv)
        weight = to_numpy(_fetch(self.original, kwargs["weight"].target))
        bias = None if kwargs.get("bias") is None else to_numpy(_fetch(self.original, kwargs["bias"].target))
        bn_name = _bn_of(self.plan, name)
        bn = _bn_params(self.original, _bn_node(conv, bn_name), bn_name) if bn_name else None
        groups, transposed = int(kwargs["groups"]), _transposed(conv, kwargs)
        w64, _ = fold_batchnorm(ConvWeights(weight, bias, bn), groups, transposed)
        return w64, groups, transposed

    def depthwise_node(self, gm: fx.GraphModule, name: str) -> fx.Node:
        return self.conv_reading(gm, f"{name}.depthwise.weight")

    def conv_reading(self, gm: fx.GraphModule, weight: str) -> fx.Node:
        """The first conv call of ``gm`` whose weight is the ``get_attr`` of ``weight``."""
        owner = weight[: -len(".weight")]
        found = conv_nodes(gm).get(owner)
        if not found:
            raise RewriteError(f"no conv call reads {weight!r} in the exported graph (expected the rewriter's naming)")
        return found[0]

    def target_node(self, gm: fx.GraphModule, name: str) -> fx.Node:
        conv = self.conv_reading(gm, f"{name}.weight")
        bn_name = _bn_of(self.plan, name)
        if bn_name is None:
            return conv
        bn = _bn_node(conv, bn_name)
        first = [u for u in bn.users if u.target is operator.getitem and u.args[1] == 0]
        return first[0] if first else bn

    def apply_depthwise(self, name: str, x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
        node = self.depthwise_node(self.gm, name)
        like = _fetch(self.gm, f"{name}.depthwise.weight")
        k = torch.from_numpy(np.ascontiguousarray(kernel)).to(dtype=like.dtype, device=like.device)
        kwargs = dict(_kwargs(node), weight=k, bias=None)
        kwargs[next(iter(kwargs))] = x  # the first schema argument is the conv's input
        return node.target(**kwargs)

    def factors(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        bias = _fetch(self.gm, f"{name}.pointwise.bias")
        return (to_numpy(_fetch(self.gm, f"{name}.depthwise.weight")), to_numpy(_fetch(self.gm, f"{name}.pointwise.weight")),
                None if bias is None else to_numpy(bias))

    def _set(self, target: str, value: np.ndarray, like: torch.Tensor) -> None:
        owner, _, leaf = target.rpartition(".")
        setattr(self.gm.get_submodule(owner), leaf, _param(value, like))

    def install(self, name: str, depthwise: np.ndarray, pointwise: np.ndarray, bias: np.ndarray | None) -> None:
        like = _fetch(self.gm, f"{name}.pointwise.weight")
        self._set(f"{name}.depthwise.weight", depthwise, like)
        self._set(f"{name}.pointwise.weight", pointwise, like)
        dw_bias = _fetch(self.gm, f"{name}.depthwise.bias")
        channels = depthwise.size // int(np.prod(depthwise.shape[2:]))
        if dw_bias is not None and dw_bias.shape[0] != channels:
            self._set(f"{name}.depthwise.bias", np.zeros(channels), like)  # zero-initialised, as rewritten
        if bias is None:
            return
        had = _fetch(self.gm, f"{name}.pointwise.bias") is not None
        self._set(f"{name}.pointwise.bias", bias, like)
        if not had:
            self._wire_bias(name)

    def _wire_bias(self, name: str) -> None:
        """Make the pointwise conv call read the new ``<name>.pointwise.bias`` parameter."""
        call = self.conv_reading(self.gm, f"{name}.pointwise.weight")
        with self.gm.graph.inserting_before(call):
            getter = self.gm.graph.get_attr(f"{name}.pointwise.bias")
        if len(call.args) > 2:
            call.update_arg(2, getter)
        else:
            call.update_kwarg("bias", getter)
        self.gm.recompile()


__all__ = ["ModuleLayout", "ProgramLayout", "relu_only_users"]
