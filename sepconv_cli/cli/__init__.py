"""The typer application: the only place that reads argv, prints, and chooses exit codes.

Each command lives in its own module (``analyze.py``, ``convert.py``, ``check.py``) as a plain function
registered here, so commands stay small and independent.
"""

from __future__ import annotations

import typer

from sepconv_cli import __version__
from sepconv_cli.cli import analyze as _analyze
from sepconv_cli.cli import check as _check
from sepconv_cli.cli import convert as _convert

CONVENTIONS = (
    "Conventions: 1 MAC = one multiply-accumulate; FLOPs = 2 x MACs; bias and BatchNorm are not MACs; "
    "params = trainable weight elements, shared tensors counted once; buffers (BN running stats) apart. "
    "Exit codes: 0 ok, 1 findings (budget exceeded, verification over tolerance), 2 usage/input/internal error."
)

app = typer.Typer(
    name="sepconv",
    help="Find, convert and budget the convolutions of a CNN (depthwise-separable rewrites).\n\n" + CONVENTIONS,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sepconv {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """sepconv: analyze, convert and check convolutional models."""


app.command("analyze", help=_analyze.HELP)(_analyze.analyze)
app.command("convert", help=_convert.HELP)(_convert.convert)
app.command("check", help=_check.HELP)(_check.check)


def main() -> None:
    """Console-script entry point."""
    app()
