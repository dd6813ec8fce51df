"""Error types: one base class and one subclass per stage of the pipeline.

The CLI turns any ``SepconvError`` into a one-line message on stderr and exit code 2
(``BudgetExceeded``-style findings are not errors: they are results with exit code 1).
"""

from __future__ import annotations


class SepconvError(Exception):
    """An expected failure the user can act on. ``str(err)`` is the one-line message."""

    exit_code = 2


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
