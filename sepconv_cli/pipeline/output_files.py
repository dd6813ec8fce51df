"""Output files of `convert`: refuse an output that cannot or must not be written before any work,
report any OSError while writing as a one-line OutputError, and move the finished files into place.

A converted model is a set of regular files (the model, its manifest, maybe external data), moved into
place by rename: so an output, or a file beside it, that is a device node, a FIFO or a symbolic link is
refused rather than replaced by a regular file. Published files get the usual permissions (``0666`` less
the umask), whatever mode the writer gave them in the staging folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from sepconv_cli.errors import OutputError
from sepconv_cli.files import file_mode, kind_of


def _refuse_special(path: str) -> None:
    """OutputError when ``path`` is a symbolic link or exists as anything but a regular file."""
    if os.path.islink(path):
        raise OutputError(f"{path}: is a symbolic link; give the path of the file itself "
                          "(convert never replaces a link with a file)")
    if os.path.lexists(path):
        kind = kind_of(os.stat(path).st_mode)
        if kind is not None:
            raise OutputError(f"{path}: is {kind}; convert writes regular files (the model and its manifest)")


def check_output(source: str, output: str | None, force: bool) -> None:
    """OutputError when ``output`` is missing, is the input, exists without ``force``, or cannot be written."""
    if not output:
        raise OutputError("no output path: give -o OUT (or --dry-run)")
    if os.path.exists(source) and os.path.realpath(source) == os.path.realpath(output):
        raise OutputError(f"{output}: is the input model; refusing to overwrite it")
    if os.path.isdir(output):
        raise OutputError(f"{output}: is a directory")
    _refuse_special(output)
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
    """Move every file of ``tmpdir`` beside ``output`` with the usual permissions; the model file goes last."""
    folder = os.path.dirname(os.path.abspath(output))
    names = sorted(os.listdir(tmpdir), key=lambda n: n == os.path.basename(output))
    for name in names:
        dest = os.path.join(folder, name)
        _refuse_special(dest)
        if os.path.exists(dest) and not force:
            raise OutputError(f"{dest}: already exists (use --force to replace it)")
    mode = file_mode()
    for name in names:
        os.chmod(os.path.join(tmpdir, name), mode)
        os.replace(os.path.join(tmpdir, name), os.path.join(folder, name))
