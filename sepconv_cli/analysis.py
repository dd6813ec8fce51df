"""The analysis pipeline: load a model, then rank its separable candidates.

``load`` (format by content) -> ``Report`` + weights handle -> ``planner.find_candidates`` -> ``Report``
carrying candidates and exclusions. No printing, no exit codes; errors are ``SepconvError``s.
The planner is imported when used, so this module stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sepconv_cli.loaders import LoadedModel, LoadOptions, load
from sepconv_cli.records import Report

if TYPE_CHECKING:
    from sepconv_cli.planner import CandidateOptions


def with_candidates(loaded: LoadedModel, options: "CandidateOptions") -> Report:
    """The loaded model's report with its separable candidates (weights read through its handle)."""
    from sepconv_cli import planner

    return planner.find_candidates(loaded.report, loaded.handle, options)


def analyze_model(source: str, load_options: LoadOptions, options: "CandidateOptions") -> Report:
    """Load ``source`` (file or entry point) and find its separable candidates."""
    return with_candidates(load(source, load_options), options)
