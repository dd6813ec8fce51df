"""Hostile input through the command line: poisoned ``.pt2`` archives are refused by analyze, check and
convert with one stderr line and exit 2, and their payloads never run (the marker file never appears)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pt2_poison import VARIANTS, clean_archive
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.cli import app

ENV = {"COLUMNS": "120", "NO_COLOR": "1", "GITHUB_STEP_SUMMARY": None}
COMMANDS = {
    "analyze": lambda path, out: ["analyze", path, "--format", "json"],
    "check": lambda path, out: ["check", path, "--max-params", "1G", "--no-config"],
    "convert": lambda path, out: ["convert", path, "-o", str(out / "out.pt2"), "--rank", "1"],
}


@pytest.fixture(scope="module")
def clean() -> bytes:
    return clean_archive(dynamic=True)


def _poisoned(tmp_path, clean: bytes, variant: str) -> tuple[str, str]:
    marker = str(tmp_path / "marker")
    path = tmp_path / f"{variant}.pt2"
    path.write_bytes(VARIANTS[variant](clean, marker))
    return str(path), marker


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_poisoned_archives_are_refused_and_never_run(tmp_path, clean, variant, command):
    path, marker = _poisoned(tmp_path, clean, variant)
    result = CliRunner(env=ENV).invoke(app, COMMANDS[command](path, tmp_path))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sepconv: error: "), result.stderr
    assert "--trust-pickle" in lines[0] and "archive member" in lines[0]
    assert not os.path.exists(marker)
    assert not (tmp_path / "out.pt2").exists()


def test_clean_archive_still_loads(tmp_path, clean):
    path = tmp_path / "clean.pt2"
    path.write_bytes(clean)
    result = CliRunner(env=ENV).invoke(app, ["analyze", str(path), "--format", "json"])
    assert result.exit_code == 0, result.stderr


def test_poisoned_archive_in_a_real_process(tmp_path, clean):
    """Exactly one stderr line from a real process (library logs and warnings included)."""
    path, marker = _poisoned(tmp_path, clean, "sample_inputs")
    done = subprocess.run([sys.executable, "-m", "sepconv_cli", "analyze", path], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "data/sample_inputs/model.pt" in done.stderr
    assert not os.path.exists(marker)
