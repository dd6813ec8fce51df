"""Bounds on every run of a model's graph (the graph is untrusted: it may loop or allocate without end).

``RunLimits`` holds the two bounds: ``memory`` (bytes: a run predicted to hold more is refused before it
starts, and the runtime's allocator refuses to grow past it) and ``seconds`` (wall clock of one run, after
which the run is stopped). The command line sets them for a whole command with ``bounded(limits)``
(``--max-memory``, ``--run-timeout``); code that runs a graph reads ``active()`` unless it is handed
limits explicitly. A module-level value, not a context variable, so that worker threads (calibration
overlaps its solves with runs) see the command's limits too. ``RunRefused`` is the one-line error a run
ends with when it hits a bound.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from sepconv_cli.errors import SepconvError

GIB = 2**30


@dataclass(frozen=True)
class RunLimits:
    """``memory``: bytes one run may hold (activations alive at once plus the weights); ``seconds``: wall
    clock of one run."""

    memory: int = 4 * GIB
    seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.memory <= 0 or not self.seconds > 0:
            raise ValueError(f"run limits must be positive, got {self.memory} bytes and {self.seconds} s")


class RunRefused(SepconvError):
    """A run of a model's graph was refused or stopped by a bound of ``RunLimits``."""


_lock = threading.Lock()
_active: list[RunLimits] = [RunLimits()]


def active() -> RunLimits:
    """The limits of the command running now (the defaults outside ``bounded``)."""
    return _active[-1]


@contextlib.contextmanager
def bounded(limits: RunLimits) -> Iterator[RunLimits]:
    """Make ``limits`` the ones every run inside the block obeys (nested blocks: the innermost wins)."""
    with _lock:
        _active.append(limits)
    try:
        yield limits
    finally:
        with _lock:
            _active.remove(limits)


__all__ = ["GIB", "RunLimits", "RunRefused", "active", "bounded"]
