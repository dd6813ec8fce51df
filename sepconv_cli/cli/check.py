"""`sepconv check` command: budgets as a CI gate (thin: gather settings, load, evaluate, render, exit).

Exit codes: 0 every budget holds, 1 any budget exceeded or unknown, 2 a model, config or baseline cannot
be read (``handle_errors``; a model that cannot be loaded is also reported, next to the models that
could, in the chosen format). Results go to stdout (or ``--output``); warnings go to stderr.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import typer

from sepconv_cli.cli.common import (
    ARCH_OPTION,
    KWARGS_OPTION,
    TRUST_PICKLE_OPTION,
    format_for,
    handle_errors,
    parse_input_shapes,
    stdout_is_terminal,
    write_atomic,
)
from sepconv_cli.core.budget import METRICS, budgets_from_mapping
from sepconv_cli.core.checks import BudgetOutcome, CheckResult, ModelError
from sepconv_cli.core.records import Report
from sepconv_cli.core.units import Kind
from sepconv_cli.errors import ConfigError, OutputError, SepconvError, UsageError
from sepconv_cli.pipeline.baseline import Baseline, check_recorded_model, load_baseline
from sepconv_cli.pipeline.budgets import evaluate_report
from sepconv_cli.pipeline.config import (
    GLOB_CHARS,
    Config,
    Settings,
    Target,
    discover,
    expand_glob,
    parse_growth,
    resolve_targets,
)
from sepconv_cli.render.check import (
    CHECK_SUFFIX_FORMATS,
    CheckFormat,
    CheckRenderOptions,
    check_renderer_for,
    render_markdown,
)

HELP = """Fail the build when a model outgrows its budget.

Budgets come from flags, or from [tool.sepconv] in pyproject.toml / sepconv.toml (found by walking up
from the current directory; keys are the flag names without dashes), flags taking precedence. Sizes take
suffixes: 5M, 1.2G (x1000), 20MB (x1000 bytes), 20MiB (x1024 bytes); shares take 0.01 or 1%.

Examples:

\b
  sepconv check model.onnx --max-params 5M --max-macs 600M --max-file-size 20MB
  sepconv analyze model.onnx --format json > baseline.json
  sepconv check model.onnx --baseline baseline.json --max-growth 5%
  sepconv check --format github --junit-xml check.xml   # budgets from pyproject

