"""Eager counting engine: a ``TorchDispatchMode`` under module pre/post hooks.

Every ATen op the forward runs (on real, meta or fake tensors) is recorded with the innermost module
that called it, costed by ``torch_ops`` (MACs), and checked for dataflow: a conv output whose only
consumer is an eval-mode BatchNorm gets ``bn_follows``. Because it sees ATen ops after decomposition,
string padding, ``F.conv2d``, Linear over a sequence, ``einsum`` and attention kernels are all costed
from the shapes that actually ran. TorchScript modules do not fire Python hooks: there ``script``
attributes ops by parameter ownership (parameter-free modules get no row).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map_only
from torch.utils.weak import WeakIdKeyDictionary

from sepconv_cli.backends.torch import ops as torch_ops
from sepconv_cli.backends.torch.rows import (
    ModuleCall,
    OpEvent,
    Trace,
    conv_spec_from_op,
)
from sepconv_cli.backends.torch.runtime import quiet_fake_logs
from sepconv_cli.backends.torch.script import ScriptScopes
from sepconv_cli.core.records import ConvSpec


class Mode(Enum):
    """How a forward is run for counting: on meta stand-ins, under fake tensors, or for real."""

    META = "meta"
    FAKE = "fake"
    REAL = "real"


class ForwardError(Exception):
    """The forward failed; ``module``/``shapes`` say where (innermost module being called, its inputs)."""

    def __init__(self, module: str, type_name: str, shapes: tuple, cause: BaseException):
        super().__init__(str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)
        self.module, self.type_name, self.shapes, self.cause = module, type_name, shapes, cause


def shapes_of(value: Any) -> tuple:
    """Shapes (tuples of ints) of every tensor inside ``value`` (nested tuples/lists/dicts)."""
    return tuple(tuple(int(d) for d in t.shape) for t in tree_leaves(value) if isinstance(t, torch.Tensor))


def module_conv_spec(module: torch.nn.Module) -> ConvSpec | None:
    """ConvSpec of an ``nn.Conv*``/``nn.ConvTranspose*`` (or subclass), keeping string padding and padding_mode."""
    if not isinstance(module, torch.nn.modules.conv._ConvNd):
        return None
    padding = module.padding
    text = padding if isinstance(padding, str) else ""
    return ConvSpec(
        in_channels=module.in_channels, out_channels=module.out_channels, kernel=tuple(module.kernel_size),
        stride=tuple(module.stride), dilation=tuple(module.dilation), groups=module.groups,
        pads=() if text else tuple(padding) * 2, padding_text=text, transposed=module.transposed,
        has_bias=module.bias is not None, padding_mode=module.padding_mode,
    )


_COPIES = frozenset({"clone", "contiguous", "_to_copy", "detach", "alias", "lift_fresh_copy"})


@dataclass(frozen=True)
class _Frame:
    name: str
    type_name: str
    shapes: tuple


class _Recorder(TorchDispatchMode):
    """Records each ATen op with the current module scope; tracks conv outputs for BatchNorm dataflow."""

    def __init__(self, tracer: Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.tracer.record(func, args, kwargs, out)
        return out


class Tracer:
    """Runs a module's forward once and fills a ``Trace``."""

    def __init__(self, model: torch.nn.Module, scripted: bool = False):
        self.model, self.scripted = model, scripted
        self.trace = Trace()
        self.stack: list[_Frame] = []
        self.names = {id(m): n for n, m in model.named_modules()}
        self.param_names: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.conv_out: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.uses: Counter = Counter()
        self.bn_consumer: dict[int, str] = {}
        self.script = ScriptScopes(model) if scripted else None
        self.last_scope = ""
        for name, p in model.named_parameters():
            self.param_names[p] = name
            self.trace.params[name] = p.numel()
        for name, b in model.named_buffers():
            self.param_names[b] = name
            self.trace.buffers[name] = b.numel()

    def _param_name(self, tensor: Any) -> str | None:
        return self.param_names.get(tensor) if isinstance(tensor, torch.Tensor) else None

    def _scope(self, op: str, params: tuple[str, ...]) -> str:
        if self.script is not None:
            return self.script.scope(op, params)
        return self.stack[-1].name if self.stack else ""

    def record(self, func, args, kwargs, out) -> None:
        name, macs, known = torch_ops.count_op(func, args, kwargs, out)
        leaves = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        params = tuple(dict.fromkeys(self.param_names[t] for t in leaves if t in self.param_names))
        scope = self._scope(name, params)
        if self.script is not None:
            self.script.reshaped(name, args[0] if args else None, out, self.trace.modules)
        self._dataflow(name, args, leaves, scope)
        if not known or macs != 0 or name in torch_ops.CONV_OPS:
            conv = conv_spec_from_op(name, args, kwargs) if name in torch_ops.CONV_OPS else None
            event = OpEvent(torch_ops.canonical(name), scope, macs, known, shapes_of(leaves), shapes_of(out),
                            conv, params)
            self.trace.events.append(event)
            if conv is not None:
                event.weights = tuple(self._param_name(args[i] if len(args) > i else None) for i in (1, 2))
                self.conv_out[_first(out)] = len(self.trace.events) - 1
        elif params and isinstance(out, torch.Tensor) and (getattr(func, "is_view", False) or name in _COPIES):
            self.param_names[out] = params[0]  # a view or copy of a weight (t(), view) stays that weight
        if self.script is not None and scope:
            self._scripted_call(scope, leaves, out)

    def _dataflow(self, name: str, args: tuple, leaves: list, scope: str) -> None:
        if name in torch_ops.METADATA_OPS:
            return
        for t in leaves:
            index = self.conv_out.get(t)
            if index is not None:
                self.uses[index] += 1
                if name in torch_ops.BATCHNORM_OPS and t is args[0] and _eval_bn(name, args):
                    self.bn_consumer[index] = scope

    def _scripted_call(self, scope: str, leaves: list, out: Any) -> None:
        """A TorchScript module's row: its first activation input, the output of its last op."""
        call = self.trace.modules.get(scope)
        if call is None:
            acts = [self.script.source(t) for t in leaves if t not in self.param_names]
            if not acts:
                return  # t() of a weight: the activations come with the module's next op
            call = self.trace.modules[scope] = ModuleCall(scope, self.script.type_name(scope), shapes_of(acts[:1]))
        elif scope != self.last_scope:
            return  # a later call of the module: its row keeps the first call's shapes
        call.output_shapes = shapes_of(self.script.last_output(scope, _first(out)))
        self.last_scope = scope

    def _pre(self, module, args, kwargs):
        name = self.names.get(id(module), "")
        self.stack.append(_Frame(name, type(module).__name__, shapes_of((args, kwargs))))

    def _post(self, module, args, kwargs, out):
        frame = self.stack.pop()
        leaf = frame.name and not any(True for _ in module.children())  # a bare root gets functional rows
        if leaf and frame.name not in self.trace.modules:
            self.trace.modules[frame.name] = ModuleCall(frame.name, frame.type_name, frame.shapes,
                                                        shapes_of(out), module_conv_spec(module))

    def run(self, inputs: tuple, kw_inputs: dict, mode: Mode = None) -> Trace:
        """Call the model once (``Mode.META``: weights and inputs swapped for meta stand-ins, the fastest
        shapes-only pass; ``Mode.FAKE``: under a ``FakeTensorMode``; ``Mode.REAL``: real arithmetic);
        raise ``ForwardError`` naming the innermost failing module."""
        mode = mode or Mode.REAL
        handles = []
        if not self.scripted:
            for module in self.model.modules():
                handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
                handles.append(module.register_forward_hook(self._post, with_kwargs=True))
        try:
            with torch.no_grad(), _fake_mode(mode is Mode.FAKE) as fake_mode:
                if fake_mode is not None:
                    inputs, kw_inputs = tree_map_only(torch.Tensor, fake_mode.from_tensor, (inputs, kw_inputs))
                if mode is Mode.META:
                    out = self._call_on_meta(inputs, kw_inputs)
                else:
                    with _Recorder(self):
                        out = self.model(*inputs, **kw_inputs)
        except Exception as exc:  # noqa: BLE001 - any forward failure becomes a located ForwardError
            frame = self.stack[-1] if self.stack else _Frame("", type(self.model).__name__,
                                                             shapes_of((inputs, kw_inputs)))
            raise ForwardError(frame.name, frame.type_name, frame.shapes, exc) from exc
        finally:
            for handle in handles:
                handle.remove()
        self._finish_dataflow(out)
        return self.trace

    def _call_on_meta(self, inputs: tuple, kw_inputs: dict) -> Any:
        """Forward with every parameter and buffer replaced by a meta tensor of its shape (no memory, no
        arithmetic; the module's own tensors are untouched). Stand-ins keep their original's name."""
        stand_ins = {}
        for name, tensor in list(self.model.named_parameters()) + list(self.model.named_buffers()):
            stand_ins[id(tensor)] = torch.empty_like(tensor, device="meta")
            self.param_names[stand_ins[id(tensor)]] = name
        # one entry per (module, attribute), tied or not: torch's own tie handling restores a reused
        # module's tensors from its stand-ins, leaving the model on meta
        state = {f"{prefix}.{key}".lstrip("."): stand_ins[id(t)] for prefix, module in self.model.named_modules()
                 for key, t in {**module._parameters, **module._buffers}.items() if t is not None}
        inputs, kw_inputs = tree_map_only(torch.Tensor, lambda t: t.to("meta"), (inputs, kw_inputs))
        with _Recorder(self):
            return torch.func.functional_call(self.model, state, inputs, kw_inputs, tie_weights=False)

    def _finish_dataflow(self, out: Any) -> None:
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t in self.conv_out:
                self.uses[self.conv_out[t]] += 1
        for index, scope in self.bn_consumer.items():
            if self.uses[index] == 1:
                self.trace.events[index].bn_follows = scope


@contextlib.contextmanager
def _fake_mode(fake: bool):
    if not fake:
        yield None
        return
    from torch._subclasses.fake_tensor import FakeTensorMode

    with quiet_fake_logs(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _eval_bn(name: str, args: tuple) -> bool:
    """True when a BatchNorm op normalises with running statistics (inference mode)."""
    if name == "_native_batch_norm_legit_no_training":
        return True
    if name in ("batch_norm", "native_batch_norm", "_native_batch_norm_legit"):
        return len(args) > 5 and args[5] is False
    return False


def trace_module(model: torch.nn.Module, inputs: tuple, kw_inputs: dict | None = None,
                 scripted: bool = False, mode: Mode = Mode.REAL) -> Trace:
    """Trace ``model`` (eval mode, no grad) on ``inputs``; see ``Tracer``."""
    return Tracer(model, scripted).run(inputs, kw_inputs or {}, mode)
