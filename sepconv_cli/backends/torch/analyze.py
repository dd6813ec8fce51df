"""Count a live ``nn.Module``: make inputs, run the chosen engine, assemble the report and weights handle.

Input shapes come from ``--input-shape`` (positional, or by ``forward`` parameter name) or from a
``example_input_shapes`` attribute on the module (a tuple of shapes). Symbolic dims are a usage error
unless ``LoadOptions.dynamic_dims`` (then read as 1).
When the model carries an eval-mode BatchNorm right after a conv, ``Report.extra`` also gives
``params_bn_folded`` (see ``torch_rows.with_bn_folded``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum

import torch

from sepconv_cli.backends.base import LoadedModel, LoadOptions
from sepconv_cli.backends.torch.count import ForwardError, Mode, trace_module
from sepconv_cli.backends.torch.fvcore_engine import fvcore_trace
from sepconv_cli.backends.torch.handle import ModuleHandle
from sepconv_cli.backends.torch.rows import Trace, build_report, with_bn_folded
from sepconv_cli.core.records import ModelInfo, TensorInfo, format_shape
from sepconv_cli.errors import InputError, UsageError


class Engine(str, Enum):
    """PyTorch counting engine (``--engine``)."""

    SEPCONV = "sepconv"
    FVCORE = "fvcore"


def _sepconv_engine(model, inputs, kw_inputs, scripted) -> Trace:
    """Shapes only: meta tensors as they are; real weights are swapped for meta stand-ins (fastest), then
    run under a FakeTensorMode when an op has no meta kernel; a forward that needs values (data-dependent
    control flow) is run for real."""
    if any(t.is_meta for t in inputs) or scripted:
        return trace_module(model, inputs, kw_inputs, scripted)
    for mode in (Mode.META, Mode.FAKE):
        try:
            return trace_module(model, inputs, kw_inputs, scripted, mode)
        except ForwardError:
            pass
    return trace_module(model, inputs, kw_inputs, scripted)


def _fvcore_engine(model, inputs, kw_inputs, scripted) -> Trace:
    base = _sepconv_engine(model, inputs, kw_inputs, scripted)
    if kw_inputs:
        raise InputError("engine fvcore takes positional inputs only; pass unnamed --input-shape")
    return fvcore_trace(model, inputs, base)


ENGINES: dict[Engine, Callable[..., Trace]] = {Engine.SEPCONV: _sepconv_engine, Engine.FVCORE: _fvcore_engine}


def first_line(exc: BaseException) -> str:
    """First non-empty line of an exception message (or its type name)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _forward_names(model: torch.nn.Module) -> list[str]:
    schema = getattr(model.forward, "schema", None)
    if schema is not None:
        return [a.name for a in schema.arguments[1:]]
    try:
        return [p for p in inspect.signature(model.forward).parameters if p not in ("args", "kwargs")]
    except (TypeError, ValueError):
        return []


