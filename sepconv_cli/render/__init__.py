"""Renderers: a ``Report`` -> text, one module per output format; the CLI prints what they return.

``OutputFormat`` is the user's choice; ``RENDERERS`` maps every member to a ``"module:function"``
imported on demand, so JSON output never imports rich. Every renderer has the signature
``(report: Report, options: RenderOptions) -> str``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from sepconv_cli.core.records import Report
from sepconv_cli.lazy import resolve
from sepconv_cli.render.views import SortKey, ViewOptions


class OutputFormat(str, Enum):
    """How `analyze` writes its report."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    HTML = "html"


RENDERERS: dict[OutputFormat, str] = {
    OutputFormat.TABLE: "sepconv_cli.render.table:render_table",
    OutputFormat.JSON: "sepconv_cli.render.json:render_json",
    OutputFormat.CSV: "sepconv_cli.render.csv:render_csv",
    OutputFormat.MARKDOWN: "sepconv_cli.render.markdown:render_markdown",
    OutputFormat.HTML: "sepconv_cli.render.html:render_html",
}

# file suffix -> format, for `--output FILE` without `--format`
SUFFIX_FORMATS: dict[str, OutputFormat] = {
    ".json": OutputFormat.JSON,
    ".csv": OutputFormat.CSV,
    ".md": OutputFormat.MARKDOWN,
    ".markdown": OutputFormat.MARKDOWN,
    ".html": OutputFormat.HTML,
    ".htm": OutputFormat.HTML,
    ".txt": OutputFormat.TABLE,
}

CONVENTIONS: dict[str, str] = {
    "macs": "one multiply-accumulate = 1 MAC; bias additions and BatchNorm are not MACs",
    "flops": "FLOPs = 2 x MACs, derived for display",
    "conv_macs": "N * Cout * prod(out_spatial) * (Cin/groups) * prod(kernel); "
                 "ConvTranspose: N * Cin * prod(in_spatial) * (Cout/groups) * prod(kernel)",
    "params": "elements of trainable weights, each shared tensor counted once",
    "buffers": "non-trainable state elements (BatchNorm running stats), never mixed into params",
    "separable": "depthwise (Cin -> Cin*T, groups=Cin) + pointwise 1x1 (Cin*T -> Cout, groups=g); "
                 "one bias, on the pointwise conv (Keras SeparableConv2D)",
    "energy": "share of the kernel's squared Frobenius norm kept at rank T (1 - relative weight error^2)",
}


def conventions_text() -> str:
    """The conventions as one paragraph, for help texts."""
    return "; ".join(f"{key}: {text}" for key, text in CONVENTIONS.items()) + "."


@dataclass(frozen=True)
class RenderOptions:
    """``view``: grouping/sorting of layer rows; ``width``: terminal columns (table only);
    ``color``: ANSI styles (table only; JSON, CSV and Markdown are never coloured)."""

    view: ViewOptions = field(default_factory=ViewOptions)
    width: int = 80
    color: bool = False


Renderer = Callable[[Report, RenderOptions], str]


def renderer_for(fmt: OutputFormat) -> Renderer:
    """The renderer function registered for ``fmt`` (imported now)."""
    return resolve(RENDERERS[OutputFormat(fmt)])


def render(report: Report, fmt: OutputFormat, options: RenderOptions | None = None) -> str:
    """``report`` as text in format ``fmt``."""
    return renderer_for(fmt)(report, options or RenderOptions())


__all__ = ["CONVENTIONS", "OutputFormat", "RENDERERS", "RenderOptions", "SUFFIX_FORMATS", "SortKey",
           "ViewOptions", "conventions_text", "render", "renderer_for"]
