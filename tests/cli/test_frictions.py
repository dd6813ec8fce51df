"""The small frictions of issue 15, one test each: the input signature in the header, one "did you mean"
and ``-V``, no "budgets hold" notice for a failing model, JUnit classnames without path dots, growth rows
with their baseline, the BatchNorm-folding note only with ``--verbose``, entry points built on the CPU when
their weights fit (and saying so), n/a for sizes of sources without a file, and the ``-o`` suffix picking
the format for every command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli import __version__
from sepconv_cli.cli import app
from sepconv_cli.core.checks import BudgetOutcome, CheckResult
from sepconv_cli.core.records import ModelInfo
from sepconv_cli.render import text as tx
from sepconv_cli.render.check import CheckFormat, CheckRenderOptions, check_renderer_for

SAMPLE = os.path.join(REPO, "samples", "vgg_cifar.onnx")
ENV = {"COLUMNS": "100", "NO_COLOR": None, "SEPCONV_DEBUG": None, "GITHUB_STEP_SUMMARY": None}
NET_PY = '''
import torch.nn as nn


def net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3))
'''


def run(*args: str):
    result = CliRunner().invoke(app, list(args), env=ENV)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working directory holding the seed VGG (``vgg.onnx``) and an entry point module (``nets:net``)."""
    shutil.copy(SAMPLE, tmp_path / "vgg.onnx")
    (tmp_path / "nets.py").write_text(NET_PY)
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("nets", None)
    return tmp_path


def test_input_signature_in_the_header(work):
    table = run("analyze", "vgg.onnx", "-f", "table").stdout
    assert table.splitlines()[:2] == ["Layers of vgg.onnx (onnx)", "Inputs: input float32[1x3x32x32]"]
    assert "Inputs: `input float32[1x3x32x32]`" in run("analyze", "vgg.onnx", "-f", "markdown").stdout


