"""Hostile input through the command line: poisoned ``.pt2`` archives are refused by analyze, check and
convert with one stderr line and exit 2, and their payloads never run (the marker file never appears);
outputs never replace a device node, FIFO or symbolic link; SIGTERM and SIGHUP leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from pt2_poison import VARIANTS, clean_archive
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.cli import app

ENV = {"COLUMNS": "120", "NO_COLOR": "1", "GITHUB_STEP_SUMMARY": None}
COMMANDS = {
    "analyze": lambda path, out: ["analyze", path, "--format", "json"],
    "check": lambda path, out: ["check", path, "--max-params", "1G", "--no-config"],
    "convert": lambda path, out: ["convert", path, "-o", str(out / "out.pt2"), "--rank", "1"],
}


@pytest.fixture(scope="module")
def clean() -> bytes:
    return clean_archive(dynamic=True)


def _poisoned(tmp_path, clean: bytes, variant: str) -> tuple[str, str]:
    marker = str(tmp_path / "marker")
    path = tmp_path / f"{variant}.pt2"
    path.write_bytes(VARIANTS[variant](clean, marker))
    return str(path), marker


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_poisoned_archives_are_refused_and_never_run(tmp_path, clean, variant, command):
    path, marker = _poisoned(tmp_path, clean, variant)
    result = CliRunner(env=ENV).invoke(app, COMMANDS[command](path, tmp_path))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sepconv: error: "), result.stderr
    assert "--trust-pickle" in lines[0] and "archive member" in lines[0]
    assert not os.path.exists(marker)
    assert not (tmp_path / "out.pt2").exists()


def test_clean_archive_still_loads(tmp_path, clean):
    path = tmp_path / "clean.pt2"
    path.write_bytes(clean)
    result = CliRunner(env=ENV).invoke(app, ["analyze", str(path), "--format", "json"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.slow
def test_poisoned_archive_in_a_real_process(tmp_path, clean):
    """Exactly one stderr line from a real process (library logs and warnings included)."""
    path, marker = _poisoned(tmp_path, clean, "sample_inputs")
    done = subprocess.run([sys.executable, "-m", "sepconv_cli", "analyze", path], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "data/sample_inputs/model.pt" in done.stderr
    assert not os.path.exists(marker)


# ---- outputs: never replace a device node, a FIFO or a symbolic link ---------------------------------

def _tiny_onnx(folder, name: str = "tiny.onnx", **save_options) -> str:
    """conv 3->8 3x3 on 1x3x8x8 (output shape declared, so the loader has nothing to warn about)."""
    from onnx import helper
    from onnx_builders import model, save, vinfo, weight

    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])
    m = model([node], [vinfo("x", (1, 3, 8, 8))], [vinfo("y", (1, 8, 6, 6))], [weight("w", (8, 3, 3, 3), 1)])
    return save(m, folder, name, **save_options)


def test_reports_go_in_place_to_devices_and_through_links(tmp_path):
    model = _tiny_onnx(tmp_path)
    ok = CliRunner(env=ENV).invoke(app, ["analyze", model, "--format", "json", "-o", "/dev/null"])
    assert ok.exit_code == 0, ok.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    ok = CliRunner(env=ENV).invoke(app, ["analyze", model, "-o", str(link)])
    assert ok.exit_code == 0, ok.stderr
    assert link.is_symlink() and real.read_text().startswith("{")  # the link kept, its target written
    junit = CliRunner(env=ENV).invoke(app, ["check", model, "--max-params", "1M", "--no-config",
                                            "--junit-xml", "/dev/null"])
    assert junit.exit_code == 0, junit.stderr


@pytest.mark.parametrize("kind", ["dangling", "fifo"])
def test_unwritable_special_outputs_are_refused_without_blocking(tmp_path, kind):
    model = _tiny_onnx(tmp_path)
    out = tmp_path / "out.json"
    if kind == "dangling":
        out.symlink_to(tmp_path / "missing" / "x.json")
    else:
        os.mkfifo(out)
    result = CliRunner(env=ENV).invoke(app, ["analyze", model, "-o", str(out)])
    assert result.exit_code == 2
    fragment = "symbolic link to a missing file" if kind == "dangling" else "FIFO with no reader"
    assert result.stderr.count("\n") == 1 and fragment in result.stderr


@pytest.mark.slow
def test_report_to_dev_stdout_in_a_real_process(tmp_path):
    model = _tiny_onnx(tmp_path)
    done = subprocess.run([sys.executable, "-m", "sepconv_cli", "analyze", model, "-f", "json", "-o", "/dev/stdout"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("{") and os.path.exists("/dev/stdout")


@pytest.mark.parametrize("target", ["/dev/null", "link", "fifo"])
def test_convert_refuses_special_outputs(tmp_path, target):
    model = _tiny_onnx(tmp_path)
    if target == "link":
        (tmp_path / "real.onnx").write_bytes(b"")
        (tmp_path / "link.onnx").symlink_to(tmp_path / "real.onnx")
        target = str(tmp_path / "link.onnx")
    elif target == "fifo":
        os.mkfifo(tmp_path / "pipe.onnx")
        target = str(tmp_path / "pipe.onnx")
    result = CliRunner(env=ENV).invoke(app, ["convert", model, "-o", target, "--rank", "1", "--force"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "symbolic link" in result.stderr or "convert writes regular files" in result.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_converted_files_get_umask_permissions(tmp_path):
    model = _tiny_onnx(tmp_path, "ext.onnx", save_as_external_data=True, location="ext.onnx.data")
    out = tmp_path / "out"
    out.mkdir()
    old = os.umask(0o022)
    try:
        result = CliRunner(env=ENV).invoke(app, ["convert", model, "-o", str(out / "ext.sep.onnx"), "--rank", "1"])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert len(modes) >= 2 and set(modes.values()) == {0o644}, modes


# ---- signals: SIGTERM and SIGHUP clean up like Ctrl-C -------------------------------------------------

def _slow_model(folder) -> str:
    from onnx import helper
    from onnx_builders import model, save, vinfo, weight

    nodes, inits, prev = [], [], "x"
    for i in range(6):
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        inits.append(weight(f"w{i}", (256, 3 if i == 0 else 256, 3, 3), i))
        prev = f"c{i}"
    return save(model(nodes, [vinfo("x", (1, 3, 64, 64))], [vinfo(prev, None)], inits), folder, "slow.onnx")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.slow
def test_stop_signals_leave_nothing_behind(tmp_path, signum):
    import time

    model = _slow_model(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "sepconv_cli", "convert", model, "-o", str(out / "m.onnx"),
                             "--rank", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not any(p.name.startswith(".sepconv-") and p.is_dir() for p in out.iterdir()):
            assert proc.poll() is None, "convert ended before its staging folder was seen"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = sorted(p.name for p in out.iterdir())
    assert not [n for n in left if n.startswith(".sepconv")], (left, stderr)
    if proc.returncode == 0:  # a starved test process signalled after convert had finished: nothing to see
        assert left == ["m.onnx", "m.onnx.manifest.json"], (left, stderr)
        return
    assert proc.returncode == 128 + signum, (stderr, left)
    assert stderr.strip().splitlines()[-1] == f"sepconv: terminated ({signal.Signals(signum).name})", stderr
    assert left in ([], ["m.onnx", "m.onnx.manifest.json"]), (left, stderr)  # never a partial model


# ---- an install without torch --------------------------------------------------------------------------

WITHOUT_TORCH = """
import sys

