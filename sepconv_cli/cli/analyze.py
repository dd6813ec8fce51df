"""`sepconv analyze` command (thin: parse options, run the analysis pipeline, render, print or write).

Data goes to stdout (or ``--output``, written atomically); warnings go to stderr, and notes (what a
figure means, which device an entry point was built on) too with ``--verbose``.
Exit codes: 0 ok, 2 usage, input or output error (one line on stderr, through ``handle_errors``).
"""

from __future__ import annotations

import os

import typer

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.cli.common import (
    ARCH_OPTION,
    DEVICE_OPTION,
    ENGINE_OPTION,
    INPUT_SHAPE_OPTION,
    KWARGS_OPTION,
    TRUST_PICKLE_OPTION,
    Device,
    Engine,
    format_for,
    handle_errors,
    parse_input_shapes,
    stdout_is_terminal,
    terminal_width,
    use_color,
    write_atomic,
)
from sepconv_cli.core.records import Report
from sepconv_cli.errors import OutputError, UsageError
from sepconv_cli.planner import CandidateOptions, RankBy
from sepconv_cli.render import (
    SUFFIX_FORMATS,
    OutputFormat,
    RenderOptions,
    conventions_text,
    render,
)
from sepconv_cli.render.views import SortKey, ViewOptions

HELP = f"""Show where a model's parameters and MACs go, layer by layer, and which regular convolutions
would save the most as depthwise-separable ones (with the energy each trained kernel keeps at T=1).

MODEL is an ONNX file, a PyTorch file (.pt2, TorchScript, a state_dict with --arch, a pickled module
with --trust-pickle) or an entry point package.module:factory.

Example:

\b
    sepconv analyze samples/vgg_cifar.onnx                  # table on a terminal
    sepconv analyze model.onnx --depth 2 --sort macs --top 5
    sepconv analyze model.onnx --input-shape input=1x3x224x224 --format json -o report.json
    sepconv analyze model.onnx -o report.html                # a page with charts (no network)
    sepconv analyze model.onnx --explain '*layer1*conv1*'   # formulas, operands, params and why
    sepconv analyze mypkg.nets:resnet18 --kwargs '{{"num_classes": 10}}' --device cpu

A dynamic batch is counted per sample (N=1, said in the header; --input-shape overrides); other symbolic
dims (H, W, a sequence length) get the MACs as an exact formula in them, with the sizes where it holds.

Output is a table on a terminal and JSON otherwise (or from the --output suffix: .json, .csv, .md,
.html, .txt). --top N keeps the N heaviest rows (by params with --sort params, else by MACs) in any
order, and the N candidates saving the most MACs; JSON keeps every layer and candidate and puts the
view under "view". Tables show ONNX node names as module paths (/layer1/layer1.0/conv1/Conv ->
layer1.0.conv1); JSON and CSV keep the full names.
Candidates: convs whose depthwise + pointwise form at rank T=1 is cheaper; T is the smallest rank that
keeps --energy of the kernel's squared norm (after folding a following BatchNorm); risk reads the
energy kept at T=1 (low >= 0.9, medium >= 0.6, high below).

Conventions: {conventions_text()}

Exit codes: 0 ok, 2 usage, input or output error.
"""


def _choose_format(fmt: OutputFormat | None, output: str | None) -> OutputFormat:
    """The asked format; else from the output file's suffix; else table on a terminal, JSON otherwise."""
    fallback = OutputFormat.TABLE if output is None and stdout_is_terminal() else OutputFormat.JSON
    return format_for(fmt, output, SUFFIX_FORMATS, fallback)


def _validate(model: str, output: str | None, view: ViewOptions, energy: float) -> None:
    """Fail fast (before loading the model) on impossible flags."""
    if view.depth is not None and view.depth < 1:
        raise UsageError(f"--depth must be at least 1, got {view.depth}")
    if view.top is not None and view.top < 1:
        raise UsageError(f"--top must be at least 1, got {view.top}")
    if not 0.0 <= energy <= 1.0:
        raise UsageError(f"--energy must be within [0, 1], got {energy}")
    if output is not None and os.path.exists(model) and os.path.exists(output) and os.path.samefile(model, output):
        raise OutputError(f"{output}: is the model itself; refusing to overwrite it")


