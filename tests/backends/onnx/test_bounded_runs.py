"""Runs of an untrusted graph are bounded: predicted memory above ``--max-memory`` is refused before the
run, the allocator is capped at run time, ``--run-timeout`` stops a run that would go on for ages, a stop
signal ends a run at once, and onnxruntime's own logs never reach stderr. Each failure is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from hostile_onnx import X_SHAPE, bounded_bomb, bounded_loops, conv_model
from onnx import TensorProto as T
from onnx import helper
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.backends.limits import RunLimits, RunRefused, active, bounded
from sepconv_cli.backends.onnx.memory import peak_activation_bytes, predicted_bytes
from sepconv_cli.backends.onnx.rewriter import BACKEND
from sepconv_cli.backends.onnx.session import BoundedSession, make_session
from sepconv_cli.cli import app

ENV = {"COLUMNS": "120", "NO_COLOR": "1"}
FEED = {"x": np.zeros(X_SHAPE, np.float32)}


def _save(model: onnx.ModelProto, folder, name: str = "model.onnx") -> str:
    path = os.path.join(str(folder), name)
    onnx.save_model(model, path)
    return path


def _convert(tmp_path, model: onnx.ModelProto, *flags: str):
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner(env=ENV).invoke(app, ["convert", _save(model, tmp_path), "-o", str(out / "m.onnx"),
                                             "--rank", "1", *flags])
    return result, out


def _one_error_line(result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sepconv: error: "), result.stderr
    return lines[0]


@pytest.mark.slow
def test_thirty_nested_loops_are_stopped_by_the_run_timeout(tmp_path):
    result, out = _convert(tmp_path, bounded_loops(30), "--run-timeout", "1")
    line = _one_error_line(result)
    assert "model.onnx" in line and "longer than 1 s" in line and "--run-timeout" in line
    assert os.listdir(out) == []


def test_a_constant_allocation_bomb_is_refused_from_its_predicted_memory(tmp_path):
    result, out = _convert(tmp_path, bounded_bomb(65536))
    line = _one_error_line(result)
    assert "would hold about 16 GiB" in line and "--max-memory" in line
    assert os.listdir(out) == []


def test_an_allocation_bomb_computed_from_the_data_is_stopped_by_the_allocator_cap(tmp_path):
    result, out = _convert(tmp_path, bounded_bomb(65536, from_data=True), "--max-memory", "256MiB")
    line = _one_error_line(result)
    assert "needed more than 256 MiB" in line and "--max-memory" in line
    assert os.listdir(out) == []


def test_the_run_limit_flags_are_checked(tmp_path):
    path = _save(conv_model(), tmp_path)
    for flags, word in ((["--max-memory", "lots"], "--max-memory"), (["--run-timeout", "0"], "--run-timeout"),
                        (["--run-timeout", "inf"], "--run-timeout")):
        result = CliRunner(env=ENV).invoke(app, ["convert", path, "-o", str(tmp_path / "o.onnx"), *flags])
        assert word in _one_error_line(result)


def test_an_ordinary_conversion_runs_within_the_default_limits(tmp_path):
    result, out = _convert(tmp_path, conv_model())
    assert result.exit_code == 0, result.stderr
    assert sorted(os.listdir(out)) == ["m.onnx", "m.onnx.manifest.json"]
    assert active() == RunLimits()  # the command's limits are gone once it ends


def test_limits_nest_and_reach_the_runner():
    with bounded(RunLimits(memory=2**20, seconds=5)) as outer:
        with bounded(RunLimits(memory=2**30)):
            assert active().memory == 2**30
        assert active() == outer
        with pytest.raises(RunRefused, match="would hold about"):
            BACKEND.runner(bounded_bomb(4096))(FEED)  # 64 MiB of ones against a 1 MiB limit
    assert active() == RunLimits()


def test_predicted_memory_is_the_peak_of_live_values_plus_the_weights():
    # x -> Relu -> a -> Relu -> b -> Relu -> c: at most two 4 KiB values are alive at once.
    nodes = [helper.make_node("Relu", [i], [o]) for i, o in (("x", "a"), ("a", "b"), ("b", "c"))]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", T.FLOAT, ["N", 1024])],
                              [helper.make_tensor_value_info("c", T.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert predicted_bytes(model, {"x": ((1, 1024), T.FLOAT)}) == 2 * 4096
    assert predicted_bytes(model, {"x": ((8, 1024), T.FLOAT)}) == 2 * 8 * 4096
    shapes = {"x": (1, 1024), "a": (1, 1024), "b": (1, 1024), "c": (1, 1024)}
    dtypes = dict.fromkeys(shapes, T.FLOAT)
    assert peak_activation_bytes(graph, shapes, dtypes, {"x": ((1, 1024), T.FLOAT)}) == 2 * 4096
    weighted = conv_model()
    assert predicted_bytes(weighted, {"x": (X_SHAPE, T.FLOAT)}) >= 16 * 8 * 9 * 4


def test_a_bounded_session_checks_each_new_input_shape_once():
    model = conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.ClearField("shape")
    session = make_session(model, limits=RunLimits(memory=2**20))
    assert isinstance(session, BoundedSession)
    assert session.run(None, FEED)[0].shape == (1, 16, 16, 16)
    with pytest.raises(RunRefused, match="at batch 64"):
        session.run(None, {"x": np.zeros((64, 8, 16, 16), np.float32)})  # 64 x 16 KiB in and 64 x 32 KiB out


@pytest.mark.slow
def test_stop_signal_ends_a_run_at_once_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = _save(bounded_loops(30), tmp_path)
    command = [sys.executable, "-m", "sepconv_cli", "convert", path, "-o", str(out / "m.onnx"), "--rank", "1"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **ENV})
    deadline = time.monotonic() + 120
    while not any(n.startswith(".sepconv-") for n in os.listdir(out)) and proc.poll() is None:
        assert time.monotonic() < deadline, "convert never reached its run"
        time.sleep(0.1)
    time.sleep(1.0)  # verification is running the loops now
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)  # a guard against a hang, not a timing
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.decode().strip().splitlines() == ["sepconv: terminated (SIGTERM)"]
    assert os.listdir(out) == []


@pytest.mark.slow
def test_runtime_errors_print_no_onnxruntime_log_lines(tmp_path):
    # A Reshape to an impossible size fails inside onnxruntime: its C++ logger would print in colour.
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Cast", ["m"], ["mi"], to=T.INT64),
             helper.make_node("Reshape", ["mi", "s"], ["r"]),
             helper.make_node("Add", ["y", "r"], ["z"])]
    model = conv_model()
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([7, 7], np.int64), "s"))
    model.graph.output[0].name = "z"
    path = _save(model, tmp_path)
    done = subprocess.run([sys.executable, "-m", "sepconv_cli", "convert", path, "-o", str(tmp_path / "o.onnx"),
                           "--rank", "1"], cwd=REPO, capture_output=True, text=True, env={**os.environ, **ENV},
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "\x1b" not in done.stderr, done.stderr


@pytest.mark.parametrize("plan", [["--rank", "1"], ["--target-macs", "2x"]])
def test_random_verification_inputs_of_a_huge_declared_input_are_refused_before_allocation(tmp_path, plan):
    """An input declared [1, 8, 2^31-1, 16]: the random inputs alone would take terabytes. Refused from
    the declared shape, in one line, with nothing allocated and nothing written."""
    m = conv_model()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 2**31 - 1
    m.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 2**31 - 1
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner(env=ENV).invoke(app, ["convert", _save(m, tmp_path), "-o", str(out / "m.onnx"),
                                             "--max-memory", "1GiB", *plan])
    line = _one_error_line(result)
    assert "random inputs would take" in line and "--max-memory" in line and "'x'" in line, line
    assert os.listdir(out) == []
