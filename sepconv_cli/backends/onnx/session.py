"""Every onnxruntime session sepconv opens: quiet, and bounded when the graph is untrusted.

``make_session(model, settings, limits)`` opens a CPU session with onnxruntime's logs off (its default
logger and the session's at FATAL: its C++ error lines would otherwise reach stderr in colour). With
``limits`` (``backends.limits.RunLimits``) the session draws its memory from one process-wide arena
capped at ``limits.memory`` and its runs are bounded:

- before the first run at a new set of input shapes, the memory the run would hold is predicted from
  inferred shapes (``memory.predicted_bytes``) and the run is refused above ``limits.memory``;
- each run is stopped after ``limits.seconds`` (``RunOptions.terminate``, set by a watchdog thread), and
  at once when SIGINT, SIGTERM or SIGHUP arrives (the watchdog reads Python's signal wake-up descriptor;
  the signal's own handler then runs as the run returns);
- an allocation past the cap, a timeout or a prediction over the limit end with ``RunRefused``: one line.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from sepconv_cli.backends.limits import RunLimits, RunRefused
from sepconv_cli.backends.onnx.files import session_source
from sepconv_cli.backends.onnx.watchdog import WATCHDOG
from sepconv_cli.core.units import format_bytes

FATAL = 4
"""onnxruntime log severity that keeps everything but fatal errors quiet (3 still prints errors)."""

_ARENA_FAILURE = ("bfc_arena", "Available memory of", "Failed to allocate memory")


@dataclass(frozen=True)
class SessionSettings:
    """How a session runs: ``threads`` intra-op threads (0: onnxruntime's choice), ``spinning`` idle
    threads, ``arena`` (keep freed activations pooled), ``sequential`` execution, graph ``optimize``."""

    threads: int = 0
    spinning: bool = True
    arena: bool = True
    sequential: bool = False
    optimize: bool = True


_registered_cap: list[int] = []


def _quiet(ort: Any) -> None:
    ort.set_default_logger_severity(FATAL)


def _capped_allocator(ort: Any, memory: int) -> None:
    """Register (or re-register with a new cap) the process-wide CPU arena sessions draw from."""
    if _registered_cap and _registered_cap[-1] == memory:
        return
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg({"max_mem": int(memory), "arena_extend_strategy": 1}))
    _registered_cap.append(memory)


def _options(ort: Any, settings: SessionSettings, limits: RunLimits | None) -> Any:
    opts = ort.SessionOptions()
    opts.log_severity_level = FATAL
    opts.enable_cpu_mem_arena = settings.arena
    if settings.threads > 0:
        opts.intra_op_num_threads = settings.threads
    if settings.sequential:
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not settings.spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not settings.optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if limits is not None:
        _capped_allocator(ort, limits.memory)
        opts.add_session_config_entry("session.use_env_allocators", "1")
    return opts


def make_session(model: Any, settings: SessionSettings = SessionSettings(), limits: RunLimits | None = None,
                 predict: bool = True) -> Any:
    """A CPU session for ``model`` (path, serialised bytes or ModelProto; models over 2 GB are saved to a
    temporary folder first). Without ``limits``: onnxruntime's own session (for graphs sepconv built);
    with them: a ``BoundedSession`` (``predict``: refuse runs predicted over the memory limit)."""
    import onnxruntime as ort

    _quiet(ort)
    opts = _options(ort, settings, limits)
    with tempfile.TemporaryDirectory(prefix="sepconv-session-") as tmp:
        source = model if isinstance(model, bytes) else session_source(model, tmp)
        session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    if limits is None:
        return session
    return BoundedSession(session, limits, model if predict else None)


class BoundedSession:
    """An onnxruntime session whose ``run`` obeys ``limits`` (see the module docstring); other attributes
    (``get_inputs``, ``get_outputs``) are the session's."""

    def __init__(self, session: Any, limits: RunLimits, model: Any = None):
        self._session, self.limits, self._model = session, limits, model
        self._checked: set[tuple] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, output_names: Any, feeds: dict[str, np.ndarray], run_options: Any = None) -> list:
        """The session's ``run``, refused or stopped at the limits (``RunRefused``)."""
        import onnxruntime as ort

        self._check_memory(feeds)
        options = run_options or ort.RunOptions()
        options.log_severity_level = FATAL
        token = WATCHDOG.arm(options, self.limits.seconds)
        try:
            return self._session.run(output_names, feeds, options)
        except Exception as exc:
            raise self._refusal(exc, WATCHDOG.reason(token)) from None
        finally:
            WATCHDOG.disarm(token)

    def _refusal(self, exc: Exception, stopped: str) -> Exception:
        """The ``RunRefused`` a failed run becomes, or ``exc`` itself when no limit was hit."""
        if stopped == "timeout":
            return RunRefused(f"running the graph took longer than {self.limits.seconds:g} s and was stopped "
                              "(--run-timeout raises the limit)")
        if stopped:
            return RunRefused(f"running the graph was stopped ({stopped})")
        if any(marker in str(exc) for marker in _ARENA_FAILURE):
            return RunRefused(f"running the graph needed more than {format_bytes(self.limits.memory)} of memory "
                              "and was stopped (--max-memory raises the limit)")
        return exc

    def _check_memory(self, feeds: dict[str, np.ndarray]) -> None:
        """Refuse a run predicted to hold more than the limit (once per set of input shapes)."""
        if self._model is None:
            return
        key = tuple(sorted((name, np.shape(value)) for name, value in feeds.items()))
        if key in self._checked:
            return
        from sepconv_cli.backends.onnx.memory import predicted_bytes

        shapes = {name: (tuple(np.shape(value)), _elem_type(value)) for name, value in feeds.items()}
        predicted = predicted_bytes(_proto(self._model), shapes)
        if predicted is not None and predicted > self.limits.memory:
            batch = next((s[0][0] for s in shapes.values() if s[0]), None)
            at = f" at batch {batch}" if batch is not None else ""
            raise RunRefused(f"running the graph{at} would hold about {format_bytes(predicted)} (limit "
                             f"{format_bytes(self.limits.memory)}; --max-memory raises it)")
        self._checked.add(key)


def _elem_type(value: Any) -> int:
    try:
        return onnx.helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
    except (KeyError, TypeError, ValueError):
        return 0


def _proto(model: Any) -> onnx.ModelProto:
    """``model`` as a ModelProto (a path is parsed without its external data; bytes are parsed)."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return onnx.load(os.fspath(model), load_external_data=False)


__all__ = ["FATAL", "BoundedSession", "SessionSettings", "make_session"]
