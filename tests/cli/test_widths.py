"""Tables at 60, 80 and 120 columns for `analyze` and `check` (golden files): every line fits, names are
module paths cut in the middle, the bar appears only from 100 columns, and a column that cannot fit is
named in a note."""

from __future__ import annotations

import os
import shutil

import pytest
from golden_files import check_golden, normalise
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.cli import app

WIDTHS = (60, 80, 120)
SAMPLE = os.path.join(REPO, "samples", "vgg_cifar.onnx")


@pytest.fixture
def vgg(tmp_path, monkeypatch):
    """The seed VGG in a temporary working directory, addressed by a relative path."""
    shutil.copy(SAMPLE, tmp_path / "vgg_cifar.onnx")
    monkeypatch.chdir(tmp_path)
    return "vgg_cifar.onnx"


def _run(width: int, *args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(width), "NO_COLOR": None,
                                                      "SEPCONV_DEBUG": None, "GITHUB_STEP_SUMMARY": None})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _fits(text: str, width: int) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long


@pytest.mark.parametrize("width", WIDTHS)
def test_analyze_table_at_width(vgg, width):
    result = _run(width, "analyze", vgg, "--format", "table")
    assert result.exit_code == 0, result.stderr
    _fits(result.stdout, width)
    assert "block3.conv2" in result.stdout and "/block3/conv2/Conv" not in result.stdout
    assert ("█" in result.stdout) is (width >= 100)
    if width < 70:
        assert "Not shown at 60 columns: risk (it reads E1), saved at T" in result.stdout
    check_golden(f"analyze_vgg_{width}.txt", normalise(result.stdout))


@pytest.mark.parametrize("width", WIDTHS)
def test_check_table_at_width(vgg, width):
    baseline = _run(200, "analyze", vgg, "--format", "json", "-o", "baseline.json")
    assert baseline.exit_code == 0, baseline.stderr
    result = _run(width, "check", vgg, "--no-config", "--max-params", "1M", "--max-macs", "200M",
                  "--max-file-size", "5MB", "--min-separable-coverage", "10%", "--baseline", "baseline.json",
                  "--max-growth", "5%")
    assert result.exit_code == 1, result.stderr
    _fits(result.stdout, width)
    assert "FAIL" in result.stdout and "pa…" not in result.stdout
    if width >= 80:
        assert "1.19M, +0.0%" in result.stdout  # growth rows: the baseline figure and the growth
    check_golden(f"check_vgg_{width}.txt", normalise(result.stdout))
