"""Table names and widths: ONNX node names read as module paths (unique), and tables fit the terminal by
cutting names in the middle, dropping bars below 100 columns and naming any column they leave out."""

from __future__ import annotations

import pytest
from rich.console import Console

from sepconv_cli.core.names import fold_scopes, module_path
from sepconv_cli.render import text as tx
from sepconv_cli.render.fit import BAR_MIN_WIDTH, MIN_NAME, Cell, Column, Role, fit_table, hidden_note
from sepconv_cli.render.names import display_names


@pytest.mark.parametrize("name,path", [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/layer4/layer4.0/downsample/downsample.0/Conv", "layer4.0.downsample.0"),
    ("/block1/conv1/Conv", "block1.conv1"),
    ("/features/features.0/Conv", "features.0"),
    ("/Flatten", "Flatten"),
    ("layer1.0.conv1", "layer1.0.conv1"),  # already a module path
    ("conv_a", "conv_a"),
])
def test_module_path(name, path):
    assert module_path(name) == path


def test_fold_scopes_keeps_plain_parts_and_replaces_spelled_out_parents():
    assert fold_scopes(("a", "b", "c")) == "a.b.c"
    assert fold_scopes(("layer1", "layer1.0", "conv1")) == "layer1.0.conv1"
    assert fold_scopes(()) == ""


def test_display_names_stay_unique():
    names = ["/block1/conv1/Conv", "/block1/conv1/Relu", "/block1/pool/MaxPool", "/Add", "/Add_1"]
    shown = display_names(names)
    assert shown == {"/block1/conv1/Conv": "block1.conv1", "/block1/conv1/Relu": "block1.conv1/Relu",
                     "/block1/pool/MaxPool": "block1.pool", "/Add": "Add", "/Add_1": "Add_1"}
    assert len(set(shown.values())) == len(names)
    # a full name equal to another's short form: everything is shown in full
    clash = display_names(["/a/b/Conv", "a.b"])
    assert clash == {"/a/b/Conv": "/a/b/Conv", "a.b": "a.b"}


def test_shorten_cuts_in_the_middle_the_same_way_everywhere():
    assert tx.shorten("layer4.0.downsample.0", 12) == "lay…sample.0"
    assert tx.shorten("short", 12) == "short"
    fitted = tx.fit_names(["model.encoder.layer1.conv", "model.encoder.layer2.conv"], 14)
    assert all(len(n) <= 14 for n in fitted) and len(set(fitted)) == 2


COLUMNS = (Column("name", role=Role.NAME), Column("op"), Column("params", right=True), Column("MACs", right=True),
           Column("extra", drop=1, label="extra column"), Column("", role=Role.BAR))
ROWS = [[Cell("encoder.stage1.block3.conv_expand"), "Conv 3x3 s1", "1.19M", "153M", "something long", "████"],
        [Cell("head"), "Gemm", "41.0k", "41.0k", "x", "▏"]]


def _width(fitted) -> int:
    console = Console(width=400, record=True)
    console.print(fitted.table)
    return max(len(line.rstrip()) for line in console.export_text().splitlines())


def test_wide_tables_keep_everything():
    fitted = fit_table(COLUMNS, ROWS, 120)
    assert fitted.hidden == () and len(fitted.table.columns) == len(COLUMNS)


def test_the_bar_goes_first_below_100_columns_and_never_a_number():
    fitted = fit_table(COLUMNS, ROWS, BAR_MIN_WIDTH - 1)
    headers = [c.header for c in fitted.table.columns]
    assert "" not in headers and {"params", "MACs"} <= set(headers)
    assert fitted.hidden == ()  # a bar is decoration: the share stays beside it


def test_narrow_tables_cut_names_then_drop_named_columns():
    fitted = fit_table(COLUMNS, ROWS, 60)
    assert _width(fitted) <= 60
    assert fitted.hidden == ()  # cutting the name was enough
    narrow = fit_table(COLUMNS, ROWS, 44)
    assert narrow.hidden == ("extra column",)
    assert "extra column" in hidden_note(narrow.hidden, 44) and "44 columns" in hidden_note(narrow.hidden, 44)
    assert _width(narrow) <= 44
    names = [str(c) for c in narrow.table.columns[0]._cells]
    assert any("…" in n for n in names) and all(len(n) >= min(MIN_NAME, 4) for n in names)


def test_wrap_lines_breaks_between_words_with_hanging_indent():
    lines = tx.wrap_lines(["  a reason that is rather long and must wrap somewhere"], 24)
    assert all(len(line) <= 24 for line in lines)
    assert lines[0].startswith("  a") and lines[1].startswith("    ")
