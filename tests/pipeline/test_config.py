"""Config discovery, parsing, precedence and refusals for `sepconv check`."""

from __future__ import annotations

import os

import pytest

from sepconv_cli.core.budget import make_budget
from sepconv_cli.errors import ConfigError, UsageError
from sepconv_cli.pipeline import config as cfg


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_pyproject_is_found_walking_up(tmp_path):
    found = write(tmp_path / "pyproject.toml", '[tool.sepconv]\nmax-params = "5M"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert cfg.find_config(str(deep)) == str(found)
    assert cfg.discover(None, str(deep)).defaults.budgets["max-params"].limit == 5e6


def test_pyproject_without_a_sepconv_table_is_skipped(tmp_path):
    outer = write(tmp_path / "pyproject.toml", '[tool.sepconv]\nmax-macs = "1G"\n')
    write(tmp_path / "inner" / "pyproject.toml", '[project]\nname = "x"\n')
    assert cfg.find_config(str(tmp_path / "inner")) == str(outer)


def test_sepconv_toml_wins_in_the_same_folder_and_nearer_wins(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.sepconv]\nmax-macs = "1G"\n')
    dedicated = write(tmp_path / "sepconv.toml", 'max-macs = "2G"\n')
    assert cfg.find_config(str(tmp_path)) == str(dedicated)
    nearer = write(tmp_path / "sub" / "pyproject.toml", '[tool.sepconv]\nmax-macs = "3G"\n')
    assert cfg.find_config(str(tmp_path / "sub")) == str(nearer)


def test_nothing_found_gives_an_empty_config(tmp_path):
    assert cfg.find_config(str(tmp_path)) is None
    assert cfg.discover(None, str(tmp_path)) == cfg.Config()


def test_explicit_config_is_read(tmp_path):
    path = write(tmp_path / "conf" / "budgets.toml", 'max-params = 1000\ninput-shape = "1x3x8x8"\n')
    loaded = cfg.discover(str(path), str(tmp_path))
    assert loaded.path == str(path)
    assert loaded.defaults.budgets["max-params"].limit == 1000
    assert loaded.defaults.input_shapes == ("1x3x8x8",)


def test_explicit_pyproject_without_table_is_an_error(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: no \[tool.sepconv\] table"):
        cfg.load_config(str(path))


def test_models_tables_expand_globs_relative_to_the_config(tmp_path, monkeypatch):
    for name in ("a.onnx", "b.onnx", "c.txt"):
        write(tmp_path / "models" / name, "x")
    path = write(tmp_path / "pyproject.toml", """
[tool.sepconv]
max-params = "5M"
max-growth = "5%"

[tool.sepconv.models."models/*.onnx"]
max-macs = "600M"

[tool.sepconv.models."models/b.onnx"]
max-params = "2M"
input-shape = ["x=1x3x32x32"]
baseline = "base/b.json"
""")
    monkeypatch.chdir(tmp_path)
    targets = cfg.resolve_targets(cfg.load_config(str(path)), [], cfg.Settings())
    assert [t.path for t in targets] == [os.path.join("models", "a.onnx"), os.path.join("models", "b.onnx")]
    a, b = (t.settings for t in targets)
    assert {k: v.limit for k, v in a.budgets.items()} == {"max-params": 5e6, "max-macs": 6e8}
    assert {k: v.limit for k, v in b.budgets.items()} == {"max-params": 2e6, "max-macs": 6e8}
    assert b.input_shapes == ("x=1x3x32x32",) and a.input_shapes == ()
    assert b.baseline == str(tmp_path / "base" / "b.json") and a.baseline is None
    assert a.max_growth == b.max_growth == pytest.approx(0.05)


def test_cli_flags_override_model_tables_and_defaults(tmp_path, monkeypatch):
    write(tmp_path / "m.onnx", "x")
    path = write(tmp_path / "sepconv.toml", 'max-params = "5M"\nmax-macs = "1G"\n'
                                             '[models."m.onnx"]\nmax-params = "3M"\ninput-shape = "1x3x8x8"\n')
    monkeypatch.chdir(tmp_path)
    cli = cfg.Settings(budgets={"max-params": make_budget("max-params", "1M")}, input_shapes=("1x3x4x4",))
    (target,) = cfg.resolve_targets(cfg.load_config(str(path)), ["m.onnx"], cli)
    assert target.settings.budgets["max-params"].limit == 1e6
    assert target.settings.budgets["max-params"].source == "cli"
    assert target.settings.budgets["max-macs"].limit == 1e9
    assert target.settings.input_shapes == ("1x3x4x4",)
    (plain,) = cfg.resolve_targets(cfg.load_config(str(path)), ["m.onnx"], cfg.Settings())
    assert plain.settings.budgets["max-params"].limit == 3e6 and plain.settings.input_shapes == ("1x3x8x8",)


def test_a_model_outside_every_table_gets_the_defaults(tmp_path, monkeypatch):
    write(tmp_path / "other.onnx", "x")
    write(tmp_path / "m.onnx", "x")
    path = write(tmp_path / "sepconv.toml", 'max-params = "5M"\n[models."m.onnx"]\nmax-params = "3M"\n')
    monkeypatch.chdir(tmp_path)
    (target,) = cfg.resolve_targets(cfg.load_config(str(path)), ["other.onnx"], cfg.Settings())
    assert target.settings.budgets["max-params"].limit == 5e6


@pytest.mark.parametrize("text, fragments", [
    ('max-parms = "5M"\n', ["unknown key 'max-parms'", "the top level"]),
    ('[models."a.onnx"]\nmax-macs = 1\ncolour = "red"\n', ["unknown key 'colour'", 'models."a.onnx"']),
    ('max-params = "5Q"\n', ["'max-params'", "unknown suffix 'Q'"]),
    ('max-params = "-5M"\n', ["'max-params'", "negative"]),
    ('max-growth = "5 percent"\n', ["'max-growth'"]),
    ('input-shape = 3\n', ["'input-shape'"]),
    ('baseline = 3\n', ["'baseline'"]),
    ('models = 3\n', ["'models'"]),
    ('max-params = "5M\n', ["malformed TOML"]),
    ('[tool.sepconv\n', ["malformed TOML"]),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, fragments):
    path = write(tmp_path / "sepconv.toml", text)
    with pytest.raises(ConfigError) as info:
        cfg.load_config(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_key_in_pyproject_names_the_table(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[tool.sepconv]\nmax_params = "5M"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: unknown key 'max_params' in \[tool.sepconv\]"):
        cfg.load_config(str(path))


def test_malformed_pyproject_met_during_discovery_is_an_error(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.sepconv\n")
    with pytest.raises(ConfigError, match="pyproject.toml: malformed TOML"):
        cfg.find_config(str(tmp_path))


def test_glob_matching_no_file_names_file_and_key(tmp_path, monkeypatch):
    path = write(tmp_path / "sepconv.toml", '[models."models/*.onnx"]\nmax-params = "1M"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r'sepconv.toml: key models."models/\*.onnx" matches no file'):
        cfg.resolve_targets(cfg.load_config(str(path)), [], cfg.Settings())


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        cfg.discover(str(tmp_path / "nope.toml"), str(tmp_path))


def test_no_models_anywhere_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no MODEL given"):
        cfg.resolve_targets(cfg.Config(), [], cfg.Settings())


def test_a_relative_baseline_path_describes_the_model_from_any_folder(tmp_path, monkeypatch):
    from sepconv_cli.pipeline.baseline import Baseline

    write(tmp_path / "models" / "a.onnx", "x")
    (tmp_path / "sub").mkdir()
    for recorded in ("models/a.onnx", "./models/a.onnx", "../models/a.onnx", "a.onnx",
                     str(tmp_path / "models" / "a.onnx")):
        base = Baseline("b.json", recorded)
        for cwd, name in ((tmp_path, "models/a.onnx"), (tmp_path / "sub", "../models/a.onnx")):
            monkeypatch.chdir(cwd)
            assert base.describes(name), (recorded, cwd)
            assert not Baseline("b.json", recorded.replace("a.onnx", "b.onnx")).describes(name)
