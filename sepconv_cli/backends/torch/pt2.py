"""Rewrite a ``torch.export`` program (``.pt2`` source): planned convs -> depthwise + pointwise calls.

Route, and why: ``ExportedProgram.module()`` gives a plain ``GraphModule`` whose parameters sit at their
original qualified names (``features.0.weight``) and are read by ``get_attr`` nodes. Each planned conv
call (any of ``aten.convNd`` / ``aten.conv_transposeNd`` / ``aten.convolution``) is replaced in that graph
by the same op with the depthwise weight and ``groups=Cin`` (so stride, padding, output padding, dilation
and any explicit ``aten.pad`` before it are kept as exported) followed by a 1x1 ``aten.convolution``
with ``groups=g``. A folded BatchNorm call is bypassed and erased. The replaced parameters and buffers
are deleted from the module, then the module is exported again with the source program's example
inputs, and dynamic dims where the source had symbols. Rewriting ``ExportedProgram.graph`` in place
would need hand-edited graph signatures (input specs, lifted-parameter placeholders), which are
internal and change between torch releases; ``unflatten`` + module swap needs programs exported with
``preserve_module_call_signature``. Re-exporting a ``GraphModule`` is the public, stable path.
"""

from __future__ import annotations

import operator
from dataclasses import replace
from typing import Any

import numpy as np

from sepconv_cli.backends.base import Converted, ConvertOptions
from sepconv_cli.backends.torch.export import program_examples
from sepconv_cli.backends.torch.factors import LayerJob, LayerResult, realise, realised_plan
from sepconv_cli.backends.torch.runtime import BatchNormTensors, bn_params, float64_of, quiet
from sepconv_cli.core.plans import Plan
from sepconv_cli.core.records import ConvSpec
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
from sepconv_cli.errors import RewriteError


def _conv_ops() -> dict[Any, bool | None]:
    """aten conv overloads -> transposed? (None: read the ``transposed`` argument)."""
    import torch

    aten = torch.ops.aten
    ops: dict[Any, bool | None] = {aten.convolution.default: None}
    for n in (1, 2, 3):
        for packet, transposed in ((getattr(aten, f"conv{n}d"), False), (getattr(aten, f"conv_transpose{n}d"), True)):
            for overload in packet.overloads():
                ops[getattr(packet, overload)] = transposed
    return ops


def _bn_ops() -> set[Any]:
    import torch

    aten = torch.ops.aten
    return {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}


def _kwargs(node: Any) -> dict[str, Any]:
    """All arguments of an aten call by schema name, defaults filled in."""
    from torch.fx.operator_schemas import normalize_function

    pair = normalize_function(node.target, tuple(node.args), dict(node.kwargs), normalize_to_only_use_kwargs=True)
    if pair is None:
        raise RewriteError(f"cannot read the arguments of {node.target} in the exported graph")
    return dict(pair.kwargs)


def _attr_target(value: Any, suffix: str) -> str | None:
    """The qualified module name owning a ``get_attr`` argument named ``<module>.<suffix>``."""
    if getattr(value, "op", None) == "get_attr" and value.target.endswith("." + suffix):
        return value.target[: -len(suffix) - 1]
    return None


