"""The typer application: the only place that reads argv, prints, and chooses exit codes.

Each command lives in its own module (``analyze.py``, ``convert.py``, ``check.py``) as a plain function
registered here, so commands stay small and independent. A command module is imported only when its
command is built: ``main`` builds just the command named on the command line (``sepconv check`` never
pays for the analyze or convert imports), while ``app`` (the whole application, for ``--help`` and
tests) is built on first access.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

from sepconv_cli import __version__

CONVENTIONS = (
    "Conventions: 1 MAC = one multiply-accumulate; FLOPs = 2 x MACs; bias and BatchNorm are not MACs; "
    "params = trainable weight elements, shared tensors counted once; buffers (BN running stats) apart. "
    "Exit codes: 0 ok, 1 findings (budget exceeded, verification over tolerance), 2 usage/input/internal error."
)

COMMANDS = {"analyze": "sepconv_cli.cli.analyze", "convert": "sepconv_cli.cli.convert",
            "check": "sepconv_cli.cli.check", "diff": "sepconv_cli.cli.diff"}
"""Command name -> module holding ``HELP`` and a function of the same name; listed in ``--help`` order."""


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sepconv {__version__}")
        raise typer.Exit(0)


def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """sepconv: analyze, convert and check convolutional models."""


EXAMPLES = """Examples:

\b
  sepconv analyze model.onnx                   # layers, totals, candidates
  sepconv convert model.onnx -o model.sep.onnx # rewrite, verify, export
  sepconv check model.onnx --max-macs 600M     # CI gate: exit 1 when over
  sepconv diff model.onnx model.sep.onnx       # per-layer changes between two models
  sepconv analyze model.onnx -o report.html    # a report to look at (format from the suffix)

"""


def build_app(names: Sequence[str] = tuple(COMMANDS)) -> typer.Typer:
    """A typer application with the commands ``names`` (each module imported here, not before)."""
    application = typer.Typer(
        name="sepconv",
        help="Find, convert and budget the convolutions of a CNN (depthwise-separable rewrites).\n\n" + EXAMPLES
             + CONVENTIONS,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        suggest_commands=False,  # click already says "Did you mean ...?"; once is enough
    )
    application.callback()(_root)
    for name in names:
        module = importlib.import_module(COMMANDS[name])
        application.command(name, help=module.HELP)(getattr(module, name))
    return application


def _command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs when it is a known one (the first word that is not an option), else None."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def __getattr__(name: str):
    # ``app``: the full application, built once on first access (PEP 562 module attribute).
    if name == "app":
        application = build_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point: builds only the command being run (all of them for help or errors)."""
    command = _command_named(sys.argv[1:])
    build_app(COMMANDS if command is None else (command,))()
