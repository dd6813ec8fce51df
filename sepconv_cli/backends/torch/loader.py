"""PyTorch loaders: ``.pt2``, TorchScript, state_dict + ``--arch``, trusted pickles and entry points.

Each ``load_*`` takes ``(source, LoadOptions)`` and returns a ``LoadedModel``. Unpickling runs arbitrary
code, so ``torch.load`` always uses ``weights_only=True`` unless ``options.trust_pickle`` is set, and a
``.pt2`` archive is inspected (``pt2_scan``) before ``torch.export.load`` reads it: a member that would
need the full unpickler, or would otherwise run code, is refused by name unless ``trust_pickle``.
Entry points are built on the CPU when their weights fit in memory and on the meta device (no weight
memory) otherwise, unless a device is asked for (``device.py``); where the forward cannot run on meta the
model is rebuilt on the CPU and the report says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import replace

import torch

from sepconv_cli.backends.base import LoadedModel, LoadOptions
from sepconv_cli.backends.torch import device as device_choice
from sepconv_cli.backends.torch import entrypoint
from sepconv_cli.backends.torch.analyze import analyze_module, first_line, weight_bytes
from sepconv_cli.backends.torch.graph import propagate_shapes, trace_graph
from sepconv_cli.backends.torch.handle import GraphHandle
from sepconv_cli.backends.torch.pt2_scan import scan_pt2
from sepconv_cli.backends.torch.rows import build_report, with_bn_folded
from sepconv_cli.backends.torch.ties import shared_names, tied_names
from sepconv_cli.core.records import ModelInfo, TensorInfo, is_static
from sepconv_cli.errors import InputError, UsageError


def _size(source: str) -> int:
    return os.path.getsize(source) if os.path.isfile(source) else 0


def _info(source: str, fmt: str) -> ModelInfo:
    return ModelInfo(path=source, format=fmt, file_size=_size(source))


def load_entrypoint(source: str, options: LoadOptions) -> LoadedModel:
    """Build ``package.module:factory`` and count it: on the device asked, or with ``"auto"`` on the CPU
    when its weights fit in memory and on the meta device otherwise (``device.choose``). The report's
    ``model.device`` says where it was counted; a meta build is also a warning (no energy figures)."""
    choice = None
    if options.device == device_choice.AUTO:
        choice = device_choice.choose(entrypoint.build(source, options.kwargs_json, "meta"))
    device = choice.device if choice is not None else options.device
    device = None if device in ("", "cpu") else device

    def rebuild():
        return entrypoint.build(source, options.kwargs_json, "cpu")

    model = entrypoint.build(source, options.kwargs_json, device)
    loaded = analyze_module(model, _info(source, "entrypoint"), options, rebuild=rebuild)
    on_meta = isinstance(loaded.native, torch.nn.Module) and _on_meta(loaded.native)
    report = loaded.report
    report = replace(report, model=replace(report.model, device="meta" if on_meta else "cpu"))
    if on_meta and (choice is None or not choice.warn):
        note = "built on the meta device: no weights, so no energy figures (pass --device cpu for them)"
        report = replace(report, warnings=report.warnings + (note,))
    elif choice is not None and choice.warn:
        report = replace(report, warnings=report.warnings + (choice.reason,))
    elif choice is not None:
        report = replace(report, notes=report.notes + (choice.reason,))
    return replace(loaded, report=report)


def _on_meta(model: torch.nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def _torch_load(source: str, weights_only: bool):
    if not weights_only:
        entrypoint.cwd_importable()  # the classes a pickle names are often defined next to it
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal says it all
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=weights_only, mmap=False)
    except (pickle.UnpicklingError, ImportError, AttributeError) as exc:  # a pickled class that cannot be imported
        if weights_only:
            raise _Refused(first_line(exc)) from None
        raise InputError(f"{source}: cannot unpickle: {first_line(exc)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError, TypeError,
            OverflowError, struct.error, RecursionError, MemoryError) as exc:  # a torn or hostile pickle
        raise InputError(f"{source}: not a readable torch.save file: {first_line(exc)}") from None


class _Refused(Exception):
    """The weights-only unpickler met something other than tensors and containers."""


def _state_dict(obj) -> dict | None:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return _state_dict(obj[key])
    return None


def load_state_dict(source: str, options: LoadOptions) -> LoadedModel:
    """A ``torch.save`` file: a state_dict (needs ``--arch``) or, with ``--trust-pickle``, a whole module."""
    try:
        obj = _torch_load(source, weights_only=True)
    except _Refused:
        if options.trust_pickle:
            return load_pickle(source, options)
        raise InputError(f"{source}: contains pickled Python objects (a whole module?); unpickling runs "
                         "arbitrary code, pass --trust-pickle only if you trust this file") from None
    state = _state_dict(obj)
    if state is None:
        raise InputError(f"{source}: torch.save file holds {type(obj).__name__}, not a state_dict of tensors")
    if not options.arch:
        raise InputError(f"{source}: a state_dict holds weights but no architecture; pass --arch "
                         "package.module:factory (or path/to/file.py:factory)")
    model = _model_with_state(source, state, options)
    return analyze_module(model, _info(source, "state_dict"), options)


def _model_with_state(source: str, state: dict, options: LoadOptions) -> torch.nn.Module:
    model = entrypoint.build(options.arch, options.kwargs_json, "meta")
    expected = set(model.state_dict().keys())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise InputError(f"{source}: state_dict does not match {options.arch}: "
                         f"missing keys {_few(missing)}, unexpected keys {_few(unexpected)}")
    ties = _ties(model)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise InputError(f"{source}: state_dict does not fit {options.arch}: {_mismatch(exc)}") from None
    _retie(model, ties)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        model = entrypoint.build(options.arch, options.kwargs_json, "cpu")
        model.load_state_dict(state)  # non-persistent buffers exist only when built for real
    return model


def _ties(model: torch.nn.Module) -> list[tuple[str, str]]:
    """(alias, first name) of every parameter the architecture shares between names."""
    return [(alias, name) for alias, name in shared_names(model).items() if alias != name]


def _retie(model: torch.nn.Module, ties: list[tuple[str, str]]) -> None:
    """``load_state_dict(assign=True)`` gives every name its own tensor; share them again as built."""
    for alias, name in ties:
        owner, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(owner), attr, model.get_parameter(name))


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:4])
    return f"[{shown}{', ...' if len(keys) > 4 else ''}] ({len(keys)})"


def _mismatch(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
    return lines[0] if lines else first_line(exc)


def load_pickle(source: str, options: LoadOptions) -> LoadedModel:
    """A pickled whole module (``torch.save(model)``): only with ``--trust-pickle``."""
    if not options.trust_pickle:
        raise InputError(f"{source}: pickled module refused: unpickling runs arbitrary code; pass "
                         "--trust-pickle only if you trust this file")
    obj = _torch_load(source, weights_only=False)
    if not isinstance(obj, torch.nn.Module):
        raise InputError(f"{source}: pickle holds {type(obj).__name__}, not a torch.nn.Module")
    return analyze_module(obj, _info(source, "pickle"), options)


def load_torchscript(source: str, options: LoadOptions) -> LoadedModel:
    """A ``torch.jit.save`` archive, counted by running it (ops attributed by parameter ownership)."""
    try:
        model = torch.jit.load(source, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any archive problem is an input error
        raise InputError(f"{source}: cannot read TorchScript archive: {first_line(exc)}") from None
    return analyze_module(model, _info(source, "torchscript"), options, scripted=True)


class _Reasons(logging.Handler):
    """Collects the exceptions torch logs (with a traceback) instead of raising them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.reasons: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.reasons.append(record.exc_info[1])


