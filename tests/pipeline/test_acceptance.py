"""Acceptance tests: the product used as a user would, through the real CLI.

Every bad input of the analyze/convert/check commands gets exactly one stderr line, exit code 2, no traceback,
no file left behind and nothing overwritten; written reports get the usual file mode; outputs never land on
the files being read; the process-level basics (``--version``, ``python -m``, JSON when piped, colour only on
a terminal and never under ``NO_COLOR``) hold. Models are built here with ``onnx.helper`` or small torch modules.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pty
import stat
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from sepconv_cli import __version__
from sepconv_cli.cli import app

ENV = {"COLUMNS": "100", "NO_COLOR": "1", "SEPCONV_DEBUG": None, "GITHUB_STEP_SUMMARY": None}
ANSI = "\x1b["


def _conv_model(batch: int = 1) -> onnx.ModelProto:
    """Conv 3->8 3x3 pad 1 on Nx3x16x16: 216 params, N * 8*16*16*3*9 MACs."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 16, 16])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _cycle_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2"),
             helper.make_node("Relu", ["a"], ["y"], name="r3")]
    graph = helper.make_graph(nodes, "cycle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _write_bad(folder, kind: str) -> str:
    """Create the bad input ``kind`` in ``folder``; returns the path given on the command line (relative)."""
    good = _conv_model().SerializeToString()
    writers = {
        "missing": lambda p: None,
        "directory": lambda p: os.mkdir(p),
        "empty": lambda p: open(p, "wb").close(),
        "truncated": lambda p: open(p, "wb").write(good[: len(good) // 2]),
        "random": lambda p: open(p, "wb").write(np.random.default_rng(1).bytes(3000)),
        "json": lambda p: open(p, "w").write(json.dumps({"model": "not really"})),
        "zip": lambda p: zipfile.ZipFile(p, "w").writestr("readme.txt", "hello"),
        "cycle": lambda p: onnx.save(_cycle_model(), p),
        "huge_dim": lambda p: onnx.save(_conv_model(batch=10**12), p),
    }
    name = f"{kind}.onnx"
    writers[kind](str(folder / name))
    return name


def _command(cmd: str, model: str) -> list[str]:
    extra = {"analyze": [], "convert": ["-o", "out.onnx"], "check": ["--max-params", "5M", "--no-config"]}[cmd]
    return [cmd, model, *extra]


def _snapshot(folder) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def _assert_one_line_exit_2(result, names: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sepconv: error: "), lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    assert names in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("cmd", ["analyze", "convert", "check"])
@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "truncated", "random", "json", "zip", "cycle",
                                  "huge_dim"])
def test_bad_model_file_is_one_line_exit_2_and_leaves_nothing(tmp_path, monkeypatch, cmd, kind):
    monkeypatch.chdir(tmp_path)
    model = _write_bad(tmp_path, kind)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(app, _command(cmd, model), env=ENV)
    _assert_one_line_exit_2(result, model)
    assert _snapshot(tmp_path) == before


def _runner_in(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    onnx.save(_conv_model(), str(tmp_path / "m.onnx"))
    return CliRunner()


@pytest.mark.parametrize("args, names", [
    (["analyze", "m.onnx", "--input-shape", "1x3x16"], "--input-shape gives 3"),
    (["analyze", "m.onnx", "--input-shape", "0x3x16x16"], "0x3x16x16"),
    (["analyze", "m.onnx", "--input-shape", "nope=1x3x16x16"], "nope"),
    (["convert", "m.onnx", "-o", "o.onnx", "--input-shape", "1x3x16x16x"], "1x3x16x16x"),
    (["check", "m.onnx", "--no-config", "--max-params", "5Q"], "5Q"),
    (["check", "m.onnx", "--no-config", "--max-params=-5M"], "-5M"),
    (["check", "m.onnx", "--no-config", "--max-macs", "1.2GB"], "--max-macs"),
    (["check", "m.onnx", "--no-config", "--baseline", "nothere.json"], "nothere.json"),
    (["check", "m.onnx", "--no-config", "--baseline", "m.onnx"], "m.onnx"),
    (["convert", "m.onnx", "-o", "o.onnx", "--rank", "0"], "--rank"),
    (["convert", "m.onnx", "-o", "o.onnx", "--rank", "1", "--energy", "0.5"], "--energy"),
    (["convert", "m.onnx", "-o", "o.txt"], "o.txt"),
    (["convert", "m.onnx", "-o", "m.onnx/inside.onnx"], "m.onnx"),
    (["analyze", "m.onnx", "-o", "m.onnx/inside.json"], "m.onnx"),
    (["check", "m.onnx", "--no-config", "--max-params", "5M", "-o", "m.onnx/inside.txt"], "m.onnx"),
])
def test_bad_flags_and_paths_are_one_line_exit_2(tmp_path, monkeypatch, args, names):
    runner = _runner_in(tmp_path, monkeypatch)
    before = _snapshot(tmp_path)
    _assert_one_line_exit_2(runner.invoke(app, args, env=ENV), names)
    assert _snapshot(tmp_path) == before


def test_malformed_toml_and_unknown_key_name_the_file(tmp_path, monkeypatch):
    runner = _runner_in(tmp_path, monkeypatch)
    (tmp_path / "pyproject.toml").write_text('[tool.sepconv\nmax-params = "5M"\n')
    _assert_one_line_exit_2(runner.invoke(app, ["check", "m.onnx"], env=ENV), "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text('[tool.sepconv]\nmax-parms = "5M"\n')
    _assert_one_line_exit_2(runner.invoke(app, ["check", "m.onnx"], env=ENV), "max-parms")
    os.mkdir(tmp_path / "sub")
    monkeypatch.chdir(tmp_path / "sub")  # found by walking up
    _assert_one_line_exit_2(runner.invoke(app, ["check", "../m.onnx"], env=ENV), "max-parms")


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("flag", ["-o", "--junit-xml"])
def test_check_never_writes_onto_the_model_it_checks(tmp_path, monkeypatch, flag):
    runner = _runner_in(tmp_path, monkeypatch)
    digest = _digest(tmp_path / "m.onnx")
    result = runner.invoke(app, ["check", "m.onnx", "--no-config", "--max-params", "5M", flag, "m.onnx"], env=ENV)
    _assert_one_line_exit_2(result, "m.onnx")
    assert _digest(tmp_path / "m.onnx") == digest
    os.symlink("m.onnx", tmp_path / "link.onnx")
    result = runner.invoke(app, ["check", "m.onnx", "--no-config", "--max-params", "5M", flag, "link.onnx"], env=ENV)
    _assert_one_line_exit_2(result, "link.onnx")
    assert _digest(tmp_path / "m.onnx") == digest


def test_check_never_writes_onto_its_baseline(tmp_path, monkeypatch):
    runner = _runner_in(tmp_path, monkeypatch)
    assert runner.invoke(app, ["analyze", "m.onnx", "-f", "json", "-o", "base.json"], env=ENV).exit_code == 0
    digest = _digest(tmp_path / "base.json")
    result = runner.invoke(app, ["check", "m.onnx", "--no-config", "--baseline", "base.json", "-f", "json",
                                 "-o", "base.json"], env=ENV)
    _assert_one_line_exit_2(result, "base.json")
    assert _digest(tmp_path / "base.json") == digest


def test_convert_refuses_a_symlink_to_its_input_even_with_force(tmp_path, monkeypatch):
    runner = _runner_in(tmp_path, monkeypatch)
    digest = _digest(tmp_path / "m.onnx")
    os.symlink("m.onnx", tmp_path / "link.onnx")
    result = runner.invoke(app, ["convert", "m.onnx", "-o", "link.onnx", "--force", "--rank", "1"], env=ENV)
    _assert_one_line_exit_2(result, "link.onnx")
    assert _digest(tmp_path / "m.onnx") == digest and os.path.islink(tmp_path / "link.onnx")


def test_existing_output_is_kept_without_force(tmp_path, monkeypatch):
    runner = _runner_in(tmp_path, monkeypatch)
    (tmp_path / "out.onnx").write_text("precious")
    result = runner.invoke(app, ["convert", "m.onnx", "-o", "out.onnx", "--rank", "1"], env=ENV)
    _assert_one_line_exit_2(result, "out.onnx")
    assert (tmp_path / "out.onnx").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "out.onnx"]


def test_written_reports_get_the_usual_file_mode(tmp_path, monkeypatch):
    runner = _runner_in(tmp_path, monkeypatch)
    old = os.umask(0o022)
    try:
        assert runner.invoke(app, ["analyze", "m.onnx", "-o", "r.json"], env=ENV).exit_code == 0
        result = runner.invoke(app, ["check", "m.onnx", "--no-config", "--max-params", "5M", "-o", "c.txt",
                                     "--junit-xml", "c.xml"], env=ENV)
        assert result.exit_code == 0
        assert runner.invoke(app, ["convert", "m.onnx", "-o", "s.onnx", "--rank", "1"], env=ENV).exit_code == 0
    finally:
        os.umask(old)
    for name in ("r.json", "c.txt", "c.xml", "s.onnx", "s.onnx.manifest.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


@pytest.mark.parametrize("cmd", ["analyze", "convert", "check"])
def test_help_of_every_command_has_a_worked_example(cmd):
    result = CliRunner().invoke(app, [cmd, "--help"], env=ENV)
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"sepconv {cmd} " in result.stdout.split("Example", 1)[1]


def _sepconv(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "SEPCONV_DEBUG")}
    env.update(kwargs.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "sepconv_cli", *args], env=env, **kwargs)


def test_version_from_the_command_and_python_m():
    result = CliRunner().invoke(app, ["--version"], env=ENV)
    assert result.exit_code == 0 and result.stdout == f"sepconv {__version__}\n"
    from importlib.metadata import version

    assert __version__ == version("sepconv")
    proc = _sepconv("--version", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"sepconv {__version__}"


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the CLI with stdout on a pseudo-terminal 100 columns wide; returns what it printed there."""
    master, slave = pty.openpty()
    try:
        proc = _sepconv(*args, stdout=slave, stderr=subprocess.PIPE, env={"COLUMNS": "100", **env}, timeout=60)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end is closed: everything was read
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    return b"".join(chunks).decode("utf-8")


@pytest.mark.slow
def test_table_on_a_terminal_json_when_piped_and_no_colour_under_no_color(tmp_path):
    onnx.save(_conv_model(), str(tmp_path / "m.onnx"))
    model = str(tmp_path / "m.onnx")
    piped = _sepconv("analyze", model, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and ANSI not in piped.stdout
    assert json.loads(piped.stdout)["totals"]["params"] == 8 * 3 * 9
    coloured = _on_a_terminal(["analyze", model], {})
    assert "conv" in coloured and ANSI in coloured
    plain = _on_a_terminal(["analyze", model], {"NO_COLOR": "1"})
    assert "conv" in plain and ANSI not in plain and "Params" in plain


def _external_data_model_without_its_data(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    onnx.save(_conv_model(), "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    os.remove(tmp_path / "ext.data")


def test_check_reads_shapes_without_the_external_data_bytes(tmp_path, monkeypatch):
    _external_data_model_without_its_data(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, _command("check", "ext.onnx") + ["-f", "json"], env=ENV)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["value"] == 8 * 3 * 9


@pytest.mark.parametrize("cmd", ["analyze", "convert"])
def test_missing_external_data_file_is_never_an_internal_error(tmp_path, monkeypatch, cmd):
    _external_data_model_without_its_data(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, _command(cmd, "ext.onnx"), env=ENV)
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    if cmd == "analyze":  # counts need only shapes: the report stands, energy is unknown and says why
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["totals"]["params"] == 8 * 3 * 9
        assert [c["energy_t1"] for c in report["candidates"]] == [None] * len(report["candidates"])
        assert "energy unknown" in result.stderr and "ext.data" in result.stderr
    else:
        _assert_one_line_exit_2(result, "ext.")
    assert sorted(os.listdir(tmp_path)) == ["ext.onnx"]


def test_max_output_error_searches_ranks_the_energy_rule_would_refuse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weight = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype(np.float32)  # flat spectrum
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])], [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), "flat.onnx")
    np.savez("calib.npz", x=np.random.default_rng(1).standard_normal((32, 8, 8, 8)).astype(np.float32))
    # any rank meets an output error of 1.0 (the zero map already does), so T=1 must be chosen
    result = CliRunner().invoke(app, ["convert", "flat.onnx", "-o", "out.onnx", "--calibrate", "calib.npz",
                                      "--max-layer-error", "1.0"], env=ENV)
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "out.onnx.manifest.json").read_text())
    assert [layer["rank"] for layer in manifest["layers"]] == [1]


torch = pytest.importorskip("torch")  # everything below needs PyTorch


class _Marker:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("cmd", ["analyze", "convert", "check"])
def test_pickle_payload_never_runs_without_trust_through_any_command(tmp_path, monkeypatch, cmd):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": _Marker(str(tmp_path / "MARKER"))}, tmp_path / "evil.pt")
    result = CliRunner().invoke(app, _command(cmd, "evil.pt"), env=ENV)
    _assert_one_line_exit_2(result, "--trust-pickle")
    assert not (tmp_path / "MARKER").exists()
    assert sorted(os.listdir(tmp_path)) == ["evil.pt"]


def _net_module(tmp_path, name: str):
    (tmp_path / f"{name}.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, c=8):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, c, 3, padding=1)\n"
        "    def forward(self, x):\n"
        "        return self.conv(x)\n"
        "def build(c=8):\n"
        "    return Net(c)\n")
    spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_trusted_pickle_whose_class_cannot_be_imported_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = _net_module(tmp_path, "acceptance_vanishing_net")
    torch.save(module.Net(), tmp_path / "whole.pt")
    del sys.modules["acceptance_vanishing_net"]
    os.remove(tmp_path / "acceptance_vanishing_net.py")
    result = CliRunner().invoke(app, ["analyze", "whole.pt", "--trust-pickle", "--input-shape", "1x3x8x8"], env=ENV)
    _assert_one_line_exit_2(result, "whole.pt")
    assert "acceptance_vanishing_net" in result.stderr


@pytest.mark.parametrize("cmd", ["analyze", "convert", "check"])
def test_state_dict_without_arch_is_refused(tmp_path, monkeypatch, cmd):
    monkeypatch.chdir(tmp_path)
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), tmp_path / "sd.pt")
    _assert_one_line_exit_2(CliRunner().invoke(app, _command(cmd, "sd.pt"), env=ENV), "--arch")
    assert sorted(os.listdir(tmp_path)) == ["sd.pt"]


@pytest.mark.parametrize("cmd", ["analyze", "convert"])
@pytest.mark.parametrize("kwargs, names", [("{bad", "not valid JSON"), ("[1]", "JSON object"),
                                           ('{"nope": 1}', "nope")])
def test_bad_kwargs_are_refused(tmp_path, monkeypatch, cmd, kwargs, names):
    monkeypatch.chdir(tmp_path)
    _net_module(tmp_path, "acceptance_kwargs_net")
    before = _snapshot(tmp_path)
    args = [*_command(cmd, "acceptance_kwargs_net.py:build"), "--kwargs", kwargs, "--input-shape", "1x3x8x8"]
    _assert_one_line_exit_2(CliRunner().invoke(app, args, env=ENV), names)
    assert _snapshot(tmp_path) == before


def test_corrupt_zip_pt_is_one_line_through_every_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(tmp_path / "corrupt.pt", "w") as archive:
        archive.writestr("archive/data.pkl", "garbage")
    for cmd in ("analyze", "convert", "check"):
        _assert_one_line_exit_2(CliRunner().invoke(app, _command(cmd, "corrupt.pt"), env=ENV), "corrupt.pt")
    assert sorted(os.listdir(tmp_path)) == ["corrupt.pt"]


def test_fvcore_engine_on_a_meta_model_never_reports_energy_of_uninitialised_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _net_module(tmp_path, "acceptance_fvcore_net")
    args = ["analyze", "acceptance_fvcore_net.py:build", "--input-shape", "1x3x8x8", "--engine", "fvcore", "-f", "json",
            "--device", "meta"]
    for _ in range(3):  # uninitialised memory differs from run to run: SVD of it sometimes did not even converge
        result = CliRunner().invoke(app, args, env=ENV)
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        assert [c["energy_t1"] for c in report["candidates"]] == [None]
        assert report["totals"]["macs"] == 8 * 8 * 8 * 3 * 9
        assert "meta device" in result.stderr


def test_check_budgets_a_state_dict_with_its_architecture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sd_arch.py").write_text(
        "import torch\n\ndef build(width=8):\n"
        "    net = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.ReLU())\n"
        "    net.example_input_shapes = [(1, 3, 8, 8)]\n    return net\n")
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU()).state_dict(), tmp_path / "sd.pt")
    args = ["check", "sd.pt", "--no-config", "--max-params", "500", "--arch", "sd_arch.py:build",
            "--kwargs", '{"width": 16}', "-f", "json"]
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["value"] == 3 * 16 * 9 + 16
    tight = CliRunner().invoke(app, [*args[:4], "400", *args[5:]], env=ENV)
    assert tight.exit_code == 1, tight.stderr
