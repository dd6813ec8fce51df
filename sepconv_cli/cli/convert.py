"""`sepconv convert` command (thin: parse options, call the pipeline, render, choose the exit code)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import typer

from sepconv_cli.backends.registry import LoadOptions
from sepconv_cli.cli.common import handle_errors, parse_input_shapes, terminal_width
from sepconv_cli.cli.convert_report import report_format, write_report
from sepconv_cli.cli.run_limits import MAX_MEMORY_OPTION, RUN_TIMEOUT_OPTION, bounded_runs, run_limits
from sepconv_cli.errors import UsageError
from sepconv_cli.pipeline.convert import ConvertRequest, Events
from sepconv_cli.pipeline.convert import convert as run_pipeline
from sepconv_cli.pipeline.targeted import DEFAULT_OUTPUT_ERROR, Goal, GoalKind
from sepconv_cli.planner import Init, PlanOptions
from sepconv_cli.planner.targets import Metric, parse_output_error, parse_target

HELP = (
    "Rewrite regular convolutions as depthwise-separable (depthwise -> 1x1 pointwise) by per-channel SVD, "
    "refit them on unlabeled inputs, verify the result and write it with a JSON manifest beside it.\n\n"
    "Goals (pick one; sepconv chooses which layers to convert and at which rank): --target-latency 2x "
    "(measured in onnxruntime, batch 1, --threads), --target-macs 4x|25%|500M, --target-params 4x|25%|1M, "
    "or --max-output-error E (end-to-end relative L2 error of the outputs on held-back inputs; of the residual "
    "part for models whose output is the input plus a residual). Without a goal or rank rule, convert ships the "
    "cheapest plan that is never slower: within --max-output-error 0.05 with --calibrate, else a data-free "
    "plan (ranks keeping 90% of each kernel's energy, only layers measured faster).\n\n"
    "Rank rules by hand (instead of a goal): --rank T | --rank full | --energy E | --max-error E (weight "
    "error); with --calibrate, --max-layer-error E alone searches each layer's rank from T=1. "
    "Exit codes: 0 ok (also when nothing is worth converting), 1 verification error above --tolerance (the "
    "file is still written), 2 refused or failed.\n\n"
    "Calibration (--calibrate FILE) refits each converted layer's pointwise weights and bias on unlabeled "
    "inputs. FILE is an .npz holding one array per model input, keyed by the input's name (any name for a "
    "single-input model), shaped (samples, *input shape without the batch axis), of the input's dtype; or "
    "a folder of such .npz files or of .npy files (single-input models). Save the inputs alone, e.g. "
    "np.savez('calib.npz', input=x_train[:256]) where 'input' is the model's input name. Verification then "
    "runs on the calibration inputs held back from the fit.\n\n"
    "Examples:\n\n"
    "\b\n"
    "  sepconv convert model.onnx -o fast.onnx --target-latency 2x --calibrate calib.npz\n"
    "  sepconv convert model.onnx -o small.onnx --target-macs 4x --calibrate calib.npz\n"
    "  sepconv convert model.onnx -o m.onnx --max-output-error 0.02 --calibrate calib.npz\n"
    "  sepconv convert model.onnx -o m.onnx --rank full --tolerance 1e-5  # lossless: proves the rewrite\n"
    "  sepconv convert model.onnx --top 3 --energy 0.95 --dry-run         # print a hand-made plan only\n"
    "  sepconv convert mypkg.nets:build -o net.pt2 --input-shape 1x3x224x224"
)

# Layers to rewrite before a progress bar is worth drawing.
_PROGRESS_MIN_LAYERS = 4


class ConvertFormat(str, Enum):
    """Where and how the conversion report is written."""

    TABLE = "table"
    JSON = "json"


def _table(result) -> tuple[str, bool]:
    from sepconv_cli.render.convert import render_table

    return render_table(result, width=terminal_width()), True


def _json(result) -> tuple[str, bool]:
    from sepconv_cli.render.convert import render_json

    return render_json(result), False


# format -> renderer returning (text, goes_to_stderr)
RENDERERS: dict[ConvertFormat, Callable] = {ConvertFormat.TABLE: _table, ConvertFormat.JSON: _json}


def parse_rank(rank: str | None, energy: float | None, max_error: float | None) -> dict:
    """The rank rule as PlanOptions fields; UsageError when several rules (or a bad --rank) are given."""
    given = [flag for flag, value in (("--rank", rank), ("--energy", energy), ("--max-error", max_error))
             if value is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} are mutually exclusive: give one rank rule")
    if rank is None:
        return {"energy": energy, "max_error": max_error}
    if rank.strip().lower() == "full":
        return {"full_rank": True}
    if not rank.strip().isdigit() or int(rank) < 1:
        raise UsageError(f"--rank must be a positive integer or 'full', got {rank!r}")
    return {"rank": int(rank)}


def goal_from_flags(targets: dict[Metric, str | None], max_output_error: float | None, rule_given: bool,
                    measured_on_data: bool) -> Goal | None:
    """The goal the flags ask for: a budget, an end-to-end error, the default, or None when a rank rule
    chooses the ranks by hand. UsageError for conflicting flags."""
    given = [(metric, value) for metric, value in targets.items() if value is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(m.flag for m, _ in given)}: give one budget target")
    if rule_given and (given or max_output_error is not None):
        raise UsageError("--rank/--energy/--max-error choose ranks by hand, --target-*/--max-output-error choose "
                         "them for you: give one or the other")
    if given and max_output_error is not None:
        raise UsageError(f"{given[0][0].flag} and --max-output-error are two different goals: give one")
    if given:
        return Goal(GoalKind.BUDGET, target=parse_target(*given[0]))
    if max_output_error is not None:
        if not measured_on_data:
            raise UsageError("--max-output-error is measured on real inputs: give --calibrate (or --inputs)")
        return Goal(GoalKind.OUTPUT_ERROR, max_output_error=parse_output_error(max_output_error))
    if rule_given:
        return None
    tolerance = DEFAULT_OUTPUT_ERROR if measured_on_data else None
    return Goal(GoalKind.DEFAULT, max_output_error=tolerance)


def _calibration_hook(path: str | None, samples: int, max_output_error: float | None, seed: int,
                      events: Events):
    """The pipeline's calibration step for ``--calibrate`` (None without it), reporting each refit layer
    to ``events.calibrated``; ``max_output_error`` is the per-layer ``--max-layer-error``."""
    if path is None:
        if max_output_error is not None:
            raise UsageError("--max-layer-error needs --calibrate")
        return None
    if samples < 1:
        raise UsageError(f"--calib-samples must be at least 1, got {samples}")
    from sepconv_cli.calibration.solve import CalibOptions
    from sepconv_cli.pipeline.calibrate import CalibrationHook

    options = CalibOptions(samples=samples, max_output_error=max_output_error, seed=seed, progress=events.calibrated)
    return CalibrationHook(path, options)


def _distilling(hook, steps: int, threads: int):
    """The calibration step followed by ``steps`` of distillation (UsageError without --calibrate)."""
    if steps < 0:
        raise UsageError(f"--distill-steps must be at least 1, got {steps}")
    if hook is None:
        raise UsageError("--distill-steps trains on the unlabeled inputs of --calibrate: give --calibrate")
    from sepconv_cli.pipeline.distill import DistillingHook

    return DistillingHook(hook, steps, threads)


# Stages the progress bar stays up through (it covers rewriting and calibration, then gives way).
_BAR_STAGES = ("load", "plan", "rewrite", "calibrate")


class _Progress(Events):
    """Rich progress bar on stderr over the planned layers: one task for rewriting, one for calibration.

    Drawn only on a terminal, and only for long plans or when calibrating (calibration runs the models,
    so even one layer takes a while). ``console``: where to draw (stderr by default).
    """

    def __init__(self, calibrating: bool = False, console=None) -> None:
        self._calibrating, self._console = calibrating, console
        self._bar = None
        self._layers = 0
        self._tasks: dict[str, int] = {}

    def planned(self, plan) -> None:
        from rich.console import Console

        console = self._console or Console(stderr=True)
        self._layers = len(plan.layers)
        if not console.is_terminal or (self._layers < _PROGRESS_MIN_LAYERS and not self._calibrating):
            return
        from rich.progress import Progress

        self._bar = Progress(console=console, transient=True)
        self._bar.start()
        self._tasks["rewrite"] = self._bar.add_task("converting layers", total=self._layers)

    def layer_done(self, name: str) -> None:
        if self._bar is not None:
            self._bar.advance(self._tasks["rewrite"])

    def calibrated(self, name: str, done: int, total: int) -> None:
        if self._bar is not None and "calibrate" in self._tasks:
            self._bar.update(self._tasks["calibrate"], completed=done, total=total)

    def stage(self, name: str) -> None:
        if self._bar is None:
            return
        if name == "calibrate":
            self._tasks["calibrate"] = self._bar.add_task("calibrating", total=self._layers)
        elif name not in _BAR_STAGES:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _sweep(request: ConvertRequest, points: int, metric: Metric, fmt: ConvertFormat, goal: Goal | None,
           report: str | None = None) -> None:
    """``--sweep``: print the measured frontier (stdout) and write nothing."""
    if goal is not None and goal.kind is not GoalKind.DEFAULT:
        raise UsageError("--sweep measures many budgets: drop --target-*/--max-output-error")
    if request.output is not None:
        raise UsageError("--sweep writes no model: drop -o")
    if points < 1:
        raise UsageError(f"--sweep-points must be at least 1, got {points}")
    from sepconv_cli.pipeline.sweep import run_sweep
    from sepconv_cli.render.sweep import render_sweep_json, render_sweep_table

    result = run_sweep(request, points, metric)
    render = render_sweep_json if fmt is ConvertFormat.JSON else render_sweep_table
    typer.echo(render(result), nl=False)
    write_report(report, sweep=result)


@handle_errors
def convert(
    model: str = typer.Argument(..., help="Model file (ONNX, .pt2, state_dict, pickle) or entry point."),
    output: str | None = typer.Option(None, "-o", "--output", help="Output file (.onnx; torch: .pt2/.onnx/.pt/.pth)."),
    select: list[str] | None = typer.Option(None, "--select", help="Glob on layer names (repeatable)."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Glob on layer names to leave alone."),
    top: int | None = typer.Option(None, "--top", help="Only the N layers saving most MACs."),
    min_saving: float = typer.Option(0.0, "--min-saving", help="Minimum fraction of a layer's MACs saved."),
    rank: str | None = typer.Option(None, "--rank", help="Fixed rank T, or 'full' (exact, lossless)."),
    energy: float | None = typer.Option(None, "--energy", help="Per layer smallest T keeping this energy."),
    max_error: float | None = typer.Option(None, "--max-error", help="Per layer max relative weight error."),
    init: Init = typer.Option(Init.SVD, "--init", help="svd: keep trained weights; random: fresh init."),
    fold_bn: bool | None = typer.Option(None, "--fold-bn/--no-fold-bn", show_default=False,
                                           help="Fold a following BatchNorm first [default: fold with --init "
                                                "svd; keep it with --init random, for retraining]."),
    depthwise_bias: bool = typer.Option(False, "--depthwise-bias", help="Give the depthwise conv a bias too."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, write nothing."),
    inputs: str | None = typer.Option(None, "--inputs", help=".npz file of verification inputs."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare outputs before/after."),
    tolerance: float | None = typer.Option(None, "--tolerance", help="Exit 1 above this relative L2 error."),
    benchmark: bool = typer.Option(False, "--benchmark", help="Median latency before/after (interleaved)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    fmt: ConvertFormat = typer.Option(ConvertFormat.TABLE, "--format", help="table (stderr) or json (stdout)."),
    report: str | None = typer.Option(None, "--report", metavar="FILE", help="Also write the report to FILE, in "
                                      "the format its suffix names: .json, .html (before/after per layer; the "
                                      "frontier with --sweep), .txt."),
    input_shape: list[str] | None = typer.Option(None, "--input-shape", help="[name=]1x3x224x224."),
    kwargs: str = typer.Option("", "--kwargs", help="JSON object of entry-point factory arguments."),
    arch: str | None = typer.Option(None, "--arch", help="Entry point building a state_dict's module."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow unpickling (runs code)."),
    seed: int = typer.Option(0, "--seed", help="Seed of random inputs and --init random."),
    calibrate: str | None = typer.Option(None, "--calibrate", help="Unlabeled inputs to refit the pointwise "
                                            "weights on: .npz keyed by input name, or a folder of .npy/.npz "
                                            "(see above)."),
    calib_samples: int = typer.Option(256, "--calib-samples", help="Most calibration inputs used."),
    max_layer_error: float | None = typer.Option(None, "--max-layer-error", help="With --calibrate: per "
                                                    "layer smallest T whose calibrated output error is <= E."),
    target_latency: str | None = typer.Option(None, "--target-latency", help="Speed-up (2x), share (50%) or "
                                                 "time (3ms) at batch 1, measured in onnxruntime."),
    target_macs: str | None = typer.Option(None, "--target-macs", help="Fewer MACs: 4x, 25% or 500M."),
    target_params: str | None = typer.Option(None, "--target-params", help="Fewer params: 4x, 25% or 1M."),
    max_output_error: float | None = typer.Option(None, "--max-output-error", help="Cheapest plan whose "
                                                     "end-to-end relative output error is <= E."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads for every latency measurement."),
    eval_path: str | None = typer.Option(None, "--eval", help="Labelled .npz (inputs + labels or targets): "
                                             "accuracy or PSNR before and after."),
    distill_steps: int = typer.Option(0, "--distill-steps", help="With --calibrate, PyTorch sources: fine-tune "
                                          "the converted model toward the original's outputs for N steps."),
    sweep: bool = typer.Option(False, "--sweep", help="Measure the frontier (error vs cost); write nothing."),
    sweep_points: int = typer.Option(6, "--sweep-points", help="Frontier plans --sweep builds and measures."),
    sweep_metric: Metric = typer.Option(Metric.LATENCY, "--sweep-metric", help="Cost the sweep trades off."),
    max_memory: str = MAX_MEMORY_OPTION,
    run_timeout: float = RUN_TIMEOUT_OPTION,
) -> None:
    if tolerance is not None and tolerance < 0:
        raise UsageError(f"--tolerance must be non-negative, got {tolerance:g}")
    if not verify and (tolerance is not None or benchmark):
        raise UsageError("--tolerance and --benchmark run the models: drop --no-verify")
    if fold_bn is None:
        fold_bn = init is not Init.RANDOM  # fresh weights train better with their BatchNorm kept
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    rule = parse_rank(rank, energy, max_error)
    rule_given = any(v is not None and v is not False for v in rule.values())
    targets = {Metric.LATENCY: target_latency, Metric.MACS: target_macs, Metric.PARAMS: target_params}
    goal = goal_from_flags(targets, max_output_error, rule_given or max_layer_error is not None,
                           calibrate is not None or inputs is not None)
    if max_layer_error is not None and not rule_given:
        rule = {"rank": 1}  # admit every candidate: calibration searches each layer's rank from T=1 up
    plan = PlanOptions(select=tuple(select or ()), exclude=tuple(exclude or ()), top=top, min_saving=min_saving,
                       init=init.value, fold_bn=fold_bn, depthwise_bias=depthwise_bias, **rule)
    load = LoadOptions(input_shapes=parse_input_shapes(input_shape), kwargs_json=kwargs, arch=arch,
                       trust_pickle=trust_pickle, device="cpu", dynamic_dims=True)
    progress = _Progress(calibrating=calibrate is not None)
    hook = _calibration_hook(calibrate, calib_samples, max_layer_error, seed, progress)
    if distill_steps:
        hook = _distilling(hook, distill_steps, threads)
    request = ConvertRequest(source=model, output=output, load=load, plan=plan, force=force, dry_run=dry_run,
                             verify=verify, inputs_path=inputs, tolerance=tolerance, benchmark=benchmark, seed=seed,
                             after_rewrite=hook, goal=goal, threads=threads,
                             eval_path=eval_path)
    report_format(report)  # a bad suffix fails before any work
    limits = run_limits(max_memory, run_timeout)
    if sweep:
        with bounded_runs(limits, model):
            _sweep(request, sweep_points, sweep_metric, fmt, goal, report)
        return
    try:
        with bounded_runs(limits, model):
            result = run_pipeline(request, events=progress)
    finally:
        progress.close()
    text, to_stderr = RENDERERS[fmt](result)
    typer.echo(text, err=to_stderr, nl=False)
    write_report(report, result)
    if result.goal is not None and not result.goal.met and result.goal.goal.kind is not GoalKind.DEFAULT:
        typer.echo(f"sepconv: {result.goal.reason or 'the goal ' + result.goal.goal.describe() + ' was not met'}; "
                   f"{output} holds the closest plan found", err=True)
        raise typer.Exit(1)
    if result.verification is not None and not result.verification.passed:
        from sepconv_cli.pipeline.verify import headline_error

        error, error_on = headline_error(result.verification)
        typer.echo(f"sepconv: {error_on} relative error {error:.3g} exceeds --tolerance "
                   f"{tolerance:g}; {output} was written", err=True)
        raise typer.Exit(1)