def _dtype(model: torch.nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def make_inputs(model, options: LoadOptions, device: str, info: ModelInfo) -> tuple[tuple, dict, list]:
    """(positional tensors, keyword tensors, warnings) of the requested shapes on ``device`` (zeros)."""
    shapes = list(options.input_shapes) or [(None, s) for s in getattr(model, "example_input_shapes", ())]
    if not shapes:
        raise InputError(f"{info.path}: no input shape known; pass --input-shape (e.g. 1x3x224x224)")
    warnings = []
    names = _forward_names(model)
    pos, kw = [], {}
    for name, shape in shapes:
        dims = tuple(d if isinstance(d, int) else 1 for d in shape)
        if dims != tuple(shape):
            _check_concrete(shape, options)
            warnings.append(f"symbolic dims of input shape {format_shape(shape)} read as 1")
        tensor = torch.zeros(dims, dtype=_dtype(model), device=device)
        if name is None:
            pos.append(tensor)
        elif names and name not in names:
            raise InputError(f"{info.path}: forward has no input named {name!r} (inputs: {', '.join(names)})")
        else:
            kw[name] = tensor
    return tuple(pos), kw, warnings


def _check_concrete(shape, options: LoadOptions) -> None:
    """A live module runs at concrete sizes: a symbolic dim would be counted at a made-up size."""
    symbolic = next((d for d in shape if not isinstance(d, int)), None)
    if symbolic is not None and not options.dynamic_dims:
        raise UsageError(f"--input-shape {format_shape(shape)}: dim {symbolic!r} is not a number; a PyTorch "
                         "model needs concrete sizes (e.g. 1x3x224x224)")


def _device(model: torch.nn.Module) -> str:
    tensor = next(iter(list(model.parameters()) + list(model.buffers())), None)
    return "meta" if tensor is not None and tensor.is_meta else "cpu"


def _meta_problem(exc: ForwardError) -> bool:
    cause = exc.cause
    return isinstance(cause, NotImplementedError) or "meta" in str(cause).lower() or \
        type(cause).__name__ in ("DataDependentOutputException", "DynamicOutputShapeException")


def _run(model, options: LoadOptions, info: ModelInfo, scripted: bool) -> tuple[Trace, list]:
    inputs, kw_inputs, warnings = make_inputs(model, options, _device(model), info)
    try:
        engine = ENGINES[Engine(options.engine)]
    except ValueError:
        choices = ", ".join(e.value for e in Engine)
        raise UsageError(f"unknown engine {options.engine!r} (choose {choices})") from None
    return engine(model, inputs, kw_inputs, scripted), warnings


def _forward_error(info: ModelInfo, exc: ForwardError) -> InputError:
    shapes = ", ".join(format_shape(s) for s in exc.shapes) or "no tensors"
    where = f"module '{exc.module}' ({exc.type_name})" if exc.module else f"the model ({exc.type_name})"
    return InputError(f"{info.path}: forward failed in {where} with input shapes {shapes}: {exc}")


def _trace(model, info, options, rebuild, scripted):
    try:
        trace, warnings = _run(model, options, info, scripted)
        return model, trace, warnings
    except ForwardError as exc:
        if rebuild is None or _device(model) != "meta" or not _meta_problem(exc):
            raise _forward_error(info, exc) from None
        note = f"could not run on the meta device ({exc}); counted on the CPU with real weight memory"
    model = rebuild().eval()
    try:
        trace, warnings = _run(model, options, info, scripted)
    except ForwardError as exc:
        raise _forward_error(info, exc) from None
    return model, trace, [note] + warnings


def _affine(model: torch.nn.Module) -> dict[str, int]:
    return {name: 2 * m.num_features for name, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine}


def weight_bytes(tensors) -> tuple[tuple[str, int], ...]:
    """Bytes of stored tensors per dtype name (each tensor once)."""
    out: dict[str, int] = {}
    for t in tensors:
        key = str(t.dtype).replace("torch.", "")
        out[key] = out.get(key, 0) + t.numel() * t.element_size()
    return tuple(sorted(out.items()))


def analyze_module(model: torch.nn.Module, info: ModelInfo, options: LoadOptions,
                   rebuild: Callable[[], torch.nn.Module] | None = None, scripted: bool = False) -> LoadedModel:
    """Count ``model`` (put in eval mode) and return its report, handle and the module itself."""
    model = model.eval()
    model, trace, warnings = _trace(model, info, options, rebuild, scripted)
    trace.warnings = warnings + trace.warnings
    dtype = str(_dtype(model)).replace("torch.", "")
    inputs = tuple(TensorInfo(n or f"input_{i}", s, dtype) for i, (n, s) in enumerate(
        options.input_shapes or [(None, s) for s in getattr(model, "example_input_shapes", ())]))
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}.values()
    model_info = ModelInfo(info.path, info.format, info.file_size, inputs)
    report = with_bn_folded(build_report(trace, model_info, weight_bytes=weight_bytes(tensors)), _affine(model))
    sources = {e.row: e.weights for e in trace.events if e.conv is not None}
    return LoadedModel(report=report, handle=ModuleHandle(model, report, sources), native=model)
