"""`sepconv analyze MODEL --explain NAME|GLOB`: each matching row's MACs formula with its operands, and
which inputs count as params and why; JSON with --format json; a pattern matching nothing is exit 2."""

from __future__ import annotations

import json

import numpy as np
from onnx import helper, numpy_helper
from onnx_builders import conv_model, model, save, vinfo, weight
from typer.testing import CliRunner

from sepconv_cli.cli import app

ENV = {"COLUMNS": "100", "NO_COLOR": "1"}


def run(*args):
    return CliRunner(env=ENV).invoke(app, ["analyze", *args])


def test_explain_a_conv_by_name(tmp_path):
    path = save(conv_model(("N", 64, 56, 56), (64, 64, 3, 3), pads=[1, 1, 1, 1]), tmp_path)
    result = run(path, "--explain", "/net/conv/Conv")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "/net/conv/Conv (Conv)"
    assert lines[1] == "  MACs = N·Cout·Hout·Wout·(Cin/g)·kh·kw = 1·64·56·56·(64/1)·3·3 = 115,605,504"
    assert "    w  64x64x3x3  param, 36,864 elements here (conv weight; learnable)" in lines
    assert "    b  64  param, 64 elements here (conv bias; learnable)" in lines
    assert "Per sample: N=1 (a dynamic batch is taken as 1; --input-shape overrides)." in lines


def test_explain_a_glob_in_json_says_what_is_config(tmp_path):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest", name="/up/Resize"),
             helper.make_node("Conv", ["r", "w"], ["y"], name="/up/conv/Conv")]
    path = save(model(nodes, [vinfo("x", (1, 3, 4, 4))], [vinfo("y", None)], [scales, weight("w", (2, 3, 1, 1))]),
                tmp_path)
    rows = json.loads(run(path, "--explain", "/up/*", "-f", "json").stdout)
    assert [r["name"] for r in rows] == ["/up/Resize", "/up/conv/Conv"]
    resize = {o["name"]: (o["kind"], o["role"]) for o in rows[0]["operands"]}
    assert resize == {"x": ("activation", "Resize input 0"), "scales": ("config", "Resize scales")}
    assert rows[1]["formula"] == "MACs = N·Cout·Hout·Wout·(Cin/g)·kh·kw = 1·2·8·8·(3/1)·1·1 = 384"


def test_explain_matching_nothing_is_a_usage_error(tmp_path):
    path = save(conv_model((1, 3, 8, 8), (4, 3, 3, 3)), tmp_path)
    result = run(path, "--explain", "*nothing*")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "matches no row" in result.stderr
