"""`sepconv diff A B`: layer matching (name, module path, position and op, splits), totals, every format
(golden files for table, JSON and Markdown; HTML by structure), JSON reports as inputs, and errors."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import replace

import pytest
from golden_files import check_golden, normalise
from repo_paths import REPO
from report_builders import vgg_report
from typer.testing import CliRunner

from sepconv_cli.cli import app
from sepconv_cli.core.records import Layer, ModelInfo, Report
from sepconv_cli.pipeline.diff import Change, MatchedBy, diff_reports
from sepconv_cli.pipeline.report_file import report_from_dict

SAMPLE = os.path.join(REPO, "samples", "vgg_cifar.onnx")


def _run(*args: str, width: int = 80):
    result = CliRunner().invoke(app, ["diff", *args], env={"COLUMNS": str(width), "NO_COLOR": None,
                                                            "SEPCONV_DEBUG": None})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The seed VGG and its T=1 conversion, in one folder (relative names keep goldens stable)."""
    folder = tmp_path_factory.mktemp("diff")
    shutil.copy(SAMPLE, folder / "vgg.onnx")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        done = CliRunner().invoke(app, ["convert", "vgg.onnx", "-o", "vgg_t1.onnx", "--rank", "1", "--no-verify"])
        assert done.exit_code == 0, done.stderr
    finally:
        os.chdir(cwd)
    return folder


def _report(names_ops: list[tuple[str, str, int]]) -> Report:
    layers = tuple(Layer(name, op, params=p, macs=p * 10, output_shapes=((1, p),)) for name, op, p in names_ops)
    return Report(ModelInfo("m.onnx", "onnx"), layers, params=sum(p for _, _, p in names_ops))


def test_matching_by_name_module_path_position_and_split():
    before = _report([("/stem/conv/Conv", "Conv", 10), ("/stem/act/Relu", "Relu", 0), ("/body/conv/Conv", "Conv", 20),
                      ("/head/Gemm", "Gemm", 5), ("/gone/Softmax", "Softmax", 0)])
    after = _report([("stem.conv", "Conv", 10), ("/stem/act2/Relu", "Relu", 0), ("/body/conv/Conv/depthwise", "Conv", 3),
                     ("/body/conv/Conv/pointwise", "Conv", 4), ("/head/Gemm", "Gemm", 6), ("/new/Sigmoid", "Sigmoid", 0)])
    diff = diff_reports(before, after)
    rows = [(c.change, c.matched_by, c.name) for c in diff.changes]
    assert rows == [
        (Change.SAME, MatchedBy.MODULE, "/stem/conv/Conv"),
        (Change.SAME, MatchedBy.POSITION, "/stem/act/Relu"),
        (Change.SPLIT, MatchedBy.PREFIX, "/body/conv/Conv"),
        (Change.CHANGED, MatchedBy.NAME, "/head/Gemm"),
        (Change.ADDED, MatchedBy.NONE, "/new/Sigmoid"),
        (Change.REMOVED, MatchedBy.NONE, "/gone/Softmax"),  # removed rows stand before the next match, or last
    ]
    split = diff.changes[2]
    assert split.params == (20, 7) and split.macs == (200, 70) and split.shape_changed
    assert diff.count(Change.SAME) == 2 and len(diff.changed) == 4


def test_identical_models_have_no_changes():
    diff = diff_reports(vgg_report(), vgg_report())
    assert diff.changed == () and all(c.matched_by is MatchedBy.NAME for c in diff.changes)


@pytest.mark.parametrize("fmt,suffix", [("table", "txt"), ("json", "json"), ("markdown", "md")])
def test_original_vs_converted_golden(pair, monkeypatch, fmt, suffix):
    monkeypatch.chdir(pair)
    result = _run("vgg.onnx", "vgg_t1.onnx", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    if fmt == "json":
        data = json.loads(result.stdout)
        assert data["counts"] == {"same": 12, "changed": 0, "split": 6, "added": 0, "removed": 0}
        assert data["totals"]["params"] == {"before": 1_186_378, "after": 174_821, "delta": 174_821 - 1_186_378}
        split = next(r for r in data["layers"] if r["change"] == "split")
        assert [x["name"] for x in split["after"]] == ["/block1/conv1/Conv/depthwise", "/block1/conv1/Conv/pointwise"]
    else:
        assert "block1.conv1" in result.stdout and "1.19M -> 175k (-85.3%)" in result.stdout
    # the converted file's size follows the serializer, not the diff: left out of the snapshot
    text = re.sub(r"^(file     |\| file \| ).*$", r"\1<size>", normalise(result.stdout), flags=re.M)
    if fmt == "json":
        data = json.loads(result.stdout)
        data["totals"]["file_size"] = data["before"]["file_size"] = data["after"]["file_size"] = "<size>"
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    check_golden(f"diff_vgg_t1.{suffix}", text)


def test_table_fits_narrow_terminals_and_all_lists_unchanged_rows(pair, monkeypatch):
    monkeypatch.chdir(pair)
    narrow = _run("vgg.onnx", "vgg_t1.onnx", "--format", "table", width=60)
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60
    assert "Not shown at 60 columns" in narrow.stdout
    every = _run("vgg.onnx", "vgg_t1.onnx", "--format", "table", "--all", width=120)
    assert "softmax" in every.stdout and "softmax" not in _run("vgg.onnx", "vgg_t1.onnx", "-f", "table").stdout


def test_recorded_report_against_a_model_and_html_output(pair, monkeypatch):
    monkeypatch.chdir(pair)
    recorded = CliRunner().invoke(app, ["analyze", "vgg.onnx", "--format", "json", "-o", "base.json"])
    assert recorded.exit_code == 0
    result = _run("base.json", "vgg_t1.onnx", "-o", "diff.html")
    assert result.exit_code == 0 and result.stdout == "" and "diff.html" in result.stderr
    page = (pair / "diff.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="before-after"' in page and "<script" not in page
    data = json.loads((pair / "base.json").read_text())
    assert report_from_dict(data, "base.json").params == 1_186_378


def test_file_sizes_of_models_without_a_file_read_n_a():
    with_file = vgg_report()
    no_file = replace(vgg_report(), model=replace(vgg_report().model, path="pkg:net", format="entrypoint",
                                                  file_size=0))
    from sepconv_cli.render.diff import DiffOptions, render_table

    text = render_table(diff_reports(no_file, with_file), DiffOptions())
    assert "file     n/a -> 4.53 MiB" in text


def test_errors_are_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = _run("a.onnx", SAMPLE)
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1 and "a.onnx" in missing.stderr
    (tmp_path / "bad.json").write_text('{"schema_version": 1}')
    bad = _run("bad.json", SAMPLE)
    assert bad.exit_code == 2 and "not a sepconv report" in bad.stderr
    suffix = _run(SAMPLE, SAMPLE, "-o", "d.yaml")
    assert suffix.exit_code == 2 and "suffix '.yaml'" in suffix.stderr and not (tmp_path / "d.yaml").exists()
