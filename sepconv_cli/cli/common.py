"""Helpers shared by the CLI commands: error handling, signals, option parsing, output writing."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import TypeVar

import typer

from sepconv_cli.backends.detect import TORCH_MISSING
from sepconv_cli.core.records import Shape
from sepconv_cli.errors import SepconvError, Terminated, UsageError, one_line
from sepconv_cli.files import write_output

F = TypeVar("F", bound=Callable)

# Signals that stop a run the way Ctrl-C does (CI runners and `timeout` send SIGTERM; a closed terminal SIGHUP).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def stop_signals_unwind() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise ``Terminated`` (so every ``finally`` removes its temporary
    files); a second signal during that clean-up is ignored. Only the main thread can take signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum, _frame):
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    saved = {sig: signal.signal(sig, unwind) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Library warnings (numpy's RuntimeWarnings, onnx's UserWarnings, torch's) never reach stderr: sepconv
    prints its own lines, one per failure. The filter is process-wide, so worker threads are quiet too;
    ``SEPCONV_DEBUG`` keeps them."""
    if os.environ.get("SEPCONV_DEBUG"):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _internal_error(exc: Exception) -> str:
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing and missing.split(".")[0] == "torch":
        return f"sepconv: error: {TORCH_MISSING}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return one_line(f"sepconv: internal error: {type(exc).__name__}: {text} (set SEPCONV_DEBUG=1 for a traceback)")


def handle_errors(func: F) -> F:
    """Turn ``SepconvError`` (and any unexpected exception) into one stderr line and exit code 2;
    SIGINT, SIGTERM and SIGHUP into one line and exit code 128 + signal number, after clean-up."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with stop_signals_unwind(), quiet_libraries():
                return func(*args, **kwargs)
        except typer.Exit:
            raise
        except SepconvError as exc:
            typer.echo(f"sepconv: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("sepconv: interrupted", err=True)
            raise typer.Exit(130) from None
        except Terminated as exc:
            typer.echo(f"sepconv: terminated ({exc.name})", err=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
            if os.environ.get("SEPCONV_DEBUG"):
                raise
            typer.echo(_internal_error(exc), err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def parse_shape(text: str) -> Shape:
    """``"1x3x224x224"`` (or comma separated) -> ``(1, 3, 224, 224)``; symbols are kept as strings."""
    parts = [p.strip() for p in text.replace(",", "x").split("x")]
    if not parts or any(p == "" for p in parts):
        raise UsageError(f"bad shape {text!r}: expected e.g. 1x3x224x224")
    dims: list = []
    for p in parts:
        if p.isascii() and p.isdigit():  # "²" is a digit to str.isdigit, not to int()
            if len(p) > 10:  # int() refuses past 4300 digits; no real dim comes near 10
                raise UsageError(f"bad shape {text!r}: dimension {p} is too large")
            value = int(p)
            if value <= 0:
                raise UsageError(f"bad shape {text!r}: dims must be positive")
            dims.append(value)
        elif p.isidentifier():
            dims.append(p)
        else:
            raise UsageError(f"bad shape {text!r}: {p!r} is not a dimension")
    return tuple(dims)


def parse_input_shapes(values: list[str] | None) -> tuple[tuple[str | None, Shape], ...]:
    """``["x=1x3x32x32", "1x3x32x32"]`` -> ``(("x", (1,3,32,32)), (None, (1,3,32,32)))``."""
    out = []
    for value in values or []:
        name, sep, shape = value.rpartition("=")
        out.append((name if sep else None, parse_shape(shape)))
    unnamed = [n for n, _ in out if n is None]
    if unnamed and len(out) > 1:
        raise UsageError("an unnamed --input-shape is only allowed alone (for single-input models)")
    return tuple(out)


class Engine(str, Enum):
    """PyTorch counting engine (``LoadOptions.engine``)."""

    SEPCONV = "sepconv"
    FVCORE = "fvcore"


class Device(str, Enum):
    """Where PyTorch entry points are built (``LoadOptions.device``); meta allocates no weight memory;
    auto: the CPU when the weights fit in memory, else meta."""

    AUTO = "auto"
    META = "meta"
    CPU = "cpu"


# Option declarations shared by every command that loads PyTorch models (typer reads them as defaults).
INPUT_SHAPE_OPTION = typer.Option(None, "--input-shape", show_default=False, metavar="[NAME=]SHAPE",
                                  help="Pin dynamic dims: name=1x3x224x224 (repeatable), or one unnamed shape "
                                       "for a single-input model.")
KWARGS_OPTION = typer.Option("", "--kwargs", metavar="JSON", show_default=False,
                             help="JSON object of keyword arguments for an entry-point factory.")
ARCH_OPTION = typer.Option(None, "--arch", metavar="ENTRYPOINT", show_default=False,
                           help="package.module:factory building the module a state_dict belongs to.")
TRUST_PICKLE_OPTION = typer.Option(False, "--trust-pickle",
                                   help="Allow unpickling a whole saved module, or the parts of a .pt2 archive "
                                        "that need the full unpickler (runs arbitrary code).")
ENGINE_OPTION = typer.Option(Engine.SEPCONV, "--engine", help="PyTorch counting engine (fvcore: fvcore-compatible "
                                                              "tables; needs real tensors).")
DEVICE_OPTION = typer.Option(Device.AUTO, "--device", help="Where entry points are built (auto: on the cpu when "
                                                           "the weights fit in memory, else meta; meta: no weight "
                                                           "memory, no energy figures).")


E = TypeVar("E", bound=Enum)


def format_for(fmt: E | None, output: str | None, suffixes: Mapping[str, E], fallback: E) -> E:
    """The asked ``fmt``; else the format ``output``'s suffix names in ``suffixes``; else ``fallback``.

    An ``output`` whose suffix names no format is a ``UsageError`` (never a silent fallback), unless
    ``--format`` says which."""
    if fmt is not None:
        return fmt
    if output is not None:
        suffix = os.path.splitext(output)[1].lower()
        if suffix not in suffixes and not os.path.isdir(output):  # a folder: the writer says so
            known = ", ".join(sorted(suffixes))
            raise UsageError(f"{output}: cannot tell the report format from the suffix {suffix or '(none)'!r} "
                             f"(known: {known}); pass --format")
        return suffixes.get(suffix, fallback)
    return fallback


def terminal_width(default: int = 80) -> int:
    """Columns of the terminal (``COLUMNS`` wins), ``default`` when unknown."""
    return shutil.get_terminal_size((default, 24)).columns


def use_color(output: str | None) -> bool:
    """ANSI colour only on a terminal, never into a file, never under ``NO_COLOR`` (https://no-color.org)."""
    return output is None and stdout_is_terminal() and not os.environ.get("NO_COLOR")


def stdout_is_terminal() -> bool:
    """True when stdout is an interactive terminal (decides the default output format)."""
    return sys.stdout.isatty()


def write_atomic(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path``: atomically (temporary file, then rename) for a regular file, through a
    symbolic link to its target, in place to a character device or FIFO (``-o /dev/stdout``).

    Raises ``OutputError`` (one line naming ``path``) when it cannot be written; no partial file is left
    and an existing file at ``path`` stays as it was (``files.write_output``).
    """
    write_output(path, data)