@contextlib.contextmanager
def _logged_reasons(name: str):
    """While loading, logger ``name`` hands its records to a ``_Reasons`` instead of printing them."""
    logger, handler = logging.getLogger(name), _Reasons()
    saved = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [handler], False
    try:
        yield handler.reasons
    finally:
        logger.handlers, logger.propagate = saved


_ENFORCE = re.compile(r"^\[enforce fail at [^\]]*\]\s*\.?\s*")


_TRUST_ADVICE = "pass --trust-pickle only if you trust this file"


def _refuse_unsafe_archive(source: str) -> None:
    """InputError naming the first archive member whose loading could run code (see ``pt2_scan``)."""
    finding = scan_pt2(source)
    if finding is None:
        return
    if not finding.needs_trust:
        where = "" if finding.member == source else f" member {finding.member}"
        raise InputError(f"{source}: archive{where} {finding.reason}")
    raise InputError(f"{source}: archive member {finding.member} {finding.reason}; loading it could run "
                     f"code: {_TRUST_ADVICE}")


def _load_program(source: str, trusted: bool = False):
    if not trusted:
        _refuse_unsafe_archive(source)
    with _logged_reasons("torch.export") as reasons:
        try:
            return torch.export.load(source)
        except Exception as exc:  # noqa: BLE001 - version mismatch, corrupt member, unknown schema...
            cause = reasons[0] if reasons else exc  # torch logs the real reason, then raises a generic one
            reason = _ENFORCE.sub("", first_line(cause)).split(". ")[0].rstrip(".")
            raise InputError(f"{source}: cannot load torch.export program "
                             f"({type(cause).__name__}: {reason})") from None


