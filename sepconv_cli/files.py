"""Files from and to untrusted places: regular inputs only, bounded reads, outputs that never replace
a device node, a FIFO or a symbolic link.

Inputs: a FIFO given as a model or a config blocks ``open`` forever; ``/dev/zero`` or ``/dev/urandom``
are read until memory runs out. Every input path goes through ``require_regular`` (an ``os.stat`` before
any open) and small text inputs (configs, baselines) through ``read_bounded``, which opens with
``O_NONBLOCK`` (a FIFO swapped in after the check still cannot block), checks the opened file again and
reads at most ``limit`` bytes.

Outputs: ``write_output`` writes a report atomically (a temporary file renamed over the target) when the
target is a regular file or new, through a symbolic link to the file it names (the link stays), and in
place to a character device or a FIFO with a reader (``-o /dev/stdout``, ``-o /dev/null``). Files get the
usual permissions (``0666`` less the umask), never ``mkstemp``'s ``0600``.

A leaf module: errors come back as the caller's ``SepconvError`` class.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

from sepconv_cli.errors import InputError, OutputError, SepconvError

CONFIG_LIMIT = 16 * 1024 * 1024  # bytes read at most from a config or baseline file

# st_mode test -> what the file is, for messages
KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def kind_of(mode: int) -> str | None:
    """What a non-regular file is (``"a FIFO (named pipe)"``), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in KINDS.items() if test(mode)), "not a regular file")


def require_regular(path: str, what: str = "file", error: type[SepconvError] = InputError) -> os.stat_result:
    """``os.stat(path)`` when ``path`` is a regular file (symlinks followed); else ``error`` naming it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None
    kind = kind_of(info.st_mode)
    if kind is not None:
        raise error(f"{path}: is {kind}, expected a regular {what}")
    return info


def _open_regular(path: str, what: str, error: type[SepconvError]) -> int:
    """A read-only descriptor of the regular file ``path``, opened without blocking (a FIFO put in its
    place after ``require_regular`` is refused, never waited on)."""
    require_regular(path, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None
    kind = kind_of(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise error(f"{path}: is {kind}, expected a regular {what}")
    return fd


def _read_fd(path: str, fd: int, size: int, what: str, error: type[SepconvError]) -> bytes:
    try:
        with os.fdopen(fd, "rb") as fh:
            return fh.read(size)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None


def read_head(path: str, size: int, what: str = "file", error: type[SepconvError] = InputError) -> bytes:
    """The first ``size`` bytes of the regular file ``path`` (fewer when it is shorter)."""
    return _read_fd(path, _open_regular(path, what, error), size, what, error)


def read_bounded(path: str, limit: int = CONFIG_LIMIT, what: str = "file",
                 error: type[SepconvError] = InputError) -> bytes:
    """The bytes of the regular file ``path``, refused (``error``) when larger than ``limit`` bytes."""
    data = _read_fd(path, _open_regular(path, what, error), limit + 1, what, error)
    if len(data) > limit:
        raise error(f"{path}: {what} is larger than {limit // (1024 * 1024)} MiB; refusing to read it")
    return data


def file_mode() -> int:
    """Permission bits a new file gets from ``open`` under the current umask (``0666 & ~umask``)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _in_place(path: str, mode: int) -> bool:
    """Whether ``path`` (existing, ``mode`` from ``os.stat``) is written where it is, not replaced:
    a character device or FIFO, or anything reached through ``/proc`` (``/dev/stdout`` -> fd 1)."""
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or os.path.realpath(path).startswith("/proc/")


def write_output(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` without ever replacing a device node, FIFO or symbolic link (see the
    module docstring); ``OutputError`` (one line naming ``path``) when it cannot or must not be written."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise OutputError(f"{path}: is a symbolic link to a missing file; refusing to create its target") from None
        mode = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    if mode is not None and _in_place(path, mode):
        _write_in_place(path, raw, mode)
        return
    kind = None if mode is None else kind_of(mode)
    if kind is not None:
        raise OutputError(f"{path}: is {kind}, expected a file name")
    _replace_atomically(os.path.realpath(path) if os.path.islink(path) else path, raw, shown=path)


def _write_in_place(path: str, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | (os.O_NONBLOCK if stat.S_ISFIFO(mode) else 0) | (os.O_APPEND if stat.S_ISREG(mode) else 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputError(f"{path}: is a FIFO with no reader; refusing to wait for one") from None
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _replace_atomically(path: str, data: bytes, shown: str) -> None:
    """Through a temporary file in ``path``'s folder, renamed over ``path``: no partial file is ever seen."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sepconv-", dir=folder)
    except OSError as exc:
        raise OutputError(f"{shown}: cannot write ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{shown}: cannot write ({exc.strerror or exc})") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
