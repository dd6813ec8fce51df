"""`sepconv convert` at 80 columns and calibration-file handling: every table column stays, long layer
names are cut in the middle, reasons become footnotes, report lines break between their parts; one rule
for calibration files whether or not verification reads them, verification on held-back calibration
inputs, and unwritable output folders refused before any work."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import onnx
import pytest
from convert_builders import ConvCase, conv_model, vgg_cifar
from typer.testing import CliRunner

from sepconv_cli.calibration.solve import CalibOptions, split_samples
from sepconv_cli.cli import app
from sepconv_cli.errors import OutputError
from sepconv_cli.pipeline import convert as conversion
from sepconv_cli.pipeline.calibrate import CalibrationHook
from sepconv_cli.planner import PlanOptions
from sepconv_cli.render.text import fit_names, shorten, wrap_parts

RUNNER = CliRunner()


def _run(*args: str, columns: int = 80):
    return RUNNER.invoke(app, ["convert", *args], env={"COLUMNS": str(columns)})


def _fits(text: str, width: int = 80) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, "\n".join(too_long)


@pytest.fixture(scope="module")
def vgg_model() -> onnx.ModelProto:
    return vgg_cifar()


@pytest.fixture
def vgg(vgg_model, tmp_path, monkeypatch) -> str:
    """The seed VGG in the current folder (tmp_path): short relative paths, as a user types them."""
    monkeypatch.chdir(tmp_path)
    onnx.save(vgg_model, "vgg.onnx")
    return "vgg.onnx"


def _section(text: str, title: str) -> list[str]:
    """The title line's table: header, rule, rows, footnotes (up to the next unindented report line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 3, len(lines)) if re.match(r"(calibration|verification|left alone|time)",
                                                                     lines[i])), len(lines))
    return lines[start + 1:end]


@pytest.mark.slow
def test_calibrated_table_keeps_its_columns_and_puts_a_fallback_reason_below(vgg):
    np.savez("two.npz", x=np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    result = _run(vgg, "-o", "o.onnx", "--rank", "1", "--top", "2", "--calibrate", "two.npz")
    assert result.exit_code == 0, result.stderr
    _fits(result.stderr)
    assert "calibrated layers (output rel L2 error, fit inputs)" in result.stderr.splitlines()
    header, _rule, *rest = _section(result.stderr, "calibrated layers")
    assert header.split() == ["layer", "T", "SVD", "calibrated", "kept"]
    rows = [line.split() for line in rest[:2]]
    assert [row[0] for row in rows] == ["block2_conv2", "block3_conv2"]
    assert rows[1][-2:] == ["SVD", "[1]"]
    footnote = " ".join(" ".join(rest[2:]).split())
    assert footnote.startswith("[1] 128 equations for 257 unknowns per group: too few calibration samples")
    assert footnote.endswith("kept the SVD weights")


def test_calibrated_table_with_max_output_error_notes_the_rule_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    onnx.save(conv_model(ConvCase(cin=4, cout=8, spatial=(6, 6))), "c.onnx")
    np.savez("calib.npz", x=np.random.default_rng(0).standard_normal((16, 4, 6, 6)).astype(np.float32))
    result = _run("c.onnx", "-o", "o.onnx", "--calibrate", "calib.npz", "--max-layer-error", "0.9")
    assert result.exit_code == 0, result.stderr
    _fits(result.stderr)
    header, _rule, row, *note = _section(result.stderr, "calibrated layers")
    assert header.split() == ["layer", "T", "SVD", "calibrated", "kept"]
    assert row.split()[0] == "conv" and row.split()[-1] == "[1]" and row.split()[-2] in ("refit", "SVD")
    assert note[0].startswith("[1] smallest rank with output error <= 0.9 on held-back samples")


def _long_names(path) -> None:
    model = vgg_cifar()
    for node in model.graph.node:  # exporter-style names, ~60 characters
        node.name = f"/model/backbone/stage_{node.name}/blocks.0/layers.0/{node.op_type.lower()}/{node.op_type}"
    onnx.save(model, str(path))


def test_long_layer_names_are_cut_in_the_middle_and_every_column_stays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _long_names("long.onnx")
    result = _run("long.onnx", "-o", "o.onnx", "--rank", "1")
    assert result.exit_code == 0, result.stderr
    _fits(result.stderr)
    header, _rule, *rows = _section(result.stderr, "converted layers")
    assert header.split() == ["layer", "T", "params", "MACs", "energy", "w.err", "BN"]
    rows = [row for row in rows if row.strip()]
    assert len(rows) == 6  # one line per layer: names do not wrap
    names = [row.split()[0] for row in rows]
    assert len(set(names)) == 6 and all("…" in name and name.endswith("/conv/Conv") for name in names)
    assert all(re.search(r"\d+\.\d+ +\d+\.\d+$", row) for row in rows)  # energy and w.err whole
    lines = result.stderr.splitlines()
    assert any(re.search(r"top-1 agreement \d+\.\d% \(95% CI [\d.]+-[\d.]+%, 4 samples\)$", line) for line in lines)
    assert any(re.search(r"analyse \d+\.\d\ds$", line) for line in lines)
    assert "converted layers (energy kept, rel. weight error at T)" in lines


def test_name_and_line_helpers():
    assert shorten("abcdefghij", 10) == "abcdefghij" and shorten("abcdefghijkl", 7) == "ab…ijkl"
    names = ["/net/stage1/blocks.0/conv1/Conv", "/net/stage2/blocks.0/conv1/Conv"]
    cut = fit_names(names, 16)
    assert all(len(n) <= 16 for n in cut) and len(set(cut)) == 2 and cut[0].startswith("…1")
    assert fit_names(["short"], 16) == ["short"]
    assert wrap_parts("time: ", ["load 0.01s", "verify 0.10s", "analyse 0.00s"], 31, indent="  ") == [
        "time: load 0.01s, verify 0.10s,", "  analyse 0.00s"]


@pytest.mark.parametrize("extra", [(), ("--no-verify",), ("--inputs", "INPUTS")])
@pytest.mark.parametrize("kind", [pytest.param("float64", marks=pytest.mark.slow), "one_sample"])
def test_calibration_file_rule_does_not_depend_on_verification(vgg, extra, kind):
    calib, inputs = "calib.npz", "inputs.npz"
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32))
    np.savez(calib, x=x if kind == "float64" else x[0].astype(np.float32))
    np.savez(inputs, x=x[:2].astype(np.float32))
    extra = tuple(inputs if e == "INPUTS" else e for e in extra)
    result = _run(vgg, "-o", "o.onnx", "--rank", "1", "--top", "1", "--calibrate", str(calib),
                  *extra, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    samples = 8 if kind == "float64" else 1
    assert data["calibration"]["samples_fit"] + data["calibration"]["samples_holdout"] == samples
    cast = f"{calib}: float64 arrays for input 'x' were cast to float32"
    assert (cast in data["notes"]) == (kind == "float64")


def test_calibration_file_of_the_wrong_shape_names_the_free_sample_axis(vgg):
    calib = "calib.npz"
    np.savez(calib, x=np.zeros((4, 3, 28, 28), np.float32))
    for extra in ((), ("--no-verify",)):
        result = _run(vgg, "-o", "o.onnx", "--rank", "1", "--calibrate", calib, *extra)
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            f"sepconv: error: {calib}: array for input 'x' has shape 4x3x28x28, the model expects Nx3x32x32"]
        assert sorted(os.listdir(".")) == ["calib.npz", "vgg.onnx"]