Exit codes: 0 every budget holds, 1 a budget is exceeded or unknown (MACs of rows with dynamic dims
cannot be counted: pin them with --input-shape), 2 a model, config or baseline cannot be read.
MACs: one multiply-accumulate = 1; FLOPs = 2 x MACs; params = trainable weight elements.
When GITHUB_STEP_SUMMARY is set, a Markdown summary is appended to that file too.
"""


def _budget_flag(help_text: str, flag: str):
    metavar = {Kind.COUNT: "COUNT", Kind.BYTES: "BYTES", Kind.FRACTION: "SHARE"}[METRICS[flag[2:]].kind]
    return typer.Option(None, flag, help=help_text, show_default=False, metavar=metavar)


def _cli_settings(flags: dict[str, str | None], shapes: list[str] | None, baseline: str | None,
                  growth: str | None) -> Settings:
    budgets = budgets_from_mapping({k: v for k, v in flags.items() if v is not None}, "cli")
    return Settings(budgets=budgets, input_shapes=tuple(shapes or ()), baseline=baseline,
                    max_growth=None if growth is None else parse_growth(growth, "--max-growth"))


def _expand_models(models: list[str] | None) -> list[str]:
    """Command-line MODEL args; a quoted glob (``'models/*.onnx'``) is expanded here, sorted. A file named
    twice (``m.onnx ./m.onnx``, or also by a glob) is kept once, where it was first named."""
    out: list[str] = []
    for model in models or []:
        if GLOB_CHARS & set(model) and not os.path.exists(model):
            found = expand_glob(model)
            if not found:
                raise UsageError(f"{model}: glob matches no file")
            out.extend(found)
        else:
            out.append(model)
    unique = {(os.path.realpath(m) if os.path.exists(m) else m): m for m in reversed(out)}
    return list(reversed(unique.values()))


@dataclass(frozen=True)
class Prepared:
    """A target with its parsed input shapes and its read baseline (None without one)."""

    target: Target
    shapes: tuple
    baseline: Baseline | None


def _check_growth_setting(target: Target) -> None:
    settings = target.settings
    if settings.max_growth is None or settings.baseline:
        return
    origin = settings.origins.get("max-growth")
    if origin is None:
        raise UsageError(f"{target.path}: --max-growth needs --baseline (a `sepconv analyze --format json` report)")
    raise ConfigError(f"{origin} needs a baseline (key 'baseline' or --baseline) for {target.path}")


def _prepare(target: Target, several: bool, baseline_any: bool = False) -> Prepared:
    settings = target.settings
    _check_growth_setting(target)
    if not settings.budgets and not settings.baseline:
        raise UsageError(f"{target.path}: no budget given (use --max-params, ..., --baseline or a config)")
    try:
        shapes = parse_input_shapes(list(settings.input_shapes))
    except UsageError as exc:
        raise UsageError(f"{target.path}: input-shape: {exc}") from None
    base = load_baseline(settings.baseline, settings.origins.get("baseline")) if settings.baseline else None
    if base and not baseline_any:
        check_recorded_model(base, target.path)
    if base and several and not base.describes(target.path):
        raise UsageError(f"{base.source}: records {base.model_path}, not {target.path}; with several models "
                         "give each model its own baseline in the config")
    return Prepared(target, shapes, base)


def _growth_details(report: Report, base: Baseline, outcomes: tuple[BudgetOutcome, ...]) -> tuple[str, ...]:
    """When a growth budget fails and the baseline report records its layers: the layers that grew most."""
    if all(r.passed or r.baseline is None for r in outcomes):
        return ()
    from sepconv_cli.pipeline.diff import diff_reports
    from sepconv_cli.pipeline.report_file import read_report
    from sepconv_cli.render.diff import growth_lines

    try:
        recorded = read_report(base.source)
    except SepconvError:
        return ()
    return growth_lines(diff_reports(recorded, report), base.source)


def _check_one(prepared: Prepared, torch_options: tuple[str, str | None, bool],
               details: dict[str, tuple[str, ...]] | None = None) -> tuple[BudgetOutcome, ...]:
    from sepconv_cli.backends.registry import LoadOptions, load

    target, base = prepared.target, prepared.baseline
    kwargs_json, arch, trust_pickle = torch_options
    report = load(target.path, LoadOptions(input_shapes=prepared.shapes, kwargs_json=kwargs_json, arch=arch,
                                           trust_pickle=trust_pickle)).report
    for warning in report.warnings:
        typer.echo(f"sepconv: warning: {target.path}: {warning}", err=True)
    found = evaluate_report(report, target.path, target.settings.budgets, base, target.settings.max_growth or 0.0)
    for name in found.missing:
        typer.echo(f"sepconv: warning: {base.source}: baseline has no {name} figure; its growth is not checked",
                   err=True)
    if base is not None and details is not None:
        details[target.path] = _growth_details(report, base, found.growth)
    return found.outcomes


def _check_all(prepared: list[Prepared], torch_options: tuple[str, str | None, bool],
               details: dict[str, tuple[str, ...]] | None = None) -> CheckResult:
    """Every model's outcomes; a model that cannot be loaded becomes an error entry (told on stderr).
    ``details`` receives, per model, the layers that grew most when a growth budget failed."""
    results: list[BudgetOutcome] = []
    errors: list[ModelError] = []
    for item in prepared:
        try:
            results.extend(_check_one(item, torch_options, details))
        except SepconvError as exc:
            typer.echo(f"sepconv: error: {exc}", err=True)
            errors.append(ModelError(item.target.path, str(exc)))
    return CheckResult(tuple(results), tuple(errors))


def _append_step_summary(result: CheckResult) -> None:
    """Append the Markdown summary to ``$GITHUB_STEP_SUMMARY`` (GitHub Actions shows it on the run page)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(render_markdown(result, CheckRenderOptions()) + "\n")
    except OSError as exc:
        typer.echo(f"sepconv: warning: cannot append to GITHUB_STEP_SUMMARY {path} ({exc.strerror})", err=True)


def _render(result: CheckResult, fmt: CheckFormat, output: str | None, junit_xml: str | None,
            details: dict[str, tuple[str, ...]] | None = None) -> None:
    color = output is None and stdout_is_terminal() and not os.environ.get("NO_COLOR")
    options = CheckRenderOptions(width=shutil.get_terminal_size((100, 24)).columns, color=color,
                                 details=tuple((m, lines) for m, lines in (details or {}).items() if lines))
    text = check_renderer_for(fmt)(result, options)
    if junit_xml:
        write_atomic(junit_xml, check_renderer_for(CheckFormat.JUNIT)(result, options))
    if output:
        write_atomic(output, text)
        unknown = result.count("unknown")
        told = f"{len(result.results)} budgets, {result.count('FAIL')} exceeded" + (f", {unknown} unknown"
                                                                                   if unknown else "")
        typer.echo(f"sepconv check: {told} -> {output}", err=True)
    else:
        typer.echo(text, nl=False)


