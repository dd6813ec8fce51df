"""Error types: one base class and one subclass per stage of the pipeline.

The CLI turns any ``SepconvError`` into a one-line message on stderr and exit code 2
(``BudgetExceeded``-style findings are not errors: they are results with exit code 1).
Messages quote untrusted text (file names, keys, values), so ``str(err)`` is always ``one_line``: control
characters escaped, at most ``MAX_MESSAGE`` characters. ``Terminated`` is how a SIGTERM or SIGHUP
unwinds the stack (cleaning up like Ctrl-C does) instead of killing the process mid-write.
"""

from __future__ import annotations

import re
import signal

MAX_MESSAGE = 300  # characters in one error line (the middle of longer ones is cut)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``limit`` characters: control characters (newlines,
    terminal escapes) shown as ``\\xNN``, undecodable bytes as ``\\udcNN``, the middle cut with `` ... ``."""
    if len(text) > 4 * limit:  # escaping grows a character to at most 4: only the ends can be shown
        text = f"{text[:2 * limit]} ... {text[-2 * limit:]}"
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text
    keep = limit - 5
    return f"{text[:keep - keep // 3]} ... {text[len(text) - keep // 3:]}"


class SepconvError(Exception):
    """An expected failure the user can act on. ``str(err)`` is the one-line message (``one_line``)."""

    exit_code = 2

    def __str__(self) -> str:
        return one_line(super().__str__())


class UsageError(SepconvError):
    """Bad flags or flag combinations."""


class InputError(SepconvError):
    """The model file (or entry point, or inputs file) cannot be read or is not what it claims."""


class WeightsUnreadable(InputError):
    """Weight values cannot be read (a missing external-data file); counts, which need only shapes, can.
    ``what`` says which file and weight, without the advice the full message adds."""

    def __init__(self, what: str, advice: str = ""):
        super().__init__(f"{what}; {advice}" if advice else what)
        self.what = what


class ShapeError(SepconvError):
    """Shapes are impossible (negative, absurdly large) or do not match the model."""


class ConfigError(SepconvError):
    """A budget config or baseline file is invalid."""


class PlanError(SepconvError):
    """Nothing can be converted as asked (e.g. no candidate matches --select)."""


class RewriteError(SepconvError):
    """A rewrite failed a pre- or post-condition."""


class OutputError(SepconvError):
    """The output cannot be written (exists without --force, same as input, unwritable)."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (running every ``finally``, removing temporary files) and exit
    with ``128 + signal number``. A BaseException, like KeyboardInterrupt, so ``except Exception`` in
    loaders does not turn it into an input error."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name