def _distinct_tensors(state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Each stored tensor once (tied entries share one storage)."""
    return [state[fqn] for fqn in dict.fromkeys(tied_names(state).values())]


def _user_inputs(program) -> list:
    specs = program.graph_signature.user_inputs
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    return [(name, nodes[name].meta.get("val")) for name in specs]


def _program_shapes(source: str, program, options: LoadOptions):
    """User-input shapes from ``--input-shape`` (None: keep the example shapes the program carries)."""
    if not options.input_shapes:
        return None
    inputs = _user_inputs(program)
    named = {n: s for n, s in options.input_shapes if n is not None}
    if None in dict(options.input_shapes) and len(inputs) == 1:
        named = {inputs[0][0]: options.input_shapes[0][1]}
    unknown = set(named) - {n for n, _ in inputs}
    if unknown:
        raise InputError(f"{source}: no input named {sorted(unknown)[0]!r}; inputs are "
                         f"{', '.join(n for n, _ in inputs)}")
    shapes = [tuple(named.get(n, tuple(int(d) for d in v.shape))) for n, v in inputs]
    if any(not is_static(s) for s in shapes):
        raise InputError(f"{source}: --input-shape needs concrete sizes for a .pt2 program")
    return shapes


def load_pt2(source: str, options: LoadOptions) -> LoadedModel:
    """A ``torch.export`` archive counted from its graph's shape metadata (weights never run)."""
    if options.engine != "sepconv":
        raise UsageError(f"{source}: engine {options.engine} needs a live module (fvcore traces with torch.jit); "
                         "a .pt2 program is counted by the default engine")
    program = _load_program(source, options.trust_pickle)
    shapes = _program_shapes(source, program, options)
    gm = None
    if shapes is not None:
        try:
            gm = propagate_shapes(program, shapes)
        except Exception as exc:  # noqa: BLE001 - shapes the program's guards reject
            raise InputError(f"{source}: input shapes {shapes} do not fit the exported program "
                             f"(exported with static shapes?): {first_line(exc)}") from None
    trace, conv_sources = trace_graph(program, gm)
    info = _info(source, "pt2")
    inputs = tuple(TensorInfo(n, tuple(int(d) for d in v.shape) if shapes is None else shapes[i])
                   for i, (n, v) in enumerate(_user_inputs(program)))
    report = build_report(trace, ModelInfo(info.path, info.format, info.file_size, inputs),
                          weight_bytes=weight_bytes(_distinct_tensors(program.state_dict)))
    affine = {src[2][0]: sum(program.state_dict[f].numel() for f in src[2][1][:2] if f)
              for src in conv_sources.values() if src[2] is not None}
    report = with_bn_folded(report, affine)
    if shapes is None and any(not isinstance(d, int) for _, v in _user_inputs(program) for d in v.shape):
        report = replace(report, warnings=report.warnings + (
            "dynamic dims read at the example sizes the program was exported with; pass --input-shape "
            "for other sizes",))
    sources = {trace.events[i].row: src for i, src in conv_sources.items()}
    return LoadedModel(report=report, handle=GraphHandle(program, sources), native=program)