def test_verification_after_calibration_runs_on_the_held_back_inputs(tmp_path):
    source, calib = tmp_path / "c.onnx", tmp_path / "calib.npz"
    onnx.save(conv_model(ConvCase(cin=4, cout=8, spatial=(6, 6))), str(source))
    x = np.random.default_rng(0).standard_normal((80, 4, 6, 6)).astype(np.float32)
    np.savez(calib, x=x)
    result = _run(str(source), "-o", str(tmp_path / "o.onnx"), "--rank", "1", "--calibrate", str(calib),
                  "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    verification, cal = data["verification"], data["calibration"]
    assert verification["inputs"] == str(calib) and verification["inputs_role"] == "held-back calibration"
    assert verification["samples"] == cal["samples_holdout"] == 20
    # the end-to-end held-back error of calibration is the verification error, on the same samples
    assert verification["rel_l2"] == pytest.approx(cal["output_error_after"], rel=1e-4)
    table = _run(str(source), "-o", str(tmp_path / "t.onnx"), "--rank", "1", "--calibrate", str(calib),
                 columns=200).stderr
    assert f"verification on 20 held-back calibration input(s) ({calib}):" in table.splitlines()
    hook = CalibrationHook(str(calib), CalibOptions(seed=3))
    hook.inputs = {"x": x}
    arrays, path, role = hook.verification_feed()
    np.testing.assert_array_equal(arrays["x"], x[split_samples(80, 0.25, 3)[1]])


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_output_in_an_unwritable_folder_is_refused_before_converting(vgg):
    result = _run(vgg, "-o", "/proc/out.onnx", "--rank", "1")
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sepconv: error: cannot write to folder /proc: ")
    assert "internal error" not in result.stderr


def test_write_failure_during_conversion_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(conversion.manifest_mod, "dumps", full_disk)
    source = tmp_path / "in" / "c.onnx"
    source.parent.mkdir()
    onnx.save(conv_model(ConvCase()), str(source))
    out = tmp_path / "out"
    out.mkdir()
    request = conversion.ConvertRequest(source=str(source), output=str(out / "o.onnx"), plan=PlanOptions(rank=1),
                                        verify=False)
    with pytest.raises(OutputError, match=f"^cannot write to folder {out}: No space left on device$"):
        conversion.convert(request)
    assert os.listdir(out) == []
