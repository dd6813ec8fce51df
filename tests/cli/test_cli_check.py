"""`sepconv check` end to end: budgets at pass and fail, formats, config, baselines, bad input.

Models are small ONNX graphs built here; their params and MACs are computed independently in the test.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from onnx import helper
from onnx_builders import model, save, vinfo, weight
from repo_paths import REPO
from typer.main import get_command
from typer.testing import CliRunner

from sepconv_cli.cli import app
from sepconv_cli.core.budget import METRICS
from sepconv_cli.core.checks import BudgetOutcome, CheckResult
from sepconv_cli.core.units import Kind
from sepconv_cli.render.check import (
    CHECK_RENDERERS,
    CheckFormat,
    CheckRenderOptions,
    check_renderer_for,
)

ENV = {"COLUMNS": "120", "NO_COLOR": "1", "GITHUB_STEP_SUMMARY": None}

# stem 3->8 3x3 pad 1, Relu, depthwise 8->8 3x3 (group 8), pointwise 8->16 1x1, all with bias, on 1x3x8x8
PARAMS = (8 * 3 * 9 + 8) + (8 * 1 * 9 + 8) + (16 * 8 + 16)          # 448
STEM_MACS = 8 * 64 * 3 * 9                                          # 13,824
MACS = STEM_MACS + 8 * 64 * 1 * 9 + 16 * 64 * 8                     # 26,624
COVERAGE = (8 * 64 * 9 + 16 * 64 * 8) / MACS


def tiny_model(channels_out: int = 16, custom_op: bool = False):
    pads = [1, 1, 1, 1]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="stem", kernel_shape=[3, 3], pads=pads),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", kernel_shape=[3, 3], pads=pads, group=8),
        helper.make_node("Conv", ["c2", "w3", "b3"], ["y"], name="pw", kernel_shape=[1, 1]),
    ]
    inits = [weight("w1", (8, 3, 3, 3), 1), weight("b1", (8,), 2), weight("w2", (8, 1, 3, 3), 3),
             weight("b2", (8,), 4), weight("w3", (channels_out, 8, 1, 1), 5), weight("b3", (channels_out,), 6)]
    if custom_op:
        nodes.append(helper.make_node("Mystery", ["y"], ["z"], name="mystery", domain="com.example"))
    out = vinfo("z" if custom_op else "y", None)
    m = model(nodes, [vinfo("x", ("N", 3, "H", "W"))], [out], inits)  # H, W symbolic: MACs only as a formula
    if custom_op:
        m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


@pytest.fixture()
def tiny(tmp_path):
    return save(tiny_model(), tmp_path, "tiny.onnx")


def invoke(*args, env=None, cwd=None):
    runner = CliRunner(env={**ENV, **(env or {})})
    if cwd is None:
        return runner.invoke(app, ["check", *args])
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, ["check", *args])
    finally:
        os.chdir(old)


def values_for(path):
    """Every metric's value for the tiny model, from arithmetic done here (weights are float32)."""
    return {"max-params": PARAMS, "max-macs": MACS, "max-flops": 2 * MACS, "max-file-size": os.path.getsize(path),
            "max-weight-bytes": 4 * PARAMS, "max-layer-macs": STEM_MACS, "max-uncounted": 0.0,
            "min-separable-coverage": COVERAGE}


