"""The Python API (``sepconv_cli.analyze/convert/check/load_converted``): the same figures as the CLI,
in-memory models (nn.Module, ModelProto), no torch for ONNX work, the state_dict round trip through the
manifest, and the README's API example run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from repo_paths import REPO
from typer.testing import CliRunner

import sepconv_cli
from sepconv_cli.errors import InputError, UsageError

SAMPLE = os.path.join(REPO, "samples", "vgg_cifar.onnx")
VGG_PARAMS = 1_186_378

NET_PY = '''
import torch.nn as nn


def net(width=8):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 16, 3, padding=1))
'''


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """A module file ``nets.py`` (factory ``net``) importable from the working directory."""
    (tmp_path / "nets.py").write_text(NET_PY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("nets", None)
    return tmp_path


def test_analyze_a_path_matches_the_cli_json():
    report = sepconv_cli.analyze(SAMPLE)
    assert isinstance(report, sepconv_cli.Report) and report.params == VGG_PARAMS
    from sepconv_cli.cli import app

    cli = json.loads(CliRunner().invoke(app, ["analyze", SAMPLE, "--format", "json"]).stdout)
    assert json.loads(json.dumps(report.to_dict())) == cli
    view = report.to_dict(depth=1, sort="macs", top=2)["view"]
    assert view["top"] == 2 and len(view["candidates"]) == 2
    text = repr(report)
    assert "params=1,186,378" in text and "input float32[1x3x32x32]" in text and len(text) < 200
    assert "Layers of" in report.render("table", width=80) and report.render("html").startswith("<!DOCTYPE html>")


def test_analyze_a_model_proto_without_a_file_and_without_torch():
    code = ("import sys, onnx, sepconv_cli\n"
            f"model = onnx.load({SAMPLE!r})\n"
            "report = sepconv_cli.analyze(model)\n"
            "assert report.model.path == '<onnx.ModelProto>' and report.model.file_size == 0\n"
            f"assert report.params == {VGG_PARAMS} and len(report.candidates) == 6\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'File     n/a' in report.render('table')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_importing_the_package_imports_no_framework():
    code = ("import sys, sepconv_cli\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'rich') if m in sys.modules]\n"
            "assert not heavy, heavy\nassert callable(sepconv_cli.analyze)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert set(sepconv_cli.__all__) >= {"analyze", "convert", "check", "load_converted", "Report", "Conversion"}


def test_analyze_an_in_memory_module(nets):
    import nets as module_file
    import torch

    model = module_file.net().train()
    report = sepconv_cli.analyze(model, input_shape=(1, 3, 16, 16))
    assert model.training  # the caller's mode is restored
    assert report.model.path == "<Sequential>" and report.model.format == "module"
    assert report.macs == 8 * 16 * 16 * 3 * 9 + 16 * 16 * 16 * 8 * 9
    assert all(c.energy_t1 is not None for c in report.candidates)  # real weights: energies
    by_entry = sepconv_cli.analyze("nets:net", "1x3x16x16")
    assert (by_entry.params, by_entry.macs) == (report.params, report.macs)
    assert by_entry.model.device == "cpu"  # fits in memory: built on the cpu by default
    named = sepconv_cli.analyze(model, input_shape={"input": (1, 3, 16, 16)})
    assert named.macs == report.macs
    assert sepconv_cli.analyze(model, input_shape="1x3x8x8").macs * 4 == report.macs
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 16, 16, 16)


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="unknown option"):
        sepconv_cli.analyze(SAMPLE, energie=0.9)
    with pytest.raises(UsageError, match="must be a path"):
        sepconv_cli.analyze(42)
    with pytest.raises(InputError, match="no such file"):
        sepconv_cli.analyze("missing.onnx")


def test_check_budgets_and_growth(tmp_path):
    result = sepconv_cli.check(SAMPLE, {"max-params": "1.5M", "max_macs": "100M"})
    assert isinstance(result, sepconv_cli.CheckResult) and not result.ok
    assert [(r.metric, r.verdict) for r in result.results] == [("max-params", "pass"), ("max-macs", "FAIL")]
    assert result.to_dict()["failed"] == 1 and "1 of 2 budgets exceeded" in repr(result)
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps(sepconv_cli.analyze(SAMPLE).to_dict()))
    grown = sepconv_cli.check([SAMPLE, str(tmp_path / "gone.onnx")], {}, baseline=str(baseline), max_growth="5%")
    growth = [r for r in grown.results if r.metric == "growth-params"]
    assert growth[0].passed and growth[0].baseline == VGG_PARAMS and growth[0].growth == 0.0
    assert [e.model for e in grown.errors] == [str(tmp_path / "gone.onnx")]


def test_convert_plans_then_writes(tmp_path):
    plan = sepconv_cli.convert(SAMPLE, rank=1)
    assert plan.output is None and len(plan.plan.layers) == 6 and plan.after is None
    assert "planned" in repr(plan)
    out = tmp_path / "vgg_t1.onnx"
    done = sepconv_cli.convert(SAMPLE, out, rank=1, verify=False)
    assert isinstance(done, sepconv_cli.Conversion) and out.exists()
    assert done.after.params == 174_821  # the tutorial's Keras figure (DESIGN §6)
    data = done.to_dict()
    assert json.loads(json.dumps(data)) == data and "converted" in repr(done) or "->" in repr(done)


def test_load_converted_round_trips_a_state_dict(nets):
    import nets as module_file
    import torch

    out = nets / "net.sep.pt"
    sepconv_cli.convert("nets:net", out, input_shape=(1, 3, 16, 16), full_rank=True, verify=False)
    manifest = str(out) + ".manifest.json"
    rebuilt = sepconv_cli.load_converted("nets:net", manifest, out)
    assert not rebuilt.training
    again = sepconv_cli.load_converted(module_file.net, manifest, out)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), again(x))
    # the manifest as a whole (as the README words it) works with apply_manifest too
    from sepconv_cli.backends.torch.modules import apply_manifest

    structure = apply_manifest(module_file.net(), json.load(open(manifest)))
    structure.load_state_dict(torch.load(out, weights_only=True))
    with pytest.raises(InputError, match="manifest is not JSON"):
        sepconv_cli.load_converted("nets:net", out, out)
    report = nets / "report.json"
    report.write_text(json.dumps(sepconv_cli.analyze("nets:net", "1x3x16x16").to_dict()))
    with pytest.raises(InputError, match="not a sepconv convert manifest"):
        sepconv_cli.load_converted("nets:net", report, out)


def _readme_api_example() -> str:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_api_example_runs_as_written(tmp_path):
    """The example runs from a folder holding the repository's samples, as a user's clone would."""
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "vgg_cifar.onnx").write_bytes(open(SAMPLE, "rb").read())
    done = subprocess.run([sys.executable, "-c", _readme_api_example()], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Report('samples/vgg_cifar.onnx' (onnx)" in done.stdout and "174821" in done.stdout
    assert (tmp_path / "report.html").exists() and (tmp_path / "vgg_t1.onnx").exists()
