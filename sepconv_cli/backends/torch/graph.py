"""``.pt2`` counting engine: cost a ``torch.export`` graph from its own shape metadata, running no weights.

Each ``call_function`` node carries ``meta['val']`` (a fake tensor: shape and dtype only) and
``meta['nn_module_stack']`` (the original module path), so rows get the same qualified names as the
``nn.Module`` that was exported. New ``--input-shape`` values are propagated through the graph with fake
tensors (``FakeTensorProp``) when the program was exported with dynamic dims.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from torch.fx import Node

from sepconv_cli.backends.torch import ops as torch_ops
from sepconv_cli.backends.torch.rows import (
    ModuleCall,
    OpEvent,
    Trace,
    conv_spec_from_op,
)
from sepconv_cli.backends.torch.runtime import quiet_fake_logs
from sepconv_cli.backends.torch.ties import tied_names

_BRACKET = re.compile(r"\[['\"]?([^\]'\"]+)['\"]?\]")


def module_path(raw: str) -> str:
    """Normalise a module-stack path (``L['self'].layer1[0]`` or ``layer1.0``) to ``layer1.0``."""
    path = raw.replace("L['self']", "").replace("._modules", "")
    path = _BRACKET.sub(r".\1", path)
    return path.strip(".")


def _scope(node: Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    raw, kind = list(stack.values())[-1]
    type_name = kind.__name__ if isinstance(kind, type) else str(kind).rpartition(".")[2]
    return module_path(raw), type_name


def _concrete(value: Any) -> Any:
    """Replace fx Nodes by their fake values and SymInts by their example hints."""
    if isinstance(value, Node):
        return value.meta.get("val")
    if isinstance(value, (list, tuple)):
        return type(value)(_concrete(v) for v in value)
    if isinstance(value, torch.SymInt):
        hint = value.node.hint
        return int(hint) if hint is not None else value
    return value


class _Shaped:
    """A stand-in with an int ``shape`` (fake tensors with symbolic dims read back at their hints)."""

    def __init__(self, shape):
        self.shape = tuple(int(_concrete(d)) for d in shape)


def _hinted(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _Shaped(value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(_hinted(v) for v in value)
    return value


def _shapes(values: Any) -> tuple:
    flat = values if isinstance(values, (list, tuple)) else (values,)
    return tuple(tuple(int(_concrete(d)) for d in v.shape) for v in flat if isinstance(v, torch.Tensor))


def _state_names(ep) -> dict[str, str]:
    sig = ep.graph_signature
    names = dict(sig.inputs_to_parameters)
    names.update(sig.inputs_to_buffers)
    names.update(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    return names


def _param_inputs(ep, tied: dict[str, str]) -> dict[str, str]:
    """Parameter placeholder -> canonical parameter fqn (``tied``: tied parameters share one name)."""
    return {node: tied.get(fqn, fqn) for node, fqn in ep.graph_signature.inputs_to_parameters.items()}


def _bn_after(node: Node) -> Node | None:
    """The eval-mode BatchNorm node that is the sole consumer of conv ``node``, if any."""
    users = list(node.users)
    if len(users) != 1 or users[0].op != "call_function":
        return None
    bn = users[0]
    name = torch_ops.op_name(bn.target)
    if name == "_native_batch_norm_legit_no_training" or (name == "batch_norm" and bn.args[5] is False):
        return bn if bn.args[0] is node else None
    return None


def propagate_shapes(ep, shapes: list[tuple[int, ...]]) -> torch.fx.GraphModule:
    """A copy of the graph with ``meta['val']`` recomputed for user inputs of ``shapes`` (fake tensors)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    gm = copy.deepcopy(ep.graph_module)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    names = _state_names(ep)
    state = {**ep.state_dict, **getattr(ep, "constants", {})}
    user = iter(shapes)
    args = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        if node.name in names:
            args.append(mode.from_tensor(state[names[node.name]]))
        else:
            example = node.meta["val"]
            with mode:
                args.append(torch.empty(next(user), dtype=example.dtype, device=example.device))
    with quiet_fake_logs():
        FakeTensorProp(gm, mode).propagate_dont_convert_inputs(*args)
    return gm