def test_every_format_has_a_renderer_and_every_metric_a_flag():
    assert set(CHECK_RENDERERS) == set(CheckFormat)
    result = CheckResult((BudgetOutcome("m.onnx", "max-params", 10, 5, False, "max-params: 10 > 5"),))
    for fmt in CheckFormat:
        assert isinstance(check_renderer_for(fmt)(result, CheckRenderOptions()), str)
    options = {opt for param in get_command(app).commands["check"].params for opt in param.opts}
    assert {f"--{metric}" for metric in METRICS} <= options


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_each_budget_passes_and_fails_through_the_cli(tiny, metric):
    value = values_for(tiny)[metric]
    upper = METRICS[metric].upper
    if metric == "max-uncounted":
        passing, failing = "0", None  # value 0: cannot exceed any limit; failing case below
    else:
        above, below = value * 1.01, value * 0.99
        if METRICS[metric].kind is Kind.COUNT:  # count limits are whole numbers
            above, below = math.ceil(above), math.floor(below)
        passing, failing = (repr(above), repr(below)) if upper else (repr(below), repr(above))
    ok = invoke(tiny, f"--{metric}", passing, "--input-shape", "1x3x8x8", "--format", "json")
    assert ok.exit_code == 0, ok.stderr
    (row,) = json.loads(ok.stdout)["results"]
    assert row["metric"] == metric and row["passed"] is True
    assert row["value"] == pytest.approx(value)
    if failing is not None:
        bad = invoke(tiny, f"--{metric}", failing, "--input-shape", "1x3x8x8", "--format", "json")
        assert bad.exit_code == 1 and "error" not in bad.stderr
        assert json.loads(bad.stdout)["results"][0]["passed"] is False


def test_uncounted_share_fails_on_an_op_without_formula(tmp_path):
    path = save(tiny_model(custom_op=True), tmp_path, "custom.onnx")
    result = invoke(path, "--max-uncounted", "10%", "--input-shape", "1x3x8x8", "--format", "json")
    assert result.exit_code == 1, result.stderr
    (row,) = json.loads(result.stdout)["results"]
    assert row["value"] == pytest.approx(1 / 5)   # 5 rows, one without a formula


def test_table_lists_value_limit_headroom_and_verdict(tiny):
    result = invoke(tiny, "--max-params", "1k", "--max-macs", "20k", "--input-shape", "1x3x8x8")
    assert result.exit_code == 1 and "error" not in result.stderr
    lines = result.stdout.splitlines()
    params_line = next(line for line in lines if "max-params" in line)
    assert re.search(r"448\s+1k\s+552 \(\+55%\)\s+pass", params_line)
    macs_line = next(line for line in lines if "max-macs" in line)
    assert re.search(r"26\.6k\s+20k\s+-6\.62k \(-33%\)\s+FAIL", macs_line)
    assert "1 of 2 budgets exceeded across 1 model" in result.stdout
    assert "\x1b[" not in result.stdout and max(len(line) for line in lines) <= 120


