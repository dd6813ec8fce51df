"""JUnit XML for `sepconv check`: one ``<testsuite>`` per model, one ``<testcase>`` per budget.

CI systems (GitHub, GitLab, Jenkins, Azure) render JUnit natively, so a failed budget shows up like a
failed test (an unknown one too, type ``BudgetUnknown``) and a model that could not be loaded as a
testcase ``load`` with an ``<error>``. The document is built with ``xml.etree`` (escaping is its job),
so it is always well formed. Suites carry the model path as it was given; classnames carry it with its
dots and slashes made ``_`` (``classname``), so that viewers do not split it into packages.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from sepconv_cli.core.checks import BudgetOutcome, CheckResult, ModelError
from sepconv_cli.render.check import CheckRenderOptions, error_text, summary_line

SUITES_NAME = "sepconv check"
CLASS_PREFIX = "sepconv.check."


def classname(model: str) -> str:
    """``sepconv.check.<model>`` with every character of the model path other than letters, digits, ``_``
    and ``-`` made ``_`` (``models/net.v2.onnx`` -> ``sepconv.check.models_net_v2_onnx``): viewers split
    classnames at dots into packages, and a path's dots would split it."""
    return CLASS_PREFIX + (re.sub(r"[^0-9A-Za-z_-]", "_", model) or "_")


def _testcase(parent: ET.Element, outcome: BudgetOutcome) -> None:
    case = ET.SubElement(parent, "testcase", name=outcome.metric, classname=classname(outcome.model),
                         time="0")
    if not outcome.passed:
        kind = "BudgetUnknown" if outcome.unknown else "BudgetExceeded"
        failure = ET.SubElement(case, "failure", message=outcome.message, type=kind)
        failure.text = f"{outcome.model}: {outcome.message}"
    ET.SubElement(case, "system-out").text = outcome.message


def _error_case(parent: ET.Element, error: ModelError) -> None:
    case = ET.SubElement(parent, "testcase", name="load", classname=classname(error.model), time="0")
    ET.SubElement(case, "error", message=error.message, type="ModelNotLoaded").text = error_text(error)


def render_junit(result: CheckResult, options: CheckRenderOptions) -> str:
    """The JUnit XML document (UTF-8 declaration, trailing newline)."""
    failed = sum(1 for r in result.results if not r.passed)
    root = ET.Element("testsuites", name=SUITES_NAME, tests=str(len(result.results) + len(result.errors)),
                      failures=str(failed), errors=str(len(result.errors)), time="0")
    for model in result.models:
        outcomes = [r for r in result.results if r.model == model]
        errors = [e for e in result.errors if e.model == model]
        suite = ET.SubElement(root, "testsuite", name=model, tests=str(len(outcomes) + len(errors)),
                              failures=str(sum(1 for r in outcomes if not r.passed)), errors=str(len(errors)),
                              skipped="0", time="0")
        for outcome in outcomes:
            _testcase(suite, outcome)
        for error in errors:
            _error_case(suite, error)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- {summary_line(result)} -->\n{body}\n'