def trace_graph(ep, gm: torch.fx.GraphModule | None = None) -> tuple[Trace, dict[str, tuple]]:
    """Trace of the exported program; also conv row -> (weight fqn, bias fqn, bn node args) for handles."""
    gm = gm or ep.graph_module
    names = _state_names(ep)
    trace = Trace()
    tied = tied_names(ep.state_dict)
    param_inputs = _param_inputs(ep, tied)
    params = set(param_inputs.values())
    for fqn, tensor in ep.state_dict.items():
        if tied[fqn] == fqn:
            (trace.params if fqn in params else trace.buffers)[fqn] = tensor.numel()
    nodes = [n for n in gm.graph.nodes if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)]
    leaves = _leaf_paths(nodes)
    conv_nodes: dict[int, Node] = {}
    for node in nodes:
        scope, type_name = _scope(node)
        if scope in leaves and scope not in trace.modules:
            trace.modules[scope] = ModuleCall(scope, type_name, *_boundary(nodes, scope, names))
        event = _event(node, scope, param_inputs)
        if event is not None:
            trace.events.append(event)
            if event.conv is not None:
                conv_nodes[len(trace.events) - 1] = node
    return trace, _conv_sources(trace, conv_nodes, names)


def _event(node: Node, scope: str, params: dict[str, str]) -> OpEvent | None:
    args, kwargs = _concrete(node.args), _concrete(dict(node.kwargs))
    out = node.meta.get("val")
    try:
        name, macs, known = torch_ops.count_op(node.target, _hinted(args), _hinted(kwargs), _hinted(out))
    except Exception:  # noqa: BLE001 - symbolic dims without hints: the row says shape unknown
        name, macs, known = torch_ops.op_name(node.target), None, True
    if known and macs == 0 and name not in torch_ops.CONV_OPS:
        return None
    used = tuple(params[a.name] for a in node.all_input_nodes if a.name in params)
    conv = conv_spec_from_op(name, _hinted(args), kwargs) if name in torch_ops.CONV_OPS else None
    ins = _shapes([a for a in args if isinstance(a, torch.Tensor)])
    return OpEvent(torch_ops.canonical(name), scope, macs, known, ins, _shapes(out), conv,
                   tuple(dict.fromkeys(used)))


def _leaf_paths(nodes: list[Node]) -> set[str]:
    paths = {_scope(n)[0] for n in nodes} - {""}
    return {p for p in paths if not any(q.startswith(p + ".") for q in paths)}


def _boundary(nodes: list[Node], scope: str, names: dict[str, str]) -> tuple[tuple, tuple]:
    """Shapes entering (non-weight tensors from outside) and leaving a module's set of nodes."""
    inside = [n for n in nodes if _scope(n)[0] == scope]
    members = set(inside)
    ins, outs = [], []
    for n in inside:
        for a in n.all_input_nodes:
            if a not in members and a.name not in names and a not in ins:
                ins.append(a)
        if any(u not in members for u in n.users):
            outs.append(n)
    return _shapes([a.meta.get("val") for a in ins]), _shapes([o.meta.get("val") for o in outs])


def _conv_sources(trace: Trace, conv_nodes: dict[int, Node], names: dict[str, str]) -> dict[int, tuple]:
    sources = {}
    for index, node in conv_nodes.items():
        fqn = lambda a: names.get(a.name) if isinstance(a, Node) else None  # noqa: E731
        bias = node.args[2] if len(node.args) > 2 else None
        bn = _bn_after(node)
        bn_info = None
        if bn is not None:
            trace.events[index].bn_follows = _scope(bn)[0] or bn.name
            eps = bn.args[7] if torch_ops.op_name(bn.target) == "batch_norm" else bn.args[6]
            bn_info = (trace.events[index].bn_follows, tuple(fqn(a) for a in bn.args[1:5]), float(eps))
        trace.events[index].weights = (fqn(node.args[1]), fqn(bias))
        sources[index] = (fqn(node.args[1]), fqn(bias), bn_info)
    return sources