def test_paths_with_brackets_are_shown_verbatim(tmp_path):
    save(tiny_model(), tmp_path, "net[v2].onnx")
    result = invoke("net[v2].onnx", "--max-params", "1k", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^net\[v2\]\.onnx$", result.stdout, re.M), result.stdout
    assert re.search(r"^max-params +448 +1k", result.stdout, re.M), result.stdout


def test_junit_has_one_testcase_per_model_and_budget(tmp_path):
    paths = [save(tiny_model(c), tmp_path, f"m{c}.onnx") for c in (16, 64)]
    result = invoke(*paths, "--max-params", "600", "--max-macs", "1M", "--input-shape", "1x3x8x8",
                    "--format", "junit")
    assert result.exit_code == 1
    root = ET.fromstring(result.stdout)
    assert root.tag == "testsuites" and root.get("tests") == "4" and root.get("failures") == "1"
    cases = [(suite.get("name"), case.get("name"), case.find("failure") is not None)
             for suite in root.iter("testsuite") for case in suite.iter("testcase")]
    # m64: pointwise 8->64 adds 48*(8+1) params: 448 + 432 = 880 > 600
    assert cases == [(paths[0], "max-params", False), (paths[0], "max-macs", False),
                     (paths[1], "max-params", True), (paths[1], "max-macs", False)]


WORKFLOW_COMMAND = re.compile(r"^::(error|warning|notice)( [a-z]+=[^,:\r\n]*(,[a-z]+=[^,:\r\n]*)*)?::[^\r\n]*$")


def test_github_lines_follow_the_workflow_command_syntax(tiny):
    result = invoke(tiny, "--max-params", "100", "--max-macs", "1M", "--input-shape", "1x3x8x8", "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert all(WORKFLOW_COMMAND.match(line) for line in lines), lines
    errors = [line for line in lines if line.startswith("::error")]
    assert len(errors) == 1 and "title=sepconv check%3A max-params exceeded" in errors[0]
    assert f"file={tiny}" in errors[0] and errors[0].endswith("max-params: 448 > 100")


def test_markdown_and_step_summary(tiny, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = invoke(tiny, "--max-params", "1M", "--input-shape", "1x3x8x8", "--format", "markdown",
                    env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0
    assert "| model | budget | value | limit | headroom | result |" in result.stdout
    assert f"| `{tiny}` | max-params | 448 | 1M |" in result.stdout
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "## sepconv check" in text and "✅ all 1 budget hold" in text


def test_output_and_junit_files_are_written(tiny, tmp_path):
    out, junit = tmp_path / "check.json", tmp_path / "check.xml"
    result = invoke(tiny, "--max-params", "1M", "--format", "json", "-o", str(out), "--junit-xml", str(junit))
    assert result.exit_code == 0 and result.stdout == ""
    assert "1 budgets, 0 exceeded" in result.stderr
    assert json.loads(out.read_text())["ok"] is True
    assert ET.parse(junit).getroot().get("tests") == "1"


def test_twenty_models_in_one_run(tmp_path):
    for i in range(20):
        save(tiny_model(), tmp_path, f"m{i:02d}.onnx")
    result = invoke(str(tmp_path / "*.onnx"), "--max-params", "1k", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["total"] == 20 and len(data["models"]) == 20


def baseline_of(path, out, tmp_path):
    """Record a baseline the documented way (`sepconv analyze --format json`)."""
    result = CliRunner(env=ENV).invoke(app, ["analyze", path, "--format", "json", "--input-shape", "1x3x8x8"])
    assert result.exit_code == 0, result.stderr
    out.write_text(result.stdout)
    return str(out)


def test_baseline_growth_pass_and_fail(tmp_path):
    path = save(tiny_model(16), tmp_path, "model.onnx")
    base = baseline_of(path, tmp_path / "baseline.json", tmp_path)
    same = invoke(path, "--baseline", base, "--format", "json", "--input-shape", "1x3x8x8")
    assert same.exit_code == 0, same.stderr
    rows = {r["metric"]: r for r in json.loads(same.stdout)["results"]}
    assert list(rows) == ["growth-params", "growth-macs", "growth-file-size", "growth-weight-bytes"]
    assert rows["growth-macs"]["value"] == rows["growth-macs"]["limit"] == MACS
    save(tiny_model(20), tmp_path, "model.onnx")   # 448 -> 484 params (+8.0%)
    within = invoke(path, "--baseline", base, "--max-growth", "10%", "--format", "json", "--input-shape", "1x3x8x8")
    assert within.exit_code == 0
    grown = invoke(path, "--baseline", base, "--max-growth", "5%", "--format", "json", "--input-shape", "1x3x8x8")
    assert grown.exit_code == 1
    rows = {r["metric"]: r for r in json.loads(grown.stdout)["results"]}
    assert rows["growth-params"]["value"] == 484 and rows["growth-params"]["limit"] == pytest.approx(448 * 1.05)
    assert not rows["growth-params"]["passed"]


def test_config_discovery_and_cli_precedence(tmp_path):
    (tmp_path / "models").mkdir()
    save(tiny_model(), tmp_path / "models", "a.onnx")
    save(tiny_model(64), tmp_path / "models", "b.onnx")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sepconv]\nmax-params = "1k"\ninput-shape = "1x3x8x8"\n\n'
        '[tool.sepconv.models."models/*.onnx"]\nmax-macs = "100k"\n')
    sub = tmp_path / "models"
    result = invoke("--format", "json", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["total"] == 4
    overridden = invoke("--max-params", "500", "--format", "json", cwd=tmp_path)
    assert overridden.exit_code == 1
    failed = [(r["model"], r["metric"]) for r in json.loads(overridden.stdout)["results"] if not r["passed"]]
    assert failed == [(os.path.join("models", "b.onnx"), "max-params")]
    from_sub = invoke("b.onnx", "--format", "json", cwd=sub)   # found walking up; table matches by path
    assert [r["metric"] for r in json.loads(from_sub.stdout)["results"]] == ["max-params", "max-macs"]
    isolated = invoke("b.onnx", "--no-config", "--max-macs", "1G", "--format", "json", cwd=sub)
    assert [r["metric"] for r in json.loads(isolated.stdout)["results"]] == ["max-macs"]


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sepconv: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_budget_flags(tiny):
    assert_one_line_error(invoke(tiny, "--max-params", "5Q"), "--max-params", "unknown suffix 'Q'")
    assert_one_line_error(invoke(tiny, "--max-macs", "-5M"), "--max-macs", "negative")
    assert_one_line_error(invoke(tiny, "--max-growth", "5%"), "--max-growth needs --baseline")
    assert_one_line_error(invoke(tiny), "no budget given")
    assert_one_line_error(invoke("missing/*.onnx", "--max-params", "1M"), "missing/*.onnx", "glob matches no file")


@pytest.mark.parametrize("text, fragments", [
    ('[tool.sepconv\nmax-params = "1M"\n', ["pyproject.toml", "malformed TOML"]),
    ('[tool.sepconv]\nmax-params = "5Q"\n', ["pyproject.toml", "'max-params'", "unknown suffix 'Q'"]),
    ('[tool.sepconv]\nmax-params = "-1M"\n', ["pyproject.toml", "'max-params'", "negative"]),
    ('[tool.sepconv]\nmax-param = "1M"\n', ["pyproject.toml", "unknown key 'max-param'"]),
    ('[tool.sepconv.models."nothing/*.onnx"]\nmax-params = "1M"\n', ["pyproject.toml", 'models."nothing/*.onnx"',
                                                                     "matches no file"]),
])
def test_bad_config_exits_2_naming_file_and_key(tmp_path, text, fragments):
    (tmp_path / "pyproject.toml").write_text(text)
    assert_one_line_error(invoke(cwd=tmp_path), *fragments)


@pytest.mark.parametrize("content, fragments", [
    ("not json", ["baseline is not JSON"]),
    ("[1, 2]", ["not a sepconv report"]),
    ('{"totals": {}}', ["key 'schema_version' missing"]),
    ('{"schema_version": 99, "model": {}, "totals": {}}', ["key 'schema_version' is 99"]),
    ('{"schema_version": 1, "model": {"path": "m", "format": "onnx"}, "totals": {"params": 1}, "layers": [],'
     ' "uncounted": [], "candidates": [], "excluded": []}', ["key 'totals.macs' missing"]),
    ('{"schema_version": 1, "model": {"path": "m", "format": "onnx"}, "layers": []}', ["key 'totals'"]),
])
def test_bad_baseline_exits_2_naming_file_and_key(tiny, tmp_path, content, fragments):
    base = tmp_path / "base.json"
    base.write_text(content)
    out = tmp_path / "out.xml"
    result = invoke(tiny, "--baseline", str(base), "--format", "junit", "-o", str(out))
    assert_one_line_error(result, str(base), *fragments)
    assert not out.exists()


def test_unloadable_model_exits_2_without_output_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    out = tmp_path / "out.json"
    assert_one_line_error(invoke(str(bad), "--max-params", "1M", "-o", str(out)), "bad.onnx")
    assert not out.exists()


SAMPLE = os.path.join(REPO, "samples", "vgg_cifar.onnx")


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def shell(command: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def documented_project(tmp_path):
    """A project laid out as docs/ci.md describes: its pyproject.toml and the sample model."""
    if not os.path.exists(SAMPLE):
        pytest.skip("samples/vgg_cifar.onnx has not been generated")
    doc = open(os.path.join(REPO, "docs", "ci.md"), encoding="utf-8").read()
    (tmp_path / "pyproject.toml").write_text(fenced(doc, "toml")[0])
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "vgg_cifar.onnx").write_bytes(open(SAMPLE, "rb").read())
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "NO_COLOR": "1",
           "COLUMNS": "100", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    return doc, tmp_path, env


@pytest.mark.slow
def test_documented_ci_job_runs_against_the_samples(documented_project):
    import yaml

    doc, cwd, env = documented_project
    for line in fenced(doc, "bash")[0].strip().splitlines():
        assert shell(line, cwd, env).returncode == 0, line
    steps = yaml.safe_load(fenced(doc, "yaml")[0])["jobs"]["sepconv-check"]["steps"]
    commands = [step["run"] for step in steps if str(step.get("run", "")).startswith("sepconv ")]
    assert commands == ["sepconv check --format github --junit-xml sepconv-check.xml"]
    done = shell(commands[0], cwd, env)
    assert done.returncode == 0, done.stderr
    assert all(WORKFLOW_COMMAND.match(line) for line in done.stdout.splitlines()), done.stdout
    cases = [(c.get("classname"), c.get("name"), c.find("failure") is None)
             for c in ET.parse(cwd / "sepconv-check.xml").getroot().iter("testcase")]
    names = ["max-params", "max-macs", "max-file-size", "max-uncounted", "growth-params", "growth-macs",
             "growth-file-size", "growth-weight-bytes"]
    assert cases == [("sepconv.check.samples_vgg_cifar_onnx", name, True) for name in names]
    assert "## sepconv check" in (cwd / "summary.md").read_text()
    over = shell(commands[0] + " --max-params 1M", cwd, env)
    assert over.returncode == 1
    assert over.stdout.startswith("::error file=samples/vgg_cifar.onnx,title=sepconv check%3A max-params exceeded::")
    failures = [c.get("name") for c in ET.parse(cwd / "sepconv-check.xml").getroot().iter("testcase")
                if c.find("failure") is not None]
    assert failures == ["max-params"]


@pytest.mark.slow
def test_documented_failure_output_is_what_check_prints(documented_project):
    doc, cwd, env = documented_project
    console = fenced(doc, "console")[0].strip().splitlines()
    command, expected = console[0].removeprefix("$ "), console[1:]
    done = shell(command, cwd, env)
    assert done.returncode == 1 and done.stderr == ""
    assert [line.rstrip() for line in done.stdout.splitlines()] == expected


def test_pre_commit_hook_runs_check():
    import yaml

    (hook,) = yaml.safe_load(open(os.path.join(REPO, ".pre-commit-hooks.yaml"), encoding="utf-8"))
    assert hook["id"] == "sepconv-check" and hook["entry"] == "sepconv check"
    assert hook["pass_filenames"] is False
    assert re.search(hook["files"], "models/net.onnx") and re.search(hook["files"], "pyproject.toml")


def test_baseline_figures_come_from_the_analyze_report(tmp_path):
    from sepconv_cli.pipeline.baseline import load_baseline

    path = save(tiny_model(), tmp_path, "model.onnx")
    base = load_baseline(baseline_of(path, tmp_path / "b.json", tmp_path))
    assert base.model_path == path
    assert base.figures == {"params": PARAMS, "macs": MACS, "file-size": os.path.getsize(path),
                            "weight-bytes": 4 * PARAMS}


def test_one_baseline_for_several_models_is_refused(tmp_path):
    paths = [save(tiny_model(c), tmp_path, f"m{c}.onnx") for c in (16, 32)]
    base = baseline_of(paths[0], tmp_path / "b.json", tmp_path)
    assert_one_line_error(invoke(*paths, "--baseline", base), "b.json", f"not {paths[1]}")


def test_bad_input_shape_names_the_model(tiny):
    assert_one_line_error(invoke(tiny, "--max-params", "1M", "--input-shape", "1xfoo-3"), tiny, "input-shape")


SNAPSHOT_RESULT = CheckResult((
    BudgetOutcome("a.onnx", "max-params", 1186378, 1e6, False, "max-params: 1.19M > 1M"),
    BudgetOutcome("a.onnx", "max-file-size", 4748609, 5e6, True, "max-file-size: 4.53 MiB <= 4.77 MiB"),
    BudgetOutcome("a.onnx", "min-separable-coverage", 0.25, 0.5, False, "min-separable-coverage: 25% < 50%"),
))

MARKDOWN_SNAPSHOT = """## sepconv check

❌ 2 of 3 budgets exceeded across 1 model

| model | budget | value | limit | headroom | result |
|---|---|---:|---:|---:|---|
| `a.onnx` | max-params | 1.19M | 1M | -186k (-19%) | ❌ **FAIL** |
| `a.onnx` | max-file-size | 4.53 MiB | 4.77 MiB | 245 KiB (+5%) | ✅ pass |
| `a.onnx` | min-separable-coverage | 25% | 50% | -25% | ❌ **FAIL** |
"""


def test_markdown_snapshot():
    assert check_renderer_for(CheckFormat.MARKDOWN)(SNAPSHOT_RESULT, CheckRenderOptions()) == MARKDOWN_SNAPSHOT


def test_json_snapshot():
    data = json.loads(check_renderer_for(CheckFormat.JSON)(SNAPSHOT_RESULT, CheckRenderOptions()))
    assert {k: data[k] for k in ("schema_version", "ok", "failed", "unknown", "total", "models", "errors")} == {
        "schema_version": 1, "ok": False, "failed": 2, "unknown": 0, "total": 3, "models": ["a.onnx"], "errors": []}
    assert data["results"][0] == {"model": "a.onnx", "metric": "max-params", "unit": "count", "value": 1186378,
                                  "limit": 1000000, "headroom": -186378, "passed": False, "status": "fail",
                                  "message": "max-params: 1.19M > 1M"}
    assert [(r["unit"], r["headroom"]) for r in data["results"][1:]] == [("bytes", 251391), ("fraction", -0.25)]


def test_table_colours_fail_red_and_pass_green_only_when_asked():
    render = check_renderer_for(CheckFormat.TABLE)
    coloured = render(SNAPSHOT_RESULT, CheckRenderOptions(width=100, color=True))
    assert "\x1b[1;31mFAIL" in coloured and "\x1b[32mpass" in coloured
    plain = render(SNAPSHOT_RESULT, CheckRenderOptions(width=100, color=False))
    assert "\x1b[" not in plain
    lines = [line.rstrip() for line in plain.splitlines()]
    assert lines[0] == "a.onnx"
    assert lines[3:] == [
        "max-params                 1.19M        1M   -186k (-19%)  FAIL",
        "max-file-size           4.53 MiB  4.77 MiB  245 KiB (+5%)  pass",
        "min-separable-coverage       25%       50%           -25%  FAIL",
        "2 of 3 budgets exceeded across 1 model",
    ]


def unknown_macs_output(tiny, fmt):
    """`check` on a model with a dynamic batch dim (no --input-shape): its MACs cannot be counted."""
    return invoke(tiny, "--max-macs", "1G", "--max-params", "1M", "--format", fmt)


def test_mac_budget_on_uncounted_rows_is_unknown_and_fails_in_json(tiny):
    result = unknown_macs_output(tiny, "json")
    assert result.exit_code == 1, result.stderr
    data = json.loads(result.stdout)
    params, macs = data["results"]
    assert params["status"] == "pass" and data["unknown"] == 1 and data["ok"] is False
    assert macs["status"] == "unknown" and macs["passed"] is False and macs["value"] is None
    assert macs["unknown"] == "3 rows not counted: pin dynamic dims with --input-shape"


@pytest.mark.parametrize("fmt, fragments", [
    ("table", ["max-macs", "?", "unknown", "3 rows not counted: pin dynamic dims with --input-shape",
               "1 of 2 budgets unknown across 1 model"]),
    ("junit", ['type="BudgetUnknown"', "3 rows not counted"]),
    ("github", ["::error file=", "title=sepconv check%3A max-macs unknown", "3 rows not counted"]),
    ("markdown", ["| max-macs | ? | 1G | ? | ❌ **unknown**: 3 rows not counted", "❌ 1 of 2 budgets unknown"]),
])
def test_unknown_outcome_is_shown_as_a_failure_in_every_format(tiny, fmt, fragments):
    result = unknown_macs_output(tiny, fmt)
    assert result.exit_code == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stdout, result.stdout
    if fmt == "junit":
        assert ET.fromstring(result.stdout).get("failures") == "1"


def test_growth_of_uncounted_macs_is_unknown(tmp_path):
    path = save(tiny_model(), tmp_path, "model.onnx")
    base = baseline_of(path, tmp_path / "b.json", tmp_path)
    result = invoke(path, "--baseline", base, "--format", "json")   # no --input-shape: MACs not counted
    assert result.exit_code == 1
    rows = {r["metric"]: r["status"] for r in json.loads(result.stdout)["results"]}
    assert rows == {"growth-params": "pass", "growth-macs": "unknown", "growth-file-size": "pass",
                    "growth-weight-bytes": "pass"}


def config_baseline_project(tmp_path):
    """models/a.onnx with a baseline recorded from the project folder, models/b.onnx, and a sub folder."""
    (tmp_path / "models").mkdir()
    (tmp_path / "baselines").mkdir()
    (tmp_path / "sub").mkdir()
    save(tiny_model(), tmp_path / "models", "a.onnx")
    save(tiny_model(32), tmp_path / "models", "b.onnx")
    recorded = CliRunner(env=ENV).invoke(app, ["analyze", os.path.join("models", "a.onnx"), "--format", "json",
                                               "--input-shape", "1x3x8x8"])   # run from tmp_path: relative path
    assert recorded.exit_code == 0, recorded.stderr
    (tmp_path / "baselines" / "a.json").write_text(recorded.stdout)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sepconv]\nmax-params = "5M"\ninput-shape = "1x3x8x8"\n'
        '[tool.sepconv.models."models/a.onnx"]\nbaseline = "baselines/a.json"\nmax-growth = "5%"\n'
        '[tool.sepconv.models."models/b.onnx"]\nmax-macs = "1M"\n')


def test_config_baseline_gives_the_same_result_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config_baseline_project(tmp_path)
    verdicts = []
    for cwd in (tmp_path, tmp_path / "sub", tmp_path / "models"):
        result = invoke("--format", "json", cwd=cwd)
        assert result.exit_code == 0, (cwd, result.stderr)
        verdicts.append([(r["metric"], r["status"]) for r in json.loads(result.stdout)["results"]])
    assert verdicts[0] == verdicts[1] == verdicts[2] and ("growth-macs", "pass") in verdicts[0]


def bad_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    return str(bad)


@pytest.mark.parametrize("fmt, fragments", [
    ("table", ["tiny.onnx", "max-params", "error: ", "1 model could not be loaded"]),
    ("json", ['"error": ']),
    ("junit", ["<error ", 'type="ModelNotLoaded"', 'errors="1"']),
    ("github", ["::error file=", "title=sepconv check%3A model not loaded", "bad.onnx"]),
    ("markdown", ["| max-params |", "❌ **error**: "]),
])
def test_an_unloadable_model_is_reported_next_to_the_loaded_ones(tiny, tmp_path, fmt, fragments):
    summary = tmp_path / "summary.md"
    result = invoke(tiny, bad_file(tmp_path), "--max-params", "1M", "--format", fmt,
                    env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("sepconv: error: ")]
    assert len(errors) == 1 and "bad.onnx" in errors[0], result.stderr
    for fragment in fragments:
        assert fragment in result.stdout, result.stdout
    assert "bad.onnx" in result.stdout and "tiny.onnx" in result.stdout
    assert "❌ **error**" in summary.read_text()
    if fmt == "json":
        data = json.loads(result.stdout)
        assert data["ok"] is False and [e["model"] for e in data["errors"]] == [str(tmp_path / "bad.onnx")]


def test_a_model_named_twice_is_checked_once(tiny, tmp_path):
    dotted = os.path.join(".", os.path.relpath(tiny, tmp_path))
    for names in ((tiny, str(tmp_path / "tin*.onnx")), ("tiny.onnx", dotted)):
        result = invoke(*names, "--max-params", "1M", "--format", "junit", cwd=tmp_path)
        assert result.exit_code == 0, result.stderr
        suites = [suite.get("name") for suite in ET.fromstring(result.stdout).iter("testsuite")]
        assert suites == [names[0]]


@pytest.mark.parametrize("suffix, check", [
    (".json", lambda text: json.loads(text)["ok"] is True),
    (".xml", lambda text: ET.fromstring(text.split("\n", 1)[1]).tag == "testsuites"),
    (".md", lambda text: text.startswith("## sepconv check")),
    (".txt", lambda text: "budget" in text and "pass" in text),
])
def test_output_suffix_chooses_the_format(tiny, tmp_path, suffix, check):
    out = tmp_path / f"result{suffix}"
    result = invoke(tiny, "--max-params", "1M", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert check(out.read_text())
    explicit = invoke(tiny, "--max-params", "1M", "-o", str(out), "--format", "table")
    assert explicit.exit_code == 0 and "budget" in out.read_text() and not out.read_text().startswith("{")


def config_error(tmp_path, text, *args):
    (tmp_path / "sepconv.toml").write_text(text)
    save(tiny_model(), tmp_path, "m.onnx")
    return invoke("m.onnx", *args, cwd=tmp_path)


def test_missing_config_baseline_names_the_config_file_and_key(tmp_path):
    result = config_error(tmp_path, 'baseline = "nope.json"\n')
    assert_one_line_error(result, "sepconv.toml", "key 'baseline'", "nope.json", "not found")


def test_config_growth_without_baseline_names_the_config_file_and_key(tmp_path):
    result = config_error(tmp_path, 'max-params = "5M"\nmax-growth = "5%"\n')
    assert_one_line_error(result, "sepconv.toml", "key 'max-growth'", "needs a baseline", "m.onnx")


def test_config_glob_matching_nothing_is_named_when_a_model_is_given(tmp_path):
    result = config_error(tmp_path, '[models."nomatch/*.onnx"]\nmax-params = "5M"\n')
    assert_one_line_error(result, "sepconv.toml", 'models."nomatch/*.onnx"', "matches no file")


def test_headroom_far_past_a_tiny_limit_stays_readable(tiny):
    result = invoke(tiny, "--max-params", "1", "--max-macs", "10", "--input-shape", "1x3x8x8")
    assert result.exit_code == 1
    assert re.search(r"^max-params +448 +1 +-447 \(448x limit\) +FAIL", result.stdout, re.M), result.stdout
    assert re.search(r"^max-macs +26\.6k +10 +-26\.6k \(>999x limit\) +FAIL", result.stdout, re.M), result.stdout
    assert "%" not in result.stdout.split("max-params", 1)[1].split("\n")[0]


def test_fractional_count_limits_are_refused(tiny):
    assert_one_line_error(invoke(tiny, "--max-params", "1.5"), "--max-params", "not a whole number")
    assert_one_line_error(invoke(tiny, "--max-macs", "10.25"), "--max-macs", "not a whole number")
    assert invoke(tiny, "--max-params", "1.5k", "--max-flops", "1.5M", "--input-shape", "1x3x8x8").exit_code == 0


def test_loader_warnings_reach_stderr_naming_the_model(tiny):
    result = invoke(tiny, "--max-params", "1M")
    assert result.exit_code == 0
    assert f"sepconv: warning: {tiny}: onnx checker: " in result.stderr
