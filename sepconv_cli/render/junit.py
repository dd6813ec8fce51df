"""JUnit XML for `sepconv check`: one ``<testsuite>`` per model, one ``<testcase>`` per budget.

CI systems (GitHub, GitLab, Jenkins, Azure) render JUnit natively, so a failed budget shows up like a
failed test. The document is built with ``xml.etree`` (escaping is its job), so it is always well formed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sepconv_cli.records import CheckResult, Violation
from sepconv_cli.render.check import CheckRenderOptions, summary_line

SUITES_NAME = "sepconv check"


def _testcase(parent: ET.Element, outcome: Violation) -> None:
    case = ET.SubElement(parent, "testcase", name=outcome.metric, classname=f"sepconv.check.{outcome.model}",
                         time="0")
    if not outcome.passed:
        failure = ET.SubElement(case, "failure", message=outcome.message, type="BudgetExceeded")
        failure.text = f"{outcome.model}: {outcome.message}"
    ET.SubElement(case, "system-out").text = outcome.message


def _by_model(result: CheckResult) -> dict[str, list[Violation]]:
    groups: dict[str, list[Violation]] = {}
    for outcome in result.results:
        groups.setdefault(outcome.model, []).append(outcome)
    return groups


def render_junit(result: CheckResult, options: CheckRenderOptions) -> str:
    """The JUnit XML document (UTF-8 declaration, trailing newline)."""
    failed = sum(1 for r in result.results if not r.passed)
    root = ET.Element("testsuites", name=SUITES_NAME, tests=str(len(result.results)), failures=str(failed),
                      errors="0", time="0")
    for model, outcomes in _by_model(result).items():
        suite = ET.SubElement(root, "testsuite", name=model, tests=str(len(outcomes)),
                              failures=str(sum(1 for r in outcomes if not r.passed)), errors="0", skipped="0",
                              time="0")
        for outcome in outcomes:
            _testcase(suite, outcome)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- {summary_line(result)} -->\n{body}\n'
