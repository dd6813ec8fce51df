"""Shared test setup: this folder on sys.path (builders, golden files) and the ``--update-golden`` option."""

from __future__ import annotations

import os

import pytest
from golden_files import UPDATE_ENV


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden`` rewrites golden files from the current output instead of comparing."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files from the current output")


def pytest_configure(config: pytest.Config) -> None:
    """Hand ``--update-golden`` to ``golden_files`` (which also honours its environment variable)."""
    if config.getoption("--update-golden"):
        os.environ[UPDATE_ENV] = "1"
