"""`sepconv analyze` through typer's CliRunner on small ONNX files built here: exit codes, stdout vs stderr,
formats, atomic --output, bad flags and inputs, golden snapshots, and no torch import for ONNX."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from golden_files import check_golden, normalise
from onnx import TensorProto, helper, numpy_helper
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.cli import analyze as analyze_cmd
from sepconv_cli.cli import app, common
from sepconv_cli.errors import UsageError
from sepconv_cli.render import OutputFormat

ENV = {"COLUMNS": "80", "NO_COLOR": None, "SEPCONV_DEBUG": None}
# tiny net: Conv 3->8 3x3 pad 1 (+bias), Relu, Conv 8->16 3x3 stride 2 pad 1, Conv 16->16 1x1, on 1x3x8x8
CONV1_PARAMS, CONV2_PARAMS, CONV3_PARAMS = 8 * 3 * 9 + 8, 16 * 8 * 9, 16 * 16
CONV1_MACS = 8 * 8 * 8 * 3 * 9
CONV2_MACS = 16 * 4 * 4 * 8 * 9
CONV3_MACS = 16 * 4 * 4 * 16


def _tiny_model(batch="1") -> onnx.ModelProto:
    rng = np.random.default_rng(7)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="/stem/conv/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/stem/act/Relu"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="/body/conv/Conv", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c2", "w3"], ["y"], name="/body/proj/Conv", kernel_shape=[1, 1]),
    ]
    dim = int(batch) if batch.isdigit() else batch
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim, 16, 4, 4])],
        [init("w1", (8, 3, 3, 3)), init("b1", (8,)), init("w2", (16, 8, 3, 3)), init("w3", (16, 16, 1, 1))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny ONNX model in a temporary working directory, addressed by a relative path."""
    onnx.save_model(_tiny_model(), str(tmp_path / "tiny.onnx"))
    monkeypatch.chdir(tmp_path)
    return "tiny.onnx"


def run(*args: str, **env):
    result = CliRunner().invoke(app, ["analyze", *args], env={**ENV, **env})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_json_is_the_default_off_a_terminal(tiny):
    result = run(tiny)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["totals"]["params"] == CONV1_PARAMS + CONV2_PARAMS + CONV3_PARAMS
    macs = {layer["name"]: layer["macs"] for layer in data["layers"]}
    assert macs["/stem/conv/Conv"] == CONV1_MACS
    assert macs["/body/conv/Conv"] == CONV2_MACS
    assert macs["/body/proj/Conv"] == CONV3_MACS
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    names = [c["name"] for c in data["candidates"]]
    assert names == ["/body/conv/Conv", "/stem/conv/Conv"]  # ranked by MACs saved
    body = data["candidates"][0]
    # T=1: depthwise 8*1*9 + pointwise 16*8 (no bias); MACs over the 4x4 output grid
    assert (body["params_separable"], body["macs_separable"]) == (8 * 9 + 16 * 8, 8 * 16 * 9 + 16 * 16 * 8)
    assert 0.0 < body["energy_t1"] <= 1.0
    assert data["excluded"] == [{"name": "/body/proj/Conv", "reason": "1x1 kernel: nothing to separate"}]


def test_table_golden_and_width(tiny):
    result = run(tiny, "--format", "table")
    assert result.exit_code == 0 and result.stderr == ""
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "\x1b[" not in result.stdout
    check_golden("cli_tiny.txt", normalise(result.stdout))


@pytest.mark.parametrize("fmt,suffix", [("json", "json"), ("markdown", "md"), ("csv", "csv")])
def test_other_formats_golden(tiny, fmt, suffix):
    result = run(tiny, "--format", fmt, "--depth", "1", "--sort", "macs")
    assert result.exit_code == 0 and result.stderr == ""
    check_golden(f"cli_tiny_depth1.{suffix}", normalise(result.stdout))


def test_rank_by_and_energy_options_reach_the_planner(tiny):
    data = json.loads(run(tiny, "--rank-by", "params", "--energy", "1.0", "--depthwise-bias").stdout)
    assert data["energy_target"] == 1.0
    stem = next(c for c in data["candidates"] if c["name"] == "/stem/conv/Conv")
    assert stem["params_separable"] == 3 * 9 + 3 + 8 * 3 + 8  # depthwise bias counted
    saved = [c["params"] - c["params_separable"] for c in data["candidates"]]
    assert saved == sorted(saved, reverse=True)


def test_output_file_is_written_atomically(tiny, tmp_path):
    result = run(tiny, "--output", "report.md")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "report.md" in result.stderr
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# sepconv analysis of `tiny.onnx`")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".sepconv-")]


