"""`sepconv convert` toward a goal: budgets met when feasible, unreachable ones reported, conflicting flags
refused, the sweep writes nothing, and the reported end-to-end error equals an independent recomputation."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from convert_builders import ConvCase, conv_model, vgg_cifar
from typer.testing import CliRunner

from sepconv_cli.backends.registry import load
from sepconv_cli.calibration.solve import split_samples
from sepconv_cli.cli import app
from sepconv_cli.pipeline.convert_goal import MEASURE_SAMPLES

RUNNER = CliRunner()


def _run(*args: str):
    return RUNNER.invoke(app, ["convert", *args], env={"COLUMNS": "120"})


@pytest.fixture(scope="module")
def vgg(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vgg") / "vgg.onnx"
    onnx.save(vgg_cifar(), str(path))
    return str(path)


def _json(result) -> dict:
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("target", ["4x", "25%", "30M"])
@pytest.mark.slow
def test_mac_budget_is_met_and_the_file_agrees(vgg, tmp_path, target):
    out = tmp_path / "m.onnx"
    data = _json(_run(vgg, "-o", str(out), "--target-macs", target, "--format", "json"))
    before = load(vgg).report.macs
    budget = {"4x": before / 4, "25%": before / 4, "30M": 30e6}[target]
    written = load(str(out)).report.macs
    assert data["goal"]["met"] and written <= budget
    assert data["totals"]["after"]["macs"] == written
    chosen = data["goal"]["trials"][data["goal"]["chosen"]]
    assert chosen["macs"] == written and chosen["met"]
    assert data["goal"]["kind"] == "budget" and data["goal"]["metric"] == "macs"


@pytest.mark.slow
def test_param_budget(vgg, tmp_path):
    out = tmp_path / "p.onnx"
    data = _json(_run(vgg, "-o", str(out), "--target-params", "3x", "--format", "json"))
    assert data["goal"]["met"]
    assert load(str(out)).report.params <= load(vgg).report.params / 3


def test_unreachable_target_says_how_close_and_exits_1(vgg, tmp_path):
    out = tmp_path / "u.onnx"
    result = _run(vgg, "-o", str(out), "--target-macs", "50x")
    assert result.exit_code == 1
    assert "no plan reaches --target-macs 50x" in result.stderr and "of the original" in result.stderr
    assert out.exists()  # the best plan found is written, like a tolerance miss


@pytest.mark.parametrize("flags", [
    ["--rank", "1", "--target-macs", "2x"],
    ["--energy", "0.9", "--max-output-error", "0.1"],
    ["--target-macs", "2x", "--target-params", "2x"],
    ["--target-macs", "2x", "--max-output-error", "0.1", "--calibrate", "x.npz"],
    ["--max-output-error", "0.1"],
    ["--target-macs", "0.5x"],
    ["--target-latency", "5M"],
    ["--threads", "0"],
])
def test_conflicting_or_bad_goal_flags_are_usage_errors(vgg, tmp_path, flags):
    result = _run(vgg, "-o", str(tmp_path / "o.onnx"), *flags)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_default_plan_is_data_free_and_says_so(vgg, tmp_path):
    out = tmp_path / "d.onnx"
    result = _run(vgg, "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert "goal: default: cheapest plan that is not slower" in result.stderr
    assert "data-free" in result.stderr


@pytest.mark.slow
def test_sweep_writes_nothing_and_reports_a_monotone_budget_list(vgg, tmp_path):
    result = _run(vgg, "--sweep", "--sweep-metric", "macs", "--sweep-points", "3", "--format", "json")
    data = _json(result)
    budgets = [p["budget"] for p in data["points"]]
    assert budgets == sorted(budgets, reverse=True) and 1 <= len(budgets) <= 3
    for point in data["points"]:
        assert point["macs"] <= point["budget"]
    assert data["metric"] == "macs"
    table = _run(vgg, "--sweep", "--sweep-metric", "macs", "--sweep-points", "2")
    assert table.exit_code == 0 and "budget" in table.stdout and "speed-up" in table.stdout


def test_sweep_refuses_an_output_and_a_goal(vgg, tmp_path):
    assert _run(vgg, "--sweep", "-o", str(tmp_path / "x.onnx")).exit_code == 2
    assert _run(vgg, "--sweep", "--target-macs", "2x").exit_code == 2


def _outputs(path: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def test_reported_end_to_end_error_equals_an_independent_recomputation(tmp_path):
    source = tmp_path / "c.onnx"
    onnx.save(conv_model(ConvCase(cin=8, cout=16, spatial=(12, 12), bn=True)), str(source))
    x = np.random.default_rng(1).standard_normal((40, 8, 12, 12)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    out = tmp_path / "o.onnx"
    data = _json(_run(str(source), "-o", str(out), "--target-macs", "2x", "--calibrate",
                      str(tmp_path / "calib.npz"), "--input-shape", "x=1x8x12x12", "--format", "json"))
    chosen = data["goal"]["trials"][data["goal"]["chosen"]]
    _, held = split_samples(len(x), 0.25, 0)
    sample = x[held[:MEASURE_SAMPLES]]
    a, b = _outputs(str(source), sample).astype(np.float64), _outputs(str(out), sample).astype(np.float64)
    assert chosen["measured_error"] == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(a), rel=1e-4)