def conv_nodes(gm: Any) -> dict[str, list[Any]]:
    """Conv calls with a constant weight, keyed by the qualified name of the module owning the weight."""
    ops = _conv_ops()
    found: dict[str, list[Any]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in ops:
            owner = _attr_target(_kwargs(node).get("weight"), "weight")
            if owner is not None:
                found.setdefault(owner, []).append(node)
    return found


def _fetch(gm: Any, target: str) -> Any:
    module_name, _, leaf = target.rpartition(".")
    return getattr(gm.get_submodule(module_name), leaf)


def _transposed(node: Any, kwargs: dict[str, Any]) -> bool:
    flag = _conv_ops()[node.target]
    return bool(kwargs["transposed"]) if flag is None else flag


def _spec(weight: Any, kwargs: dict[str, Any], transposed: bool) -> ConvSpec:
    shape, groups = tuple(weight.shape), int(kwargs["groups"])
    cin, cout = (shape[0], shape[1] * groups) if transposed else (shape[1] * groups, shape[0])
    dims = len(shape) - 2
    return ConvSpec(in_channels=cin, out_channels=cout, kernel=shape[2:], stride=(1,) * dims,
                    dilation=(1,) * dims, groups=groups, transposed=transposed,
                    has_bias=kwargs.get("bias") is not None)


def _bn_node(conv: Any, bn_name: str) -> Any:
    """The BatchNorm call that solely consumes ``conv`` and belongs to module ``bn_name``."""
    users = list(conv.users)
    if len(users) == 1 and users[0].target in _bn_ops():
        if _attr_target(_kwargs(users[0]).get("running_mean"), "running_mean") == bn_name:
            return users[0]
    raise RewriteError(f"BatchNorm {bn_name!r} does not directly and solely follow its conv in the exported graph")


def _bn_params(gm: Any, bn: Any, name: str) -> BatchNormParams:
    kw = _kwargs(bn)

    def tensor(key):
        return None if kw.get(key) is None else _fetch(gm, kw[key].target)

    tensors = BatchNormTensors(tensor("running_mean"), tensor("running_var"), tensor("weight"), tensor("bias"),
                               float(kw["eps"]))
    return bn_params(name, tensors)


def _bypass_bn(bn: Any, replacement: Any) -> None:
    """Route the BN's consumers to ``replacement`` and erase the BN call (and its getitem nodes)."""
    for user in list(bn.users):
        if user.target is operator.getitem:
            if user.args[1] == 0:
                user.replace_all_uses_with(replacement)
            if not user.users:
                bn.graph.erase_node(user)
    bn.replace_all_uses_with(replacement)
    bn.graph.erase_node(bn)


def _register(gm: Any, name: str, result: LayerResult, like: Any, depthwise_bias: bool) -> int:
    """Attach the new factors under ``<name>.depthwise`` / ``<name>.pointwise`` (model dtype and device);
    returns their parameter count (elements)."""
    import torch
    from torch import nn

    def param(array):
        return nn.Parameter(torch.as_tensor(array).to(dtype=like.dtype, device=like.device))

    depthwise, pointwise = nn.Module(), nn.Module()
    depthwise.weight = param(result.factors.depthwise)
    if depthwise_bias:
        depthwise.bias = param(np.zeros(_depthwise_channels(result), np.float64))
    pointwise.weight = param(result.factors.pointwise)
    if result.bias is not None:
        pointwise.bias = param(result.bias)
    owner = gm.get_submodule(name)
    owner.add_module("depthwise", depthwise)
    owner.add_module("pointwise", pointwise)
    return sum(p.numel() for m in (depthwise, pointwise) for p in m.parameters())


def _depthwise_channels(result: LayerResult) -> int:
    """Cin*T, the depthwise output channels: both factor layouts hold Cin*T kernels of K elements."""
    return result.factors.depthwise.size // int(np.prod(result.factors.depthwise.shape[2:]))


def _replace_call(gm: Any, node: Any, name: str, result: LayerResult, depthwise_bias: bool) -> Any:
    """Insert depthwise + pointwise calls in place of ``node``; returns the pointwise node."""
    import torch

    kwargs = _kwargs(node)
    dims = result.factors.pointwise.ndim - 2
    cin = _depthwise_channels(result) // result.factors.rank
    graph = gm.graph
    with graph.inserting_before(node):
        dw_bias = graph.get_attr(f"{name}.depthwise.bias") if depthwise_bias else None
        dw = graph.call_function(node.target, kwargs=dict(kwargs, weight=graph.get_attr(f"{name}.depthwise.weight"),
                                                          bias=dw_bias, groups=cin))
        pw_bias = graph.get_attr(f"{name}.pointwise.bias") if result.bias is not None else None
        pw = graph.call_function(torch.ops.aten.convolution.default, args=(
            dw, graph.get_attr(f"{name}.pointwise.weight"), pw_bias, [1] * dims, [0] * dims, [1] * dims, False,
            [0] * dims, int(kwargs["groups"])))
    node.replace_all_uses_with(pw)
    graph.erase_node(node)
    return pw


def _delete_unused(gm: Any, prefixes: list[str]) -> None:
    """Delete parameters/buffers under ``prefixes`` that no ``get_attr`` reads any more."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    state = [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]
    for fqn in state:
        if fqn not in used and any(fqn.startswith(p + ".") for p in prefixes):
            module_name, _, leaf = fqn.rpartition(".")
            delattr(gm.get_submodule(module_name), leaf)


def _layer_job(gm: Any, node: Any, planned: Any, options: ConvertOptions, seed: int) -> tuple[LayerJob, Any, Any]:
    """The job for the conv call ``node`` of ``planned``, its weight tensor, and the BN call to fold."""
    kwargs = _kwargs(node)
    weight = _fetch(gm, kwargs["weight"].target)
    bias = None if kwargs.get("bias") is None else float64_of(_fetch(gm, kwargs["bias"].target), planned.name)
    bn_name = planned.bn_folded if options.fold_bn else None
    bn = _bn_node(node, bn_name) if bn_name else None
    weights = ConvWeights(weight=float64_of(weight, planned.name), bias=bias,
                          bn=_bn_params(gm, bn, bn_name) if bn is not None else None)
    spec = _spec(weight, kwargs, _transposed(node, kwargs))
    return LayerJob(replace(planned, bn_folded=bn_name), spec, weights, seed), weight, bn


def _reexport(gm: Any, program: Any) -> Any:
    """Export the rewritten GraphModule with the source program's example inputs and dynamic dims."""
    import torch

    _, args, dynamic = program_examples(program)
    try:
        with quiet():
            return torch.export.export(gm, args, dynamic_shapes=dynamic)
    except Exception as exc:  # noqa: BLE001 - any export failure is a failed postcondition of the rewrite
        raise RewriteError(f"re-exporting the rewritten program failed: {str(exc).splitlines()[0]}") from exc


def rewrite_program(program: Any, plan: Plan, options: ConvertOptions) -> Converted:
    """Rewrite the ExportedProgram ``program`` following ``plan`` (``program`` is not mutated)."""
    with quiet():
        gm = program.module()
    nodes = conv_nodes(gm)
    layers, folded, prefixes = [], [], []
    for index, planned in enumerate(plan.layers):
        if planned.name not in nodes:
            raise RewriteError(f"layer {planned.name!r} is not a conv with a constant weight in the exported graph")
        job, weight, bn = _layer_job(gm, nodes[planned.name][0], planned, options, options.seed + index)
        result = realise(job, options.init)
        params_after = _register(gm, planned.name, result, weight, options.depthwise_bias)
        for node in nodes[planned.name]:
            out = _replace_call(gm, node, planned.name, result, options.depthwise_bias)
        prefixes.append(planned.name)
        if bn is not None:
            _bypass_bn(bn, out)
            folded.append(job.planned.bn_folded)
            prefixes.append(job.planned.bn_folded)
        layers.append(replace(result.planned, params_after=params_after))
    gm.graph.eliminate_dead_code()
    _delete_unused(gm, prefixes)
    gm.recompile()
    return Converted(native=_reexport(gm, program), plan=realised_plan(plan, layers, options), folded_bn=tuple(folded))


__all__ = ["conv_nodes", "rewrite_program"]
