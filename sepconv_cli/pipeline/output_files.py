"""Output files of `convert`: refuse an output that cannot or must not be written before any work,
report any OSError while writing as a one-line OutputError, and move the finished files into place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from sepconv_cli.errors import OutputError


def check_output(source: str, output: str | None, force: bool) -> None:
    """OutputError when ``output`` is missing, is the input, exists without ``force``, or cannot be written."""
    if not output:
        raise OutputError("no output path: give -o OUT (or --dry-run)")
    if os.path.exists(source) and os.path.realpath(source) == os.path.realpath(output):
        raise OutputError(f"{output}: is the input model; refusing to overwrite it")
    if os.path.isdir(output):
        raise OutputError(f"{output}: is a directory")
    if os.path.exists(output) and not force:
        raise OutputError(f"{output}: already exists (use --force to replace it)")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise OutputError(f"{output}: {folder} is not an existing folder")
    with writing(folder):
        fd, probe = tempfile.mkstemp(prefix=".sepconv-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)


@contextmanager
def writing(folder: str) -> Iterator[None]:
    """Turn an OSError raised while writing into ``folder`` into a one-line OutputError giving the reason."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write to folder {folder}: {reason}") from None


def publish(tmpdir: str, output: str, force: bool) -> None:
    """Move every file of ``tmpdir`` beside ``output``; the model file itself goes last."""
    folder = os.path.dirname(os.path.abspath(output))
    names = sorted(os.listdir(tmpdir), key=lambda n: n == os.path.basename(output))
    for name in names:
        dest = os.path.join(folder, name)
        if os.path.exists(dest) and not force:
            raise OutputError(f"{dest}: already exists (use --force to replace it)")
    for name in names:
        os.replace(os.path.join(tmpdir, name), os.path.join(folder, name))
