"""``--max-memory`` and ``--run-timeout``: the bounds of every run of a model's graph during a command.

The model's graph is untrusted (it may loop or allocate without end), so each run is refused when its
predicted memory passes ``--max-memory``, capped there at run time, and stopped after ``--run-timeout``
seconds (``backends.limits``). A refusal is one line naming the model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import typer

from sepconv_cli.backends.limits import RunLimits, RunRefused, bounded
from sepconv_cli.core.units import UnitError, parse_bytes
from sepconv_cli.errors import UsageError

DEFAULTS = RunLimits()

MAX_MEMORY_OPTION = typer.Option("4GiB", "--max-memory", metavar="SIZE",
                                 help="Most memory one run of the model may hold (predicted from its shapes "
                                      "and capped at run time), e.g. 4GiB, 500MB.")
RUN_TIMEOUT_OPTION = typer.Option(DEFAULTS.seconds, "--run-timeout", metavar="SECONDS",
                                  help="Stop any single run of the model after this many seconds.")


def run_limits(max_memory: str, run_timeout: float) -> RunLimits:
    """The limits the flags ask for (UsageError for a bad size or a non-positive timeout)."""
    try:
        memory = parse_bytes(max_memory)
    except UnitError as exc:
        raise UsageError(f"--max-memory: {exc}") from None
    if memory < 1 or memory > 2**62:
        raise UsageError(f"--max-memory must be between 1 byte and 4 EiB, got {max_memory!r}")
    if not math.isfinite(run_timeout) or run_timeout <= 0:
        raise UsageError(f"--run-timeout must be a positive number of seconds, got {run_timeout:g}")
    return RunLimits(memory=int(memory), seconds=float(run_timeout))


@contextlib.contextmanager
def bounded_runs(limits: RunLimits, model: str) -> Iterator[None]:
    """Every run inside obeys ``limits``; a run refused or stopped says which model it was."""
    with bounded(limits):
        try:
            yield
        except RunRefused as exc:
            message = str(exc)
            raise RunRefused(message if message.startswith(model) else f"{model}: {message}") from None


__all__ = ["MAX_MEMORY_OPTION", "RUN_TIMEOUT_OPTION", "bounded_runs", "run_limits"]
