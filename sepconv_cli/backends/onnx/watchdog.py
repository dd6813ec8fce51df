"""One watchdog thread stopping onnxruntime runs: past their deadline, or when the user stops sepconv.

A run registers its ``RunOptions`` with ``WATCHDOG.arm(options, seconds)``; the thread sets
``options.terminate`` when the deadline passes, and onnxruntime ends the run at its next node (inside Loop
bodies too). While onnxruntime computes, Python cannot run a signal handler (that waits until the run
returns), so the watchdog also listens on Python's signal wake-up descriptor (``signal.set_wakeup_fd``,
installed from the main thread when nobody else uses it): SIGINT, SIGTERM or SIGHUP stop every armed run
at once, after which the signal's own handler runs (cleaning up as usual). One thread for the process:
arming and disarming cost a lock and a byte, not a thread per run.
"""

from __future__ import annotations

import itertools
import select
import signal
import socket
import threading
import time
from typing import Any

STOP_SIGNALS = {int(getattr(signal, name)): name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}
"""Signal number -> name of the signals that stop armed runs."""


class Watchdog:
    """Deadlines and stop signals for armed runs (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, list[Any]] = {}  # token -> [deadline, run options, reason it was stopped]
        self._tokens = itertools.count(1)
        self._pair: tuple[socket.socket, socket.socket] | None = None
        self._signals_tried = False

    def arm(self, options: Any, seconds: float) -> int:
        """Watch the run of ``options`` for ``seconds``; returns the token ``disarm`` takes."""
        with self._lock:
            self._start()
            token = next(self._tokens)
            self._armed[token] = [time.monotonic() + seconds, options, ""]
        self._poke()
        return token

    def reason(self, token: int) -> str:
        """Why the run was stopped: ``"timeout"``, a signal's name, or ``""`` when it was not."""
        with self._lock:
            entry = self._armed.get(token)
            return entry[2] if entry else ""

    def disarm(self, token: int) -> None:
        """Stop watching the run of ``token``."""
        with self._lock:
            self._armed.pop(token, None)

    def _start(self) -> None:
        if self._pair is None:
            self._pair = socket.socketpair()
            for end in self._pair:
                end.setblocking(False)
            threading.Thread(target=self._loop, name="sepconv-run-watchdog", daemon=True).start()
        if not self._signals_tried and threading.current_thread() is threading.main_thread():
            self._signals_tried = True
            try:
                previous = signal.set_wakeup_fd(self._pair[1].fileno(), warn_on_full_buffer=False)
            except (ValueError, OSError):
                return
            if previous != -1:  # someone else listens already: leave theirs in place
                signal.set_wakeup_fd(previous)

    def _poke(self) -> None:
        try:
            self._pair[1].send(b"\0")  # type: ignore[index] - 0 is no signal: "look at the deadlines again"
        except OSError:
            pass

    def _stop_all(self, reason: str) -> None:
        for entry in self._armed.values():
            if not entry[2]:
                entry[2] = reason
                entry[1].terminate = True

    def _loop(self) -> None:
        reader = self._pair[0]  # type: ignore[index]
        while True:
            with self._lock:
                now = time.monotonic()
                for entry in self._armed.values():
                    if not entry[2] and entry[0] <= now:
                        entry[2] = "timeout"
                        entry[1].terminate = True
                pending = [entry[0] for entry in self._armed.values() if not entry[2]]
            timeout = max(0.0, min(pending) - now) if pending else None
            ready, _, _ = select.select([reader], [], [], timeout)
            if not ready:
                continue
            try:
                data = reader.recv(4096)
            except OSError:
                continue
            stops = [STOP_SIGNALS[b] for b in data if b in STOP_SIGNALS]
            if stops:
                with self._lock:
                    self._stop_all(stops[0])


WATCHDOG = Watchdog()
"""The process's watchdog (its thread starts with the first armed run)."""

__all__ = ["STOP_SIGNALS", "WATCHDOG", "Watchdog"]
