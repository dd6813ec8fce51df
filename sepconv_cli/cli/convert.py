"""`sepconv convert` command (thin: parse options, call the pipeline, render, choose the exit code)."""

from __future__ import annotations

import typer

HELP = "convert (under construction)"


def convert(model: str = typer.Argument(..., help="Model file or entry point.")) -> None:
    """Placeholder until the command lands."""
    raise typer.Exit(2)
