"""Library warnings never add lines to a command's stderr: a failure is exactly one line, even when numpy,
onnx or torch warn on the way (in the command's thread or in a worker thread)."""

from __future__ import annotations

import sys
import threading
import warnings

import numpy as np
import pytest
import typer

from sepconv_cli.cli.common import handle_errors
from sepconv_cli.errors import InputError


def _to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _noisy() -> None:
    warnings.warn("something deprecated", UserWarning, stacklevel=1)
    np.float64(1.0) / np.float64(0.0)  # numpy's RuntimeWarning: divide by zero
    worker = threading.Thread(target=lambda: np.log(np.zeros(1)))  # and one from another thread
    worker.start()
    worker.join()
    raise InputError("m.onnx: broken")


def test_a_failure_is_one_line_whatever_the_libraries_say(capsys, monkeypatch):
    monkeypatch.delenv("SEPCONV_DEBUG", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as strict as a fresh process, stricter in fact
        warnings.showwarning = _to_stderr  # as a process shows them (pytest would only record them)
        with pytest.raises(typer.Exit) as exited:
            handle_errors(_noisy)()
    assert exited.value.exit_code == 2
    assert capsys.readouterr().err.splitlines() == ["sepconv: error: m.onnx: broken"]


def test_debug_mode_keeps_the_warnings(monkeypatch):
    monkeypatch.setenv("SEPCONV_DEBUG", "1")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(typer.Exit):
            handle_errors(_noisy)()
    assert any(issubclass(w.category, UserWarning) for w in seen)