class NoTorch:  # a meta path finder that makes torch look uninstalled
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
sys.argv = ["sepconv", *sys.argv[1:]]
from sepconv_cli.cli import main
main()
"""


def _without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "NO_COLOR": "1"})


def test_pytorch_files_without_torch_get_the_install_line(tmp_path, clean):
    pt2 = tmp_path / "net.pt2"
    pt2.write_bytes(clean)
    done = _without_torch("analyze", str(pt2))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"sepconv: error: {pt2}: PyTorch models need the torch extra: pip install 'sepconv[torch]'\n"


def test_check_without_torch_still_reports_every_onnx_model(tmp_path, clean):
    pt2 = tmp_path / "net.pt2"
    pt2.write_bytes(clean)
    first, second = _tiny_onnx(tmp_path, "a.onnx"), _tiny_onnx(tmp_path, "b.onnx")
    done = _without_torch("check", first, str(pt2), second, "mypkg.nets:build", "--max-params", "1M",
                          "--no-config", "--format", "json")
    assert done.returncode == 2
    checked = {r["model"] for r in json.loads(done.stdout)["results"]}
    assert checked == {first, second}
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and all("need the torch extra" in line for line in lines), done.stderr


# ---- config entry points and baselines of other models --------------------------------------------------

def test_config_entry_points_run_only_with_trust_code(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    (tmp_path / "evilmod.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\n"
                                         "def build():\n    raise RuntimeError('no model here')\n")
    (tmp_path / "pyproject.toml").write_text('[tool.sepconv.models."evilmod:build"]\nmax-params = "1M"\n')
    monkeypatch.chdir(tmp_path)
    refused = CliRunner(env=ENV).invoke(app, ["check"])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert 'models."evilmod:build" names an entry point' in refused.stderr and "add --trust-code" in refused.stderr
    assert not marker.exists()
    trusted = CliRunner(env=ENV).invoke(app, ["check", "--trust-code"])
    assert trusted.exit_code == 2 and "no model here" in trusted.stderr
    assert marker.exists()  # the opt-in is what lets it run
    sys.modules.pop("evilmod", None)


def test_a_baseline_of_another_model_needs_baseline_any(tmp_path):
    first, second = _tiny_onnx(tmp_path, "a.onnx"), _tiny_onnx(tmp_path, "b.onnx")
    recorded = CliRunner(env=ENV).invoke(app, ["analyze", first, "--format", "json"])
    base = tmp_path / "a.json"
    base.write_text(recorded.stdout)
    refused = CliRunner(env=ENV).invoke(app, ["check", second, "--baseline", str(base), "--no-config"])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert f"recorded from {first}, not {second}; pass --baseline-any" in refused.stderr
    same = CliRunner(env=ENV).invoke(app, ["check", first, "--baseline", str(base), "--no-config"])
    assert same.exit_code == 0, same.stderr
    allowed = CliRunner(env=ENV).invoke(app, ["check", second, "--baseline", str(base), "--no-config",
                                              "--baseline-any"])
    assert allowed.exit_code == 0, allowed.stderr


def test_corrupt_archives_get_one_specific_line(tmp_path, clean):
    """Seeded truncations, byte flips and insertions of a real archive (names that are not UTF-8, zip
    versions nobody writes, broken JSON): never an internal error, never more than one line."""
    import random

    rng = random.Random(7)
    path = tmp_path / "corrupt.pt2"
    for case in range(60):
        data = bytearray(clean)
        if case % 3 == 0:
            data = data[:rng.randrange(len(data))]
        elif case % 3 == 1:
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randrange(1, 50))
        path.write_bytes(bytes(data))
        result = CliRunner(env=ENV).invoke(app, ["analyze", str(path), "--format", "json"])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code in (0, 2) and len(lines) <= 1, (case, result.stderr)
        assert "internal error" not in result.stderr, (case, result.stderr)


def test_a_state_dict_whose_pickle_is_cut_anywhere_is_one_line(tmp_path):
    """torch.save's data.pkl cut short at every length: the weights-only unpickler fails in many ways (a
    short read for a length field among them); each is one line naming the file, exit 2."""
    import io
    import zipfile

    import torch

    buffer = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3), "conv.bias": torch.zeros(4)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in members if n.endswith("data.pkl"))
    path = tmp_path / "model.pt"
    for cut in range(0, len(members[name]), 3):
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data[:cut] if member == name else data)
        result = CliRunner(env=ENV).invoke(app, ["analyze", str(path), "--format", "json"])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, (cut, result.stderr)
        assert lines[0].startswith(f"sepconv: error: {path}: ") and "internal error" not in lines[0], (cut, lines)
