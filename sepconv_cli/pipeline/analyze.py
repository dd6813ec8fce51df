"""The analysis pipeline: load a model, then rank its separable candidates.

``load`` (format by content) -> ``Report`` + weights handle -> ``planner.find_candidates`` -> ``Report``
carrying candidates and exclusions. No printing, no exit codes; errors are ``SepconvError``s.
The planner is imported when used, so this module stays cheap to import.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sepconv_cli.backends.registry import LoadedModel, LoadOptions, load
from sepconv_cli.core.records import Report
from sepconv_cli.core.weights import ConvWeights, ModelHandle
from sepconv_cli.errors import WeightsUnreadable

if TYPE_CHECKING:
    from sepconv_cli.planner import CandidateOptions


class LenientHandle:
    """A handle for analysis: a conv whose weights cannot be read (a missing external-data file) gets no
    energy figure instead of failing the whole report; ``problems`` keeps the reasons. ``convert`` reads
    weights strictly."""

    def __init__(self, handle: ModelHandle | None):
        self.handle, self.problems = handle, []

    def conv_weights(self, name: str) -> ConvWeights | None:
        try:
            return self.handle.conv_weights(name) if self.handle is not None else None
        except WeightsUnreadable as exc:
            self.problems.append(exc.what)
            return None


def with_candidates(loaded: LoadedModel, options: CandidateOptions) -> Report:
    """The loaded model's report with its separable candidates (weights read through its handle)."""
    from sepconv_cli import planner

    handle = LenientHandle(loaded.handle)
    report = planner.find_candidates(loaded.report, handle, options)
    if handle.problems:
        warning = (f"energy unknown for {len(handle.problems)} conv(s): {handle.problems[0]}; params and MACs "
                   "need only shapes")
        report = replace(report, warnings=report.warnings + (warning,))
    return report


def analyze_model(source: str, load_options: LoadOptions, options: CandidateOptions) -> Report:
    """Load ``source`` (file or entry point) and find its separable candidates."""
    return with_candidates(load(source, load_options), options)
