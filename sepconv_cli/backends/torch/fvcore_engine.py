"""``--engine fvcore``: per-module counts from ``fvcore.nn.FlopCountAnalysis`` (1 fvcore "flop" = 1 MAC).

fvcore traces with ``torch.jit`` on real CPU tensors, so a meta-built model is materialised first
(uninitialised memory: only shapes matter). Rows keep the names and shapes of the default engine; their
MACs are fvcore's. fvcore differs from the default engine by design: it also charges BatchNorm, norms,
upsampling and adaptive pooling, and it misses convs with string padding (``padding='same'`` traces to
``aten::_convolution_mode``, which it has no handle for, so it counts 0 there).
"""

from __future__ import annotations

import copy

import torch

from sepconv_cli.backends.torch.rows import OpEvent, Trace

FVCORE_NOTE = ("engine fvcore: MACs are fvcore FlopCountAnalysis 'flops' (1 = 1 MAC); fvcore also charges "
               "batch_norm/norm/upsample/adaptive_avg_pool and counts 0 for convs with string padding")


def _cpu(model: torch.nn.Module) -> torch.nn.Module:
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        return copy.deepcopy(model).to_empty(device="cpu")  # a copy: the garbage must never reach the SVD
    return model


def _cpu_inputs(values):
    return tuple(torch.zeros(v.shape, dtype=v.dtype) if v.is_meta else v for v in values)


def fvcore_trace(model: torch.nn.Module, inputs: tuple, base: Trace) -> Trace:
    """``base`` (default-engine trace, for names and shapes) with MACs replaced by fvcore's."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(_cpu(model), _cpu_inputs(inputs))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_module = analysis.by_module()
    trace = Trace(modules=base.modules, params=base.params, buffers=base.buffers,
                  warnings=base.warnings + [FVCORE_NOTE])
    used: dict[str, tuple[str, ...]] = {}
    for event in base.events:  # tensors a module uses but does not own (tied weights) stay its params
        used[event.scope] = tuple(dict.fromkeys(used.get(event.scope, ()) + event.param_names))
    for name in base.modules:
        trace.events.append(OpEvent("fvcore", name, int(by_module.get(name, 0)), True,
                                    param_names=used.get(name, ())))
    children: dict[str, int] = {}
    for name, count in by_module.items():
        if name:
            parent = name.rpartition(".")[0]
            children[parent] = children.get(parent, 0) + int(count)
    for name, count in by_module.items():
        residual = int(count) - children.get(name, 0)
        if name not in base.modules and residual > 0:
            trace.events.append(OpEvent("fvcore", name, residual, True))
    for op, count in analysis.unsupported_ops().items():
        trace.events.extend(OpEvent(op, "", None, False) for _ in range(count))
    return trace
