"""GitHub Actions workflow commands for `sepconv check`.

One ``::error file=MODEL,title=sepconv check: BUDGET::MESSAGE`` per exceeded or unknown budget and per
model that could not be loaded (GitHub shows it as an annotation on the run and on the file when the
model is tracked in the repository), one ``::notice`` per model whose budgets all hold (none for a model
with a failing or unknown budget), and a summary notice.
Values are escaped as the workflow-command syntax requires: ``%``, CR and LF in messages; additionally
``:`` and ``,`` in properties.
"""

from __future__ import annotations

from sepconv_cli.core.checks import CheckResult
from sepconv_cli.render.check import CheckRenderOptions, error_text, summary_line


def escape_data(text: str) -> str:
    """Escape a workflow-command message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (``file=``, ``title=``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: str) -> str:
    """``::name key=value,key=value::message`` with everything escaped."""
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def render_github(result: CheckResult, options: CheckRenderOptions) -> str:
    """Workflow commands, one per line, ending with a summary notice."""
    lines = []
    passes: dict[str, list[str]] = {}
    for outcome in result.results:
        if outcome.passed:
            passes.setdefault(outcome.model, []).append(outcome.message)
        else:
            verdict = "unknown" if outcome.unknown else "exceeded"
            lines.append(command("error", f"{outcome.model}: {outcome.message}", file=outcome.model,
                                 title=f"sepconv check: {outcome.metric} {verdict}"))
    for error in result.errors:
        lines.append(command("error", error_text(error), file=error.model, title="sepconv check: model not loaded"))
    failing = {r.model for r in result.results if not r.passed} | {e.model for e in result.errors}
    for model, messages in passes.items():
        if model in failing:  # "budgets hold" would read as a pass for a model that fails
            continue
        lines.append(command("notice", f"{model}: " + "; ".join(messages), file=model,
                             title="sepconv check: budgets hold"))
    lines.append(command("notice", summary_line(result), title="sepconv check"))
    return "\n".join(lines) + "\n"
