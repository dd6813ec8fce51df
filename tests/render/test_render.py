"""Renderers: format registry, JSON schema and integer-ness, table width and colour, CSV and Markdown
content, and golden snapshots of every format."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest
from golden_files import check_golden
from report_builders import VGG_PARAMS, small_report, vgg_report

from sepconv_cli.core.records import SCHEMA_VERSION
from sepconv_cli.render import (
    RENDERERS,
    SUFFIX_FORMATS,
    OutputFormat,
    RenderOptions,
    SortKey,
    ViewOptions,
    render,
    renderer_for,
)
from sepconv_cli.render import text as tx

ANSI = re.compile(r"\x1b\[[0-9;]*m")
FLOAT_KEYS = {"energy_t1", "energy_at_rank", "break_even", "energy_target", "share", "macs_share_saved",
              "params_share_saved", "macs_share_saved_at_rank", "params_share_saved_at_rank", "params_ratio",
              "macs_ratio"}


def test_every_format_has_a_renderer():
    assert set(RENDERERS) == set(OutputFormat)
    for fmt in OutputFormat:
        assert callable(renderer_for(fmt))
    assert set(SUFFIX_FORMATS.values()) <= set(OutputFormat)


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_renderer_returns_text_ending_in_newline(fmt):
    for report in (vgg_report(), small_report(), vgg_report(with_candidates=False)):
        text = render(report, fmt)
        assert isinstance(text, str) and text.endswith("\n")


def _numbers(node, key=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _numbers(v, key)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield key, node


def test_json_has_the_fixed_keys_and_integer_counts():
    data = json.loads(render(vgg_report(), OutputFormat.JSON))
    assert data["schema_version"] == SCHEMA_VERSION
    assert {"path", "format"} <= set(data["model"])
    assert data["totals"]["params"] == VGG_PARAMS
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    assert {"params", "macs", "flops", "buffers"} <= set(data["totals"])
    for layer in data["layers"]:
        assert {"name", "op", "params", "macs", "input_shapes", "output_shapes"} <= set(layer)
    assert {"op", "count"} <= set(data["uncounted"][0])
    for cand in data["candidates"]:
        assert {"name", "params", "macs", "params_separable", "macs_separable", "energy_t1", "rank",
                "convertible"} <= set(cand)
    for key, value in _numbers(data):
        assert isinstance(value, int) or key in FLOAT_KEYS, (key, value)
    assert sum(c["params_separable"] for c in data["candidates"]) + 40_970 == 174_821


def test_json_without_weights_and_with_exclusions():
    data = json.loads(render(small_report(), OutputFormat.JSON))
    assert data["candidates"][0]["energy_t1"] is None
    assert data["candidates"][0]["convertible"] is False
    assert data["excluded"] == [{"name": "conv_b", "reason": "1x1 kernel: nothing to separate"}]
    unknown = next(x for x in data["layers"] if x["name"] == "mm")
    assert unknown["macs"] is None and unknown["input_shapes"] == [["N", 16], [16, 4]]
    assert data["unknown_rows"] == [{"name": "mm", "op": "MatMul", "note": "shape unknown: N"}]
    assert data["totals"]["weight_bytes"] == {"float32": 1280, "float16": 2304}


def test_json_keeps_every_layer_and_adds_the_view():
    options = RenderOptions(view=ViewOptions(depth=1, sort=SortKey.MACS, top=2))
    data = json.loads(render(vgg_report(), OutputFormat.JSON, options))
    assert len(data["layers"]) == len(vgg_report().layers)
    view = data["view"]
    assert (view["depth"], view["sort"], view["top"]) == (1, "macs", 2)
    assert [row["name"] for row in view["rows"] if row["level"] == 0] == ["block2", "block3"]
    assert view["candidates"] == [c["name"] for c in data["candidates"][:2]]
    assert len(data["candidates"]) == len(vgg_report().candidates)  # full rows stay


def test_json_render_does_not_import_rich():
    code = ("import sys; sys.path.insert(0, 'tests'); from report_builders import vgg_report; "
            "from sepconv_cli.render import render; render(vgg_report(), 'json'); "
            "assert 'rich' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("view", [ViewOptions(), ViewOptions(depth=2), ViewOptions(sort=SortKey.MACS, top=4)])
def test_table_fits_80_columns_without_colour(view):
    for report in (vgg_report(), vgg_report(weights=False), small_report()):
        text = render(report, OutputFormat.TABLE, RenderOptions(view=view, width=80))
        assert not ANSI.search(text)
        assert max(len(line) for line in text.splitlines()) <= 80


def test_table_colour_only_when_asked():
    text = render(vgg_report(), OutputFormat.TABLE, RenderOptions(color=True))
    assert ANSI.search(text)
    assert ANSI.sub("", text).splitlines()[0].startswith("Layers of samples/vgg_cifar.onnx")


def test_table_says_what_it_could_not_count_and_why():
    text = render(small_report(), OutputFormat.TABLE)
    assert re.search(r"mm\s+MatMul\s+Nx4\s+64\s+\?", text)
    assert "Rows not counted (1)" in text and "mm (MatMul): shape unknown: N" in text
    assert "Energy kept needs weights" in text
    assert "conv_a: weight is not a constant" in text
    assert "1x1 kernel: nothing to separate: conv_b" in text
    vgg = render(vgg_report(), OutputFormat.TABLE)
    assert "Ops without a MAC formula (not in the total): Relu x6, MaxPool x3, Flatten x1" in vgg
    assert "Energy kept needs weights" not in vgg
    assert "6 at T=1" in vgg and "1.19M→175k (6.79x)" in vgg


def test_csv_sections_parse():
    rows = list(csv.DictReader(io.StringIO(render(small_report(), OutputFormat.CSV))))
    by_section: dict[str, list] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    totals = {r["name"]: int(r["value"]) for r in by_section["total"]}
    assert totals["params"] == 1472 and totals["flops"] == 2 * totals["macs"] == 45056
    assert [r["name"] for r in by_section["layer"]] == ["conv_a", "conv_b", "mm"]
    mm = by_section["layer"][2]
    assert mm["macs"] == "" and mm["note"] == "shape unknown: N"
    (cand,) = by_section["candidate"]
    assert (int(cand["params_t1"]), cand["convertible"], cand["energy_t1"]) == (200, "false", "")
    assert by_section["excluded"][0]["note"] == "1x1 kernel: nothing to separate"


def test_markdown_tables_and_escaping():
    text = render(small_report(), OutputFormat.MARKDOWN)
    assert "## Separable candidates" in text and "## Not candidates" in text
    assert "| `conv_b` | Conv 1x1 s1 | 1x16x4x4 | 1x16x4x4 | 16->16 | 256 | 4,096 | 18.2% |" in text
    assert "No candidate is convertible." in text
    from sepconv_cli.render.markdown import _cell
    assert _cell("a|b") == "a\\|b"


@pytest.mark.parametrize("value,expected", [(0, "0"), (999, "999"), (1000, "1.00k"), (36_928, "36.9k"),
                                            (590_080, "590k"), (999_500, "1.00M"), (1_186_378, "1.19M"),
                                            (15_470_000_000, "15.5G"), (None, "?")])
def test_compact_numbers(value, expected):
    assert tx.compact(value) == expected


def test_text_helpers():
    assert tx.size(4_745_512) == "4.53 MiB" and tx.size(100) == "100 B"
    assert tx.bar(0.0, 4) == "    " and tx.bar(1.0, 4) == "████" and tx.bar(0.5, 4) == "██  "
    assert tx.exact_compact(1_186_378) == "1,186,378 (1.19M)"


GOLDEN_CASES = {
    "vgg": (vgg_report, ViewOptions()),
    "vgg_depth2": (vgg_report, ViewOptions(depth=2, sort=SortKey.MACS)),
    "vgg_meta": (lambda: vgg_report(weights=False), ViewOptions()),
    "small": (small_report, ViewOptions()),
}
SUFFIX = {OutputFormat.TABLE: "txt", OutputFormat.JSON: "json", OutputFormat.CSV: "csv",
          OutputFormat.MARKDOWN: "md"}


# one JSON snapshot is enough: the other cases are checked structurally above
GOLDEN_PAIRS = [(case, fmt) for case in sorted(GOLDEN_CASES) for fmt in OutputFormat
                if (fmt is not OutputFormat.JSON or case == "vgg") and fmt is not OutputFormat.HTML]
# HTML is checked by its structure (tests/render/test_html.py), not byte for byte


@pytest.mark.parametrize("case,fmt", GOLDEN_PAIRS)
def test_golden(case, fmt):
    build, view = GOLDEN_CASES[case]
    text = render(build(), fmt, RenderOptions(view=view, width=80))
    check_golden(f"render_{case}.{SUFFIX[fmt]}", text)


def test_conv_geometry_text():
    from sepconv_cli.core.records import ConvSpec

    def spec(**kw):
        base = dict(in_channels=32, out_channels=32, kernel=(3, 3), stride=(1, 1), dilation=(1, 1))
        return ConvSpec(**{**base, **kw})

    assert tx.conv_geometry(spec()) == "3x3 s1"
    assert tx.conv_geometry(spec(stride=(2, 2), groups=4)) == "3x3 s2 g4"
    assert tx.conv_geometry(spec(groups=32)) == "3x3 s1 dw"
    assert tx.conv_geometry(spec(kernel=(5,), stride=(1,), dilation=(2,), transposed=True)) == "5 s1 d2 tr"
    assert tx.conv_geometry(spec(stride=(1, 2))) == "3x3 s1x2"
    assert tx.conv_geometry(spec(stride=(2, 1), dilation=(1, 3))) == "3x3 s2x1 d1x3"


def test_table_says_when_rows_are_cut():
    text = render(vgg_report(), OutputFormat.TABLE, RenderOptions(view=ViewOptions(sort=SortKey.MACS, top=3)))
    assert "Showing the 3 heaviest of 17 rows; totals are for the whole model." in text
    assert "Showing the 3 of 6 candidates saving the most MACs." in text
    assert "Params   1,186,378 (1.19M)" in text
    assert "Showing" not in render(vgg_report(), OutputFormat.TABLE)


def test_csv_layer_rows_carry_input_shapes_and_conv_geometry():
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(render(small_report(), OutputFormat.CSV))))
    conv = next(r for r in rows if r["section"] == "layer" and r["name"] == "conv_b")
    assert (conv["input_shapes"], conv["in_channels"], conv["out_channels"], conv["kernel"], conv["groups"]) == \
        ("1x16x4x4", "16", "16", "1x1", "1")
    others = [r for r in rows if r["section"] == "layer" and not r["op"].startswith("Conv")]
    assert others and all(r["in_channels"] == "" for r in others)
