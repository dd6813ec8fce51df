"""`sepconv diff A B`: per-layer changes between two models (thin: load both, diff, render, print or write).

A and B are model files, entry points, or reports recorded with `sepconv analyze --format json`. Exit
codes: 0 the diff was written (whatever it found: `check --baseline` is the gate), 2 usage, input or
output error.
"""

from __future__ import annotations

import typer

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.cli.common import (
    ARCH_OPTION,
    INPUT_SHAPE_OPTION,
    KWARGS_OPTION,
    TRUST_PICKLE_OPTION,
    format_for,
    handle_errors,
    parse_input_shapes,
    stdout_is_terminal,
    terminal_width,
    use_color,
    write_atomic,
)
from sepconv_cli.core.records import Report
from sepconv_cli.render.diff import DIFF_SUFFIX_FORMATS, DiffFormat, DiffOptions, diff_renderer_for

HELP = """Compare two models layer by layer: params, MACs and output shapes before -> after, layers split
(a conv that became depthwise + pointwise), changed, added and removed, and the totals.

A and B are model files or entry points (as for analyze), or JSON reports recorded with
`sepconv analyze --format json` (a baseline from the main branch). Layers match by name, then by module
path, then by position and op.

Examples:

\b
  sepconv diff model.onnx model.sep.onnx
  sepconv diff baseline.json model.onnx --format markdown >> "$GITHUB_STEP_SUMMARY"
  sepconv diff model.onnx model.sep.onnx -o diff.html

Output: a table on a terminal, JSON otherwise, or from the --output suffix (.json, .md, .html, .txt).
Exit codes: 0 the diff was written, 2 usage, input or output error.
"""


def _load(source: str, options: LoadOptions) -> Report:
    from sepconv_cli.pipeline.report_file import is_report_file, read_report

    if source.lower().endswith(".json") or is_report_file(source):
        return read_report(source)
    from sepconv_cli.backends.registry import load

    return load(source, options).report


@handle_errors
def diff(
    before: str = typer.Argument(..., metavar="A", help="The first model (or JSON report).", show_default=False),
    after: str = typer.Argument(..., metavar="B", help="The second model (or JSON report).", show_default=False),
    fmt: DiffFormat | None = typer.Option(None, "--format", "-f", show_default=False,
                                          help="Output format [default: table on a terminal, else json]."),
    output: str | None = typer.Option(None, "--output", "-o", show_default=False, metavar="FILE",
                                      help="Write the diff to this file (atomically) instead of stdout."),
    all_layers: bool = typer.Option(False, "--all", help="List unchanged layers too."),
    input_shape: list[str] | None = INPUT_SHAPE_OPTION,
    kwargs: str = KWARGS_OPTION,
    arch: str | None = ARCH_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
) -> None:
    """Compare A and B layer by layer."""
    from sepconv_cli.pipeline.diff import diff_reports

    fallback = DiffFormat.TABLE if output is None and stdout_is_terminal() else DiffFormat.JSON
    chosen = format_for(fmt, output, DIFF_SUFFIX_FORMATS, fallback)
    options = LoadOptions(input_shapes=parse_input_shapes(input_shape), kwargs_json=kwargs, arch=arch,
                          trust_pickle=trust_pickle, device="auto")
    result = diff_reports(_load(before, options), _load(after, options))
    text = diff_renderer_for(chosen)(result, DiffOptions(width=terminal_width(), color=use_color(output),
                                                         all_layers=all_layers))
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomic(output, text)
    typer.echo(f"sepconv diff: wrote {chosen.value} diff to {output}", err=True)
