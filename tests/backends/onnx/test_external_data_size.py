"""File size counts the external data a model refers to (never read for counting), and `check
--max-file-size` budgets the total."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx_builders import analyse, conv_model, save
from typer.testing import CliRunner

from sepconv_cli.backends.onnx.graph import external_data_size
from sepconv_cli.cli import app


def _external(tmp_path) -> tuple[str, int, int]:
    m = conv_model((1, 3, 8, 8), (64, 3, 3, 3), pads=[1, 1, 1, 1])
    path = str(tmp_path / "model.onnx")
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.data",
                    size_threshold=0)
    return path, os.path.getsize(path), os.path.getsize(tmp_path / "model.data")


def test_file_size_is_the_model_plus_its_external_data(tmp_path):
    path, own, data = _external(tmp_path)
    report = analyse(onnx.load(path, load_external_data=False), tmp_path, name="again.onnx").report
    assert report.model.file_size == os.path.getsize(tmp_path / "again.onnx") + data  # same data file
    from sepconv_cli.backends.registry import load

    info = load(path).report.model
    assert (info.file_size, info.external_data_size) == (own + data, data) and data >= 64 * 27 * 4


def test_table_shows_both_parts(tmp_path):
    path, own, data = _external(tmp_path)
    result = CliRunner().invoke(app, ["analyze", path, "-f", "table"], env={"COLUMNS": "100"})
    line = next(x for x in result.stdout.splitlines() if x.startswith("File"))
    assert line.endswith(" external") and " + " in line


def test_max_file_size_budgets_the_total(tmp_path):
    path, own, data = _external(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["check", path, "--no-config", "--max-file-size", str(own + data)]).exit_code == 0
    failed = runner.invoke(app, ["check", path, "--no-config", "--max-file-size", str(own + data - 1)])
    assert failed.exit_code == 1 and "max-file-size" in failed.stdout


def test_external_data_outside_the_model_folder_is_not_counted(tmp_path):
    tensor = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.external_data.add(key="location", value="../outside.bin")
    (tmp_path / "outside.bin").write_bytes(b"\0" * 16)
    inner = tmp_path / "inner"
    inner.mkdir()
    graph = helper.make_graph([], "g", [], [], [tensor])
    m = helper.make_model(graph)
    assert external_data_size(save(m, inner), m) == 0


def test_external_data_that_is_a_fifo_is_never_opened(tmp_path):
    """The data file named by the model is a FIFO with no writer: reading it would block forever. analyze
    warns that the weights cannot be read and counts from shapes; convert is one line, exit 2."""
    path, _, _ = _external(tmp_path)
    os.remove(tmp_path / "model.data")
    os.mkfifo(tmp_path / "model.data")
    runner = CliRunner()
    analysed = runner.invoke(app, ["analyze", path, "--format", "json"])
    assert analysed.exit_code == 0 and "not a regular file" in analysed.stderr
    (tmp_path / "out").mkdir()
    converted = runner.invoke(app, ["convert", path, "-o", str(tmp_path / "out" / "m.onnx"), "--rank", "1"])
    lines = converted.stderr.strip().splitlines()
    assert converted.exit_code == 2 and len(lines) == 1 and "model.data" in lines[0] and "not a regular file" in lines[0]
    assert os.listdir(tmp_path / "out") == []
