"""`convert --report FILE`: the conversion (or the sweep's frontier) written in the format the suffix
names; an unknown suffix is refused before anything is converted."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.cli import app

SAMPLE = os.path.join(REPO, "samples", "vgg_cifar.onnx")


@pytest.fixture
def vgg(tmp_path, monkeypatch):
    shutil.copy(SAMPLE, tmp_path / "vgg.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(*args: str):
    result = CliRunner().invoke(app, ["convert", *args], env={"COLUMNS": "100", "SEPCONV_DEBUG": None})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_html_and_json_reports_of_a_conversion(vgg):
    done = _run("vgg.onnx", "-o", "t1.onnx", "--rank", "1", "--no-verify", "--report", "conv.html")
    assert done.exit_code == 0, done.stderr
    page = (vgg / "conv.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="before-after"' in page and 'id="plan"' in page
    assert page.count('class="bar"') >= 24 and "<script" not in page  # two bars per column per split layer
    again = _run("vgg.onnx", "-o", "t1.onnx", "--rank", "1", "--no-verify", "--force", "--report", "conv.json")
    assert again.exit_code == 0 and json.loads((vgg / "conv.json").read_text())["schema_version"] == 1


def test_sweep_report_draws_the_frontier(vgg):
    # budgets in MACs: which plans the sweep builds does not hang on timings of a busy machine
    done = _run("vgg.onnx", "--sweep", "--sweep-points", "2", "--sweep-metric", "macs", "--report", "sweep.html")
    assert done.exit_code == 0, done.stderr
    page = (vgg / "sweep.html").read_text()
    assert 'id="frontier"' in page and 'class="chart frontier"' in page and page.count("<circle") == 2


def test_unknown_report_suffix_is_refused_before_converting(vgg):
    done = _run("vgg.onnx", "-o", "t1.onnx", "--rank", "1", "--report", "conv.yaml")
    assert done.exit_code == 2 and "suffix '.yaml'" in done.stderr
    assert not (vgg / "t1.onnx").exists() and not (vgg / "conv.yaml").exists()