def _emit(text: str, output: str | None, fmt: OutputFormat) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomic(output, text)
    typer.echo(f"sepconv analyze: wrote {fmt.value} report to {output}", err=True)


@handle_errors
def analyze(
    model: str = typer.Argument(..., help="Model file or entry point (package.module:factory).",
                                show_default=False),
    fmt: OutputFormat | None = typer.Option(None, "--format", "-f", show_default=False,
                                               help="Output format [default: table on a terminal, else json]."),
    output: str | None = typer.Option(None, "--output", "-o", show_default=False,
                                         help="Write the report to this file (atomically) instead of stdout."),
    depth: int | None = typer.Option(None, "--depth", show_default=False,
                                        help="Group rows by their first N name scopes (a hierarchy)."),
    sort: SortKey = typer.Option(SortKey.ORDER, "--sort", help="Order of the layer rows."),
    top: int | None = typer.Option(None, "--top", show_default=False,
                                      help="Keep only the N heaviest (top-level) rows and candidates."),
    input_shape: list[str] | None = INPUT_SHAPE_OPTION,
    energy: float = typer.Option(0.9, "--energy", help="Energy share each candidate's rank T must keep."),
    rank_by: RankBy = typer.Option(RankBy.MACS, "--rank-by", help="Order of the candidates (by savings or by "
                                                                  "energy kept at T=1)."),
    depthwise_bias: bool = typer.Option(False, "--depthwise-bias",
                                        help="Count a bias on the depthwise conv too (default: one bias, on "
                                             "the pointwise conv, as Keras SeparableConv2D)."),
    no_fold_bn: bool = typer.Option(False, "--no-fold-bn",
                                    help="Take spectra of the stored kernels, not of the kernels with their "
                                         "following BatchNorm folded in."),
    kwargs: str = KWARGS_OPTION,
    arch: str | None = ARCH_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    engine: Engine = ENGINE_OPTION,
    device: Device = DEVICE_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print notes on stderr (which device an "
                                                                 "entry point was built on, BatchNorm folding)."),
    explain: str | None = typer.Option(None, "--explain", metavar="NAME|GLOB", show_default=False,
                                       help="Print the MACs formula of the matching rows with its operands, and "
                                            "which inputs count as params and why (instead of the report)."),
) -> None:
    """Analyse MODEL: layers, totals, separable candidates."""
    from sepconv_cli.pipeline.analyze import analyze_model

    view = ViewOptions(depth=depth, sort=sort, top=top)
    _validate(model, output, view, energy)
    load_options = LoadOptions(input_shapes=parse_input_shapes(input_shape), kwargs_json=kwargs, arch=arch,
                               trust_pickle=trust_pickle, engine=engine.value, device=device.value)
    candidate_options = CandidateOptions(energy=energy, rank_by=rank_by, depthwise_bias=depthwise_bias,
                                         fold_bn=not no_fold_bn)
    report = analyze_model(model, load_options, candidate_options)
    if explain is not None:  # text unless JSON is asked for (by --format or the --output suffix)
        chosen = format_for(fmt, output, SUFFIX_FORMATS, OutputFormat.TABLE)
        text = _explained(report, explain, chosen)  # a pattern matching nothing fails before any output
    else:
        chosen = _choose_format(fmt, output)
        text = render(report, chosen, RenderOptions(view=view, width=terminal_width(), color=use_color(output)))
    for warning in report.warnings:
        typer.echo(f"sepconv: warning: {warning}", err=True)
    for note in report.notes if verbose else ():
        typer.echo(f"sepconv: note: {note}", err=True)
    _emit(text, output, chosen)


def _explained(report: Report, pattern: str, chosen: OutputFormat) -> str:
    """``--explain``: the matching rows as text (JSON with ``--format json``); a pattern matching no row is
    a usage error naming a few rows."""
    from sepconv_cli.render.explain import explain_json, explain_text, matching

    rows = matching(report, pattern)
    if not rows:
        names = ", ".join(layer.name for layer in report.layers[:3])
        raise UsageError(f"--explain {pattern!r} matches no row (rows are named like {names}; globs work: '*conv*')")
    return explain_json(rows) if chosen is OutputFormat.JSON else explain_text(report, rows)
