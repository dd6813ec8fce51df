"""HTML reports: parsed structure of every page (sections, inline SVG charts, no script, no network),
the size of a ResNet-50 report, and one real browser run (headless Chromium renders the page, takes a
screenshot and dumps the DOM; skipped, saying so, when Chromium is not installed)."""

from __future__ import annotations

import importlib.util
import os
import re
from html.parser import HTMLParser

import pytest
from repo_paths import REPO
from report_builders import small_report, vgg_report

from sepconv_cli.core.checks import BudgetOutcome, CheckResult, ModelError
from sepconv_cli.pipeline.diff import diff_reports
from sepconv_cli.render import OutputFormat, RenderOptions, render
from sepconv_cli.render.check import CheckFormat, CheckRenderOptions, check_renderer_for
from sepconv_cli.render.diff import DiffOptions
from sepconv_cli.render.html_convert import frontier_chart
from sepconv_cli.render.html_diff import render_html as render_diff_html


class Page(HTMLParser):
    """Counts tags, collects section ids, attributes that could reach the network, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.sections: list[str] = []
        self.urls: list[str] = []
        self.classes: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        self.classes.extend((attrs.get("class") or "").split())
        for key in ("src", "href"):
            if attrs.get(key):
                self.urls.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def _self_contained(page: Page, text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert page.tags.get("script", 0) == 0 and page.tags.get("link", 0) == 0 and page.tags.get("img", 0) == 0
    assert page.urls == [] and not re.search(r"https?://", text.replace('http://www.w3.org', ''))


def test_analysis_page_has_every_section_and_its_charts():
    report = vgg_report()
    text = render(report, OutputFormat.HTML)
    page = Page(text)
    _self_contained(page, text)
    assert page.sections == ["overview", "candidates", "summary", "layers", "hierarchy", "excluded"]
    body = "".join(page.text)
    assert "input float32[1x3x32x32]" in body and "1.19M" in body
    assert page.tags["tr"] >= len(report.layers) + 1  # a row per layer under the header
    assert page.classes.count("bar") >= 2 * len(report.layers)  # params and MACs bars per row
    assert page.tags["details"] >= 3  # block1..block3 scopes
    # the builders' candidates carry no energy curves: no energy chart, the table alone
    assert "energy" not in page.classes and "block3.conv2" in body


def test_energy_chart_marks_break_even_and_the_chosen_rank():
    from dataclasses import replace

    report = vgg_report()
    curve = (0.55, 0.7, 0.8, 0.86, 0.9, 0.93, 0.96, 0.98, 1.0)
    cands = tuple(replace(c, energies=curve) for c in report.candidates)
    text = render(replace(report, candidates=cands), OutputFormat.HTML)
    page = Page(text)
    assert page.classes.count("energy") == len(cands)
    assert page.classes.count("tstar") == len(cands) and page.classes.count("curve") >= len(cands)
    chosen = sum(1 for c in cands if c.rank is not None)
    assert page.classes.count("chosen") == chosen
    assert "T*=" in "".join(page.text)


def test_view_options_reach_the_page():
    text = render(vgg_report(), OutputFormat.HTML, RenderOptions())
    top = render(vgg_report(), OutputFormat.HTML, RenderOptions(view=__import__(
        "sepconv_cli.render.views", fromlist=["ViewOptions"]).ViewOptions(top=3)))
    assert "Showing 3 rows of 17" in top and "Showing" not in text


def test_check_page_has_a_headroom_bar_per_budget_and_growth_baselines():
    result = CheckResult((
        BudgetOutcome("a.onnx", "max-params", 1186378, 1e6, False, "max-params: 1.19M > 1M"),
        BudgetOutcome("a.onnx", "max-file-size", 4748609, 5e6, True, "max-file-size: 4.53 MiB <= 4.77 MiB"),
        BudgetOutcome("a.onnx", "growth-params", 1.21e6, 1.2e6, False, "growth", baseline=1.15e6),
    ), (ModelError("b.onnx", "b.onnx: no such file"),))
    text = check_renderer_for(CheckFormat.HTML)(result, CheckRenderOptions())
    page = Page(text)
    _self_contained(page, text)
    assert page.sections == ["model-0", "model-1"]
    assert page.classes.count("bar") == 3 and page.classes.count("fail") >= 2
    body = "".join(page.text)
    assert "1.15M, +5.2%" in body and "b.onnx: no such file" in body


def test_diff_and_convert_pages():
    before = vgg_report(with_candidates=False)
    after = small_report()
    text = render_diff_html(diff_reports(before, after), DiffOptions())
    page = Page(text)
    _self_contained(page, text)
    assert page.sections == ["before-after"]
    assert "removed" in "".join(page.text) and page.classes.count("bar") >= 2
    chart = frontier_chart([{"label": "T=1", "macs": 18e6, "latency_ms": 0.9, "error": 0.9, "chosen": False},
                            {"label": "energy 0.9", "macs": 146e6, "latency_ms": 8.0, "error": 0.05, "chosen": True}])
    frontier = Page(chart)
    assert frontier.classes.count("chosen") == 1 and frontier.classes.count("point") == 1
    assert "latency (ms)" in "".join(frontier.text)


def test_resnet50_report_stays_under_one_megabyte():
    torch = pytest.importorskip("torch")
    from archs import ResNet50

    import sepconv_cli

    torch.manual_seed(0)
    report = sepconv_cli.analyze(ResNet50().eval(), input_shape=(1, 3, 224, 224))
    text = report.render("html")
    assert len(text.encode()) < 1_000_000
    page = Page(text)
    assert page.classes.count("energy") == len(report.candidates) == 17


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("html_screenshot", os.path.join(REPO, "scripts", "html_screenshot.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path):
    shots = _screenshot_module()
    browser = shots.find_chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the browser test needs it")
    html, png = tmp_path / "report.html", tmp_path / "report.png"
    shots.readme_report(str(html))
    shots.screenshot(str(html), str(png), browser=browser)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    dom = shots.dump_dom(str(html), browser=browser)
    for ident in ("overview", "candidates", "layers", "hierarchy"):
        assert f'id="{ident}"' in dom
    assert dom.count("<svg") >= 20 and "block3.conv2" in dom and "<script" not in dom