def test_unwritable_output_is_one_line_exit_2(tiny, tmp_path):
    target = tmp_path / "missing" / "out.json"
    result = run(tiny, "-o", str(target))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "cannot write" in result.stderr
    assert not target.exists() and not (tmp_path / "missing").exists()
    result = run(tiny, "-o", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_failed_analysis_leaves_an_existing_output_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.onnx").write_bytes(b"\x00\x01 definitely not a model")
    (tmp_path / "out.json").write_text("keep me")
    result = run("bad.onnx", "-o", "out.json")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "bad.onnx" in result.stderr
    assert (tmp_path / "out.json").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["bad.onnx", "out.json"]


def test_output_onto_the_model_is_refused(tiny, tmp_path):
    before = (tmp_path / "tiny.onnx").read_bytes()
    result = run(tiny, "-o", tiny)
    assert result.exit_code == 2 and "refusing" in result.stderr
    assert (tmp_path / "tiny.onnx").read_bytes() == before


@pytest.mark.parametrize("args,needle", [
    (["--depth", "0"], "--depth"), (["--top", "0"], "--top"), (["--energy", "1.5"], "--energy"),
    (["--input-shape", "x=1xfoo!"], "bad shape"), (["--input-shape", "1x3x8x8", "--input-shape", "x=1x3x8x8"],
                                                   "unnamed"),
])
def test_bad_flags_are_one_line_exit_2(tiny, args, needle):
    result = run(tiny, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and needle in result.stderr


def test_missing_model_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("nope.onnx")
    assert result.exit_code == 2
    assert result.stderr.strip() == "sepconv: error: nope.onnx: no such file"


def test_dynamic_batch_is_per_sample_and_input_shape_pins_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    onnx.save_model(_tiny_model(batch="N"), "dyn.onnx")
    pinned = json.loads(run("dyn.onnx", "--input-shape", "x=2x3x8x8").stdout)
    assert pinned["totals"]["macs"] == 2 * (CONV1_MACS + CONV2_MACS + CONV3_MACS)
    unnamed = json.loads(run("dyn.onnx", "--input-shape", "4x3x8x8").stdout)
    assert unnamed["totals"]["macs"] == 4 * (CONV1_MACS + CONV2_MACS + CONV3_MACS)
    # no flags: a dynamic batch is taken as 1 (per sample), said once in the header and in the JSON
    result = run("dyn.onnx", "-f", "table")
    assert result.exit_code == 0 and "--input-shape" not in result.stderr
    table = result.stdout
    assert "Input    per sample: N=1" in table and "Rows not counted" not in table
    assert f"MACs     {CONV1_MACS + CONV2_MACS + CONV3_MACS:,}" in table
    dynamic = json.loads(run("dyn.onnx").stdout)
    assert dynamic["model"]["assumed_dims"] == {"N": 1} and not dynamic["unknown_rows"]
    assert dynamic["totals"]["macs"] == CONV1_MACS + CONV2_MACS + CONV3_MACS
    assert pinned["model"]["assumed_dims"] == {}


SAMPLE = os.path.join(REPO, "samples", "vgg_cifar.onnx")


@pytest.mark.skipif(not os.path.exists(SAMPLE), reason="samples/vgg_cifar.onnx not generated")
def test_sample_vgg_reads_in_80_columns():
    result = run(SAMPLE, "--format", "table")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "Params   1,186,378 (1.19M)" in result.stdout
    assert "Separable candidates" in result.stdout and "6 at T=1" in result.stdout


def test_help_has_a_worked_example_and_the_conventions():
    result = CliRunner().invoke(app, ["analyze", "--help"], env=ENV)
    assert result.exit_code == 0
    assert "sepconv analyze samples/vgg_cifar.onnx" in result.stdout
    assert "FLOPs = 2 x MACs" in result.stdout
    assert "--rank-by" in result.stdout and "--trust-pickle" in result.stdout


def test_format_choice_and_colour(monkeypatch):
    monkeypatch.setattr(common, "stdout_is_terminal", lambda: True)
    monkeypatch.setattr(analyze_cmd, "stdout_is_terminal", lambda: True)
    assert analyze_cmd._choose_format(None, None) is OutputFormat.TABLE
    assert analyze_cmd._choose_format(None, "r.csv") is OutputFormat.CSV
    assert analyze_cmd._choose_format(None, "r.html") is OutputFormat.HTML
    with pytest.raises(UsageError, match="suffix '.out'"):  # never a silent JSON
        analyze_cmd._choose_format(None, "r.out")
    assert analyze_cmd._choose_format(OutputFormat.MARKDOWN, "r.json") is OutputFormat.MARKDOWN
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert common.use_color(None) is True
    assert common.use_color("file.txt") is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert common.use_color(None) is False
    monkeypatch.setattr(analyze_cmd, "stdout_is_terminal", lambda: False)
    assert analyze_cmd._choose_format(None, None) is OutputFormat.JSON


def test_cli_enums_map_onto_load_options():
    from sepconv_cli.backends.base import LoadOptions

    assert {e.value for e in common.Engine} == {"sepconv", "fvcore"}
    assert common.Device.META.value == LoadOptions().device and common.Engine.SEPCONV.value == LoadOptions().engine


def test_write_atomic_replaces_whole_files_only(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    common.write_atomic(str(target), "new")
    assert target.read_text() == "new"
    common.write_atomic(str(target), b"bytes")
    assert target.read_bytes() == b"bytes"
    assert os.listdir(tmp_path) == ["out.txt"]


NET_PY = '''
import torch.nn as nn


def net(width=4):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 16, 3, padding=1))
'''


def test_pytorch_options_reach_the_loader(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NET_PY)
    meta = run("nets.py:net", "--kwargs", '{"width": 8}', "--input-shape", "1x3x8x8", "-f", "table",
               "--device", "meta")
    assert meta.exit_code == 0, meta.stderr
    assert "(entrypoint, built on meta)" in meta.stdout
    assert "Energy kept needs weights" in meta.stdout  # meta device: no weights, savings only
    params = 8 * 3 * 9 + 8 + 16 * 8 * 9 + 16
    assert f"Params   {params:,}" in meta.stdout
    cpu = json.loads(run("nets.py:net", "--kwargs", '{"width": 8}', "--input-shape", "1x3x8x8",
                         "--device", "cpu").stdout)
    assert cpu["totals"]["params"] == params
    assert all(c["energy_t1"] is not None for c in cpu["candidates"])
    bad = run("nets.py:net", "--kwargs", "{not json")
    assert bad.exit_code == 2 and len(bad.stderr.splitlines()) == 1