def test_one_did_you_mean_and_a_short_version_flag():
    done = subprocess.run([sys.executable, "-m", "sepconv_cli", "analyse", "x.onnx"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("Did you mean") == 1 and "'analyze'" in done.stderr
    short = run("-V")
    assert short.exit_code == 0 and short.stdout.strip() == f"sepconv {__version__}" == run("--version").stdout.strip()


MIXED = CheckResult((
    BudgetOutcome("models/bad.v2.onnx", "max-params", 2e6, 1e6, False, "max-params: 2M > 1M"),
    BudgetOutcome("models/bad.v2.onnx", "max-macs", 1e6, 2e6, True, "max-macs: 1M <= 2M"),
    BudgetOutcome("models/good.onnx", "max-params", 5e5, 1e6, True, "max-params: 500k <= 1M"),
))


def test_no_budgets_hold_notice_for_a_failing_model():
    lines = check_renderer_for(CheckFormat.GITHUB)(MIXED, CheckRenderOptions()).splitlines()
    notices = [line for line in lines if line.startswith("::notice") and "budgets hold" in line]
    assert len(notices) == 1 and "good.onnx" in notices[0]
    assert any(line.startswith("::error") and "bad.v2.onnx" in line for line in lines)


def test_junit_classnames_carry_no_dots_from_paths():
    root = ET.fromstring(check_renderer_for(CheckFormat.JUNIT)(MIXED, CheckRenderOptions()).split("\n", 2)[2])
    classes = {case.get("classname") for case in root.iter("testcase")}
    assert classes == {"sepconv.check.models_bad_v2_onnx", "sepconv.check.models_good_onnx"}
    assert {suite.get("name") for suite in root.iter("testsuite")} == {"models/bad.v2.onnx", "models/good.onnx"}


GROWTH = CheckResult((BudgetOutcome("m.onnx", "growth-params", 1_230_000, 1_200_000, False,
                                    "growth-params: 1.23M > 1.2M", baseline=1_150_000),))


@pytest.mark.parametrize("fmt,expected", [(CheckFormat.TABLE, "1.15M, +7.0%"), (CheckFormat.MARKDOWN, "1.15M, +7.0%"),
                                          (CheckFormat.CSV, "1150000,0.069565"), (CheckFormat.HTML, "1.15M, +7.0%")])
def test_growth_rows_show_the_baseline_and_the_growth(fmt, expected):
    assert expected in check_renderer_for(fmt)(GROWTH, CheckRenderOptions(width=100))


def test_growth_rows_in_json():
    row = json.loads(check_renderer_for(CheckFormat.JSON)(GROWTH, CheckRenderOptions()))["results"][0]
    assert row["baseline"] == 1_150_000 and abs(row["growth"] - 80_000 / 1_150_000) < 1e-12


def test_batchnorm_note_only_with_verbose(work):
    quiet = run("analyze", "nets:net", "--input-shape", "1x3x8x8", "-f", "json")
    assert quiet.exit_code == 0, quiet.stderr
    assert "BatchNorm" not in quiet.stderr and "note:" not in quiet.stderr
    loud = run("analyze", "nets:net", "--input-shape", "1x3x8x8", "-f", "json", "-v")
    assert "sepconv: note: params" in loud.stderr and "after folding BatchNorm" in loud.stderr
    assert any("after folding BatchNorm" in n for n in json.loads(quiet.stdout)["notes"])


def test_entry_points_are_built_on_the_cpu_when_they_fit_and_say_so(work):
    auto = run("analyze", "nets:net", "--input-shape", "1x3x8x8", "-f", "table", "-v")
    assert "Layers of nets:net (entrypoint, built on cpu)" in auto.stdout
    assert "built on the cpu: its weights" in auto.stderr
    assert "Energy kept needs weights" not in auto.stdout  # real weights: energies and risks
    meta = run("analyze", "nets:net", "--input-shape", "1x3x8x8", "-f", "table", "--device", "meta")
    assert "(entrypoint, built on meta)" in meta.stdout and "meta device" in meta.stderr


def test_weights_that_do_not_fit_are_counted_on_meta():
    import torch.nn as nn

    from sepconv_cli.backends.torch.device import choose, weight_bytes

    model = nn.Linear(1000, 1000, device="meta")
    need = weight_bytes(model)
    assert need == 4 * (1000 * 1000 + 1000)
    assert choose(model, available=4 * need).device == "cpu"
    tight = choose(model, available=need)
    assert tight.device == "meta" and tight.warn and "--device cpu" in tight.reason


def test_sources_without_a_file_read_n_a(work):
    table = run("analyze", "nets:net", "--input-shape", "1x3x8x8", "-f", "table").stdout
    assert "File     n/a" in table
    assert "| file size (bytes) | n/a |" in run("analyze", "nets:net", "--input-shape", "1x3x8x8", "-f", "markdown").stdout
    none, some = ModelInfo("pkg:net", "entrypoint"), ModelInfo("m.onnx", "onnx", file_size=2048)
    assert tx.size_change(none, some) == "n/a -> 2 KiB"
    assert tx.size_change(some, some) == "2 KiB -> 2 KiB (1.00x)"


@pytest.mark.parametrize("command,suffix,marker", [
    (("analyze", "vgg.onnx"), ".html", "<!DOCTYPE html>"), (("analyze", "vgg.onnx"), ".csv", "section,name"),
    (("analyze", "vgg.onnx"), ".md", "# sepconv analysis"), (("analyze", "vgg.onnx"), ".json", '"schema_version"'),
    (("check", "vgg.onnx", "--no-config", "--max-params", "2M"), ".html", "<!DOCTYPE html>"),
    (("check", "vgg.onnx", "--no-config", "--max-params", "2M"), ".csv", "model,metric"),
    (("check", "vgg.onnx", "--no-config", "--max-params", "2M"), ".md", "## sepconv check"),
    (("diff", "vgg.onnx", "vgg.onnx"), ".html", "<!DOCTYPE html>"), (("diff", "vgg.onnx", "vgg.onnx"), ".md", "## sepconv diff"),
])
def test_output_suffix_picks_the_format_for_every_command(work, command, suffix, marker):
    result = run(*command, "-o", "out" + suffix)
    assert result.exit_code == 0, result.stderr
    assert (work / f"out{suffix}").read_text().lstrip().startswith(marker) or marker in (work / f"out{suffix}").read_text()


@pytest.mark.parametrize("command", [("analyze", "vgg.onnx"), ("check", "vgg.onnx", "--no-config", "--max-params", "2M"),
                                     ("diff", "vgg.onnx", "vgg.onnx")])
def test_an_unknown_suffix_is_refused_not_guessed(work, command):
    result = run(*command, "-o", "report.yaml")
    assert result.exit_code == 2 and "suffix '.yaml'" in result.stderr and "--format" in result.stderr
    assert not (work / "report.yaml").exists()
