"""Render a sepconv HTML report in headless Chromium: a PNG screenshot and the page's DOM after layout.

    python scripts/html_screenshot.py                      # docs/html_report.png from the digits sample
    python scripts/html_screenshot.py report.html out.png  # any report

Chromium comes from the distribution (Debian: ``apt-get install chromium``); ``find_chromium`` returns
None when it is absent, and the browser test skips saying so. Nothing is fetched from the network: the
reports are self-contained.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1100, 1500)
"""Screenshot size in CSS pixels (width, height)."""


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable on PATH, None when there is none."""
    return next((path for path in map(shutil.which, NAMES) if path), None)


def _run(browser: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="sepconv-chromium-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(html: str, png: str, window: tuple[int, int] = WINDOW, browser: str | None = None) -> None:
    """Write a ``window``-sized screenshot of the page ``html`` (a file path) to ``png``."""
    browser = browser or find_chromium()
    if browser is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium)")
    done = _run(browser, f"--screenshot={os.path.abspath(png)}", f"--window-size={window[0]},{window[1]}",
                "file://" + os.path.abspath(html))
    if not os.path.exists(png):
        raise RuntimeError(f"chromium wrote no screenshot: {done.stderr.strip()[-400:]}")


def dump_dom(html: str, browser: str | None = None) -> str:
    """The page's DOM as Chromium serialises it after loading ``html`` (a file path)."""
    browser = browser or find_chromium()
    if browser is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium)")
    done = _run(browser, "--dump-dom", "file://" + os.path.abspath(html))
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium --dump-dom failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def readme_report(html: str) -> None:
    """The README's example: the analysis of the trained digits sample as HTML."""
    sys.path.insert(0, REPO)
    import sepconv_cli

    report = sepconv_cli.analyze(os.path.join(REPO, "samples", "digits_vgg.onnx"))
    with open(html, "w", encoding="utf-8") as fh:
        fh.write(report.render("html").replace(os.path.join(REPO, ""), ""))


def main(argv: list[str]) -> int:
    if len(argv) == 2:
        screenshot(argv[0], argv[1])
        return 0
    png = os.path.join(REPO, "docs", "html_report.png")
    with tempfile.TemporaryDirectory(prefix="sepconv-report-") as folder:
        html = os.path.join(folder, "report.html")
        readme_report(html)
        screenshot(html, png)
    print(f"wrote {png} ({os.path.getsize(png):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