@handle_errors
def check(
    models: list[str] | None = typer.Argument(None, metavar="[MODEL]...", help="Model files, entry points or quoted globs "
                                                 "(default: the models listed in the config).", show_default=False),
    max_params: str | None = _budget_flag("Most trainable weight elements (e.g. 5M).", "--max-params"),
    max_macs: str | None = _budget_flag("Most multiply-accumulates (e.g. 600M).", "--max-macs"),
    max_flops: str | None = _budget_flag("Most FLOPs = 2 x MACs (e.g. 1.2G).", "--max-flops"),
    max_file_size: str | None = _budget_flag("Largest model file (e.g. 20MB, 20MiB).", "--max-file-size"),
    max_weight_bytes: str | None = _budget_flag("Most bytes of stored weights.", "--max-weight-bytes"),
    max_layer_macs: str | None = _budget_flag("Most MACs in any single layer.", "--max-layer-macs"),
    max_uncounted: str | None = _budget_flag("Largest share of rows whose MACs cannot be counted "
                                                "(no formula or unknown shape), e.g. 1%.", "--max-uncounted"),
    min_separable_coverage: str | None = _budget_flag(
        "Smallest share of conv MACs in depthwise or 1x1 convs (e.g. 50%).", "--min-separable-coverage"),
    baseline: str | None = typer.Option(None, "--baseline", metavar="REPORT.json", help="Report from `sepconv analyze --format "
                                           "json` to compare params, MACs, file size, weight bytes with.",
                                           show_default=False),
    max_growth: str | None = typer.Option(None, "--max-growth", metavar="SHARE", help="Allowed growth over --baseline per "
                                             "figure (e.g. 5%; default 0).", show_default=False),
    input_shape: list[str] | None = typer.Option(None, "--input-shape", metavar="[NAME=]SHAPE", help="Pin dynamic dims: "
                                                    "name=1x3x224x224 (repeatable) or one unnamed shape.",
                                                    show_default=False),
    config: str | None = typer.Option(None, "--config", metavar="FILE", help="pyproject.toml or sepconv.toml to read "
                                         "(default: discovered upwards from the current directory).",
                                         show_default=False),
    no_config: bool = typer.Option(False, "--no-config", help="Ignore every config file."),
    fmt: CheckFormat | None = typer.Option(None, "--format", "-f", show_default=False, help="Output format "
                                              "[default: from the --output suffix (.json, .xml, .md, .csv, "
                                              ".html, .txt), else table]."),
    output: str | None = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the results to this file "
                                         "(atomically) instead of stdout.", show_default=False),
    junit_xml: str | None = typer.Option(None, "--junit-xml", metavar="FILE", help="Also write JUnit XML to this file "
                                            "(one run gives annotations and a test report).", show_default=False),
    kwargs: str = KWARGS_OPTION,
    arch: str | None = ARCH_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    trust_code: bool = typer.Option(False, "--trust-code", help="Allow entry points named only in the config "
                                    "(package.module:factory): they import and run Python code."),
    baseline_any: bool = typer.Option(False, "--baseline-any", help="Compare with a baseline recorded from a "
                                      "model of another file name."),
) -> None:
    """Check models against their budgets; exit 1 when any is exceeded."""
    flags = {"max-params": max_params, "max-macs": max_macs, "max-flops": max_flops,
             "max-file-size": max_file_size, "max-weight-bytes": max_weight_bytes,
             "max-layer-macs": max_layer_macs, "max-uncounted": max_uncounted,
             "min-separable-coverage": min_separable_coverage}
    cli = _cli_settings(flags, input_shape, baseline, max_growth)
    if config and no_config:
        raise UsageError("--config and --no-config exclude each other")
    found = Config() if no_config else discover(config, os.getcwd())
    targets = resolve_targets(found, _expand_models(models), cli, trust_code=trust_code)
    prepared = [_prepare(t, len(targets) > 1, baseline_any) for t in targets]  # every refusal before any model loads
    inputs = [p.target.path for p in prepared] + [p.baseline.source for p in prepared if p.baseline]
    for out in filter(os.path.exists, (output or "", junit_xml or "")):
        if any(os.path.exists(i) and os.path.samefile(out, i) for i in inputs):
            raise OutputError(f"{out}: is a model or baseline being checked; refusing to overwrite it")
    chosen = format_for(fmt, output, CHECK_SUFFIX_FORMATS, CheckFormat.TABLE)  # a bad suffix fails before loading
    details: dict[str, tuple[str, ...]] = {}
    result = _check_all(prepared, (kwargs, arch, trust_pickle), details)
    if result.results:  # nothing loaded: the stderr errors are the whole report
        _render(result, chosen, output, junit_xml, details)
        _append_step_summary(result)
    if not result.ok:
        raise typer.Exit(2 if result.errors else 1)

