"""Hostile input files for the pipeline: FIFOs, devices and oversized files are refused before any
blocking open or unbounded read; hostile configs and baselines each get one specific ConfigError naming
the file; ``**`` globs survive symlink loops; config entry points need ``trust_code``.

Every test that could hang on a regression runs under a SIGALRM deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from sepconv_cli.backends.detect import detect_format
from sepconv_cli.errors import MAX_MESSAGE, ConfigError, InputError
from sepconv_cli.files import CONFIG_LIMIT, read_bounded, read_head, require_regular
from sepconv_cli.pipeline import config as cfg
from sepconv_cli.pipeline.baseline import Baseline, check_recorded_model, load_baseline
from sepconv_cli.pipeline.globs import expand_glob
from sepconv_cli.pipeline.inputs import load_calibration_inputs

DEADLINE_S = 30


@pytest.fixture(autouse=True)
def deadline():
    """Fail (instead of hanging the suite) when a test blocks for more than ``DEADLINE_S`` seconds."""
    def expire(_signum, _frame):
        raise TimeoutError(f"blocked for more than {DEADLINE_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(DEADLINE_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return str(path)


@pytest.fixture
def unix_socket(tmp_path):
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    yield path
    server.close()


SPECIAL = {
    "fifo": ("fifo", "a FIFO"),
    "zero": ("/dev/zero", "a character device"),
    "urandom": ("/dev/urandom", "a character device"),
    "socket": ("unix_socket", "a socket"),
}


def _special(request, name: str) -> tuple[str, str]:
    source, kind = SPECIAL[name]
    return (request.getfixturevalue(source) if source in ("fifo", "unix_socket") else source), kind


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_files_are_refused_as_every_input(request, tmp_path, name):
    path, kind = _special(request, name)
    readers = [
        lambda: detect_format(path),
        lambda: cfg.load_config(path),
        lambda: load_baseline(path),
        lambda: load_calibration_inputs(path, ()),
        lambda: read_head(path, 8),
    ]
    for read in readers:
        with pytest.raises((InputError, ConfigError), match=kind) as info:
            read()
        assert str(info.value).startswith(path) and "\n" not in str(info.value)


def test_a_symlink_to_a_device_is_refused_and_a_directory_too(tmp_path):
    link = tmp_path / "pyproject.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="a character device"):
        cfg.discover(None, str(tmp_path))  # found by walking up: refused by name, never read
    with pytest.raises(InputError, match="a directory"):
        require_regular(str(tmp_path), "model file")


def test_reads_are_capped(tmp_path):
    big = tmp_path / "sepconv.toml"
    with open(big, "wb") as fh:
        fh.truncate(CONFIG_LIMIT + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match="larger than 16 MiB"):
        cfg.load_config(str(big))
    assert len(read_bounded(str(big), CONFIG_LIMIT + 1)) == CONFIG_LIMIT + 1


def test_star_star_globs_end_on_symlink_loops(tmp_path):
    (tmp_path / "models" / "deep").mkdir(parents=True)
    (tmp_path / "models" / "deep" / "a.onnx").write_bytes(b"x")
    (tmp_path / "models" / "b.onnx").write_bytes(b"x")
    (tmp_path / "models" / "deep" / "loop").symlink_to(tmp_path / "models")  # a cycle
    (tmp_path / "models" / "self").symlink_to(".")
    (tmp_path / "models" / ".hidden").mkdir()
    (tmp_path / "models" / ".hidden" / "c.onnx").write_bytes(b"x")
    found = expand_glob(str(tmp_path / "models" / "**" / "*.onnx"))
    assert found == [str(tmp_path / "models" / "b.onnx"), str(tmp_path / "models" / "deep" / "a.onnx")]
    (tmp_path / "sepconv.toml").write_text('[models."models/**/*.onnx"]\nmax-params = "1M"\n')
    targets = cfg.resolve_targets(cfg.load_config(str(tmp_path / "sepconv.toml")), [], cfg.Settings())
    assert len(targets) == 2


def _config(tmp_path, text: str, name: str = "sepconv.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, fragment", [
    ("tool = 5\n", "key 'tool' must be a table"),
    ("[tool]\nsepconv = 5\n", "key 'tool.sepconv' must be a table"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("x = " + "9" * 5000 + "\n", "malformed TOML"),
    ("[tool.sepconv]\nmax-growth = inf\n", "not a finite number"),
    ("[tool.sepconv]\nmax-params = nan\n", "not a finite number"),
    ('[tool.sepconv]\nmax-params = "1e300T"\n', "not a finite number"),
    ("[tool.sepconv]\nmax-parms = 5\n", "did you mean 'max-params'?"),
    ('[tool.sepconv]\n"' + "k" * 100_000 + '" = 1\n', "unknown key"),
    ("\xff", "malformed TOML"),
])
def test_hostile_configs_are_one_line_config_errors(tmp_path, text, fragment):
    path = _config(tmp_path, text, "pyproject.toml")
    with pytest.raises(ConfigError) as info:
        cfg.load_config(path)
    message = str(info.value)
    assert fragment in message and message.startswith(path)
    assert "\n" not in message and len(message) <= MAX_MESSAGE


def _report(**over) -> dict:
    report = {"schema_version": 1, "model": {"path": "m.onnx", "format": "onnx"},
              "totals": {"params": 10, "macs": 20, "flops": 40, "buffers": 0},
              "layers": [], "uncounted": [], "candidates": [], "excluded": []}
    report["totals"].update(over)
    return report


@pytest.mark.parametrize("text, fragment", [
    (json.dumps(_report()).replace('"params": 10', '"params": NaN'), "NaN, which is not finite"),
    (json.dumps(_report()).replace('"macs": 20', '"macs": Infinity'), "Infinity, which is not finite"),
    (json.dumps(_report()).replace('"macs": 20', '"macs": 1e400'), "1e400, which is not finite"),
    (json.dumps(_report()).replace('"macs": 20', '"macs": -Infinity'), "not finite"),
    (json.dumps(_report(macs=10 ** 400)), "too large"),
    (json.dumps(_report()).replace('"macs": 20', '"macs": ' + "9" * 5000), "not a sepconv report"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps(_report(macs="x" * 10_000_000)), "expected a non-negative number"),
    ("\xff\xfe", "cannot read baseline"),
])
def test_hostile_baselines_are_one_line_config_errors(tmp_path, text, fragment):
    path = tmp_path / "base.json"
    path.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    with pytest.raises(ConfigError) as info:
        load_baseline(str(path))
    message = str(info.value)
    assert fragment in message and message.startswith(str(path))
    assert "\n" not in message and len(message) <= MAX_MESSAGE


def test_a_baseline_of_another_model_is_refused(tmp_path):
    base = Baseline(source="b.json", model_path="models/resnet.onnx")
    check_recorded_model(base, "other/place/resnet.onnx")  # same file name: accepted
    with pytest.raises(ConfigError, match="recorded from models/resnet.onnx, not mobilenet.onnx; pass --baseline-any"):
        check_recorded_model(base, "mobilenet.onnx")


EVIL_MODULE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n\ndef build():\n    raise SystemExit(0)\n"


@pytest.mark.parametrize("pattern", ["evilmod:build", "evil_file.py:build"])
def test_config_entry_points_need_trust_code(tmp_path, monkeypatch, pattern):
    marker = tmp_path / "marker"
    (tmp_path / "evilmod.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    (tmp_path / "evil_file.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    path = _config(tmp_path, f'[tool.sepconv.models."{pattern}"]\nmax-params = "1M"\n', "pyproject.toml")
    config = cfg.load_config(path)
    with pytest.raises(ConfigError, match=f'models."{pattern}" names an entry point.*add --trust-code'):
        cfg.resolve_targets(config, [], cfg.Settings())
    (target,) = cfg.resolve_targets(config, [], cfg.Settings(), trust_code=True)
    assert target.path == pattern
    assert not marker.exists()  # resolving never imports: only loading the model would


def test_an_entry_point_file_that_is_a_fifo_is_refused(tmp_path):
    from sepconv_cli.backends.torch.entrypoint import resolve

    os.mkfifo(tmp_path / "nets.py")
    with pytest.raises(InputError, match="is a FIFO"):
        resolve(f"{tmp_path / 'nets.py'}:build")
