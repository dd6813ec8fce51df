"""The `convert` pipeline, shared by every backend.

load -> candidates + plan -> backend.rewrite -> (hook, e.g. calibration) -> save into a private temporary
folder beside the output -> verify (original vs the written file) -> re-analyse the output with the
loader -> manifest -> move everything into place. Any failure removes the temporary folder, so a failed
conversion leaves nothing behind; an existing output is never replaced without ``force`` and the input
never at all. Units: params in elements, MACs, sizes in bytes, times in seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from sepconv_cli import planner
from sepconv_cli.backends.registry import (
    Backend,
    Converted,
    ConvertOptions,
    LoadedModel,
    LoadOptions,
    backend_for,
    detect_format,
    loader_for,
)
from sepconv_cli.core.plans import Plan
from sepconv_cli.core.records import Report, is_static
from sepconv_cli.errors import PlanError, UsageError
from sepconv_cli.pipeline import manifest as manifest_mod
from sepconv_cli.pipeline import verify as verify_mod
from sepconv_cli.pipeline.convert_goal import Job, reach_goal
from sepconv_cli.pipeline.output_files import check_output, publish, writing
from sepconv_cli.pipeline.targeted import Goal, GoalOutcome
from sepconv_cli.pipeline.verify_step import hook_feed, run_verification, verification_inputs, verification_record


class Events:
    """Progress callbacks (the CLI draws a progress bar with them); the defaults do nothing."""

    def planned(self, plan: Plan) -> None:
        """The plan is known (before any layer is rewritten)."""

    def layer_done(self, name: str) -> None:
        """One planned layer has been rewritten."""

    def stage(self, name: str) -> None:
        """A pipeline stage starts (``"load"``, ``"rewrite"``, ``"calibrate"``, ``"save"``, ``"verify"``...)."""

    def calibrated(self, name: str, done: int, total: int) -> None:
        """Calibration has refit layer ``name``, the ``done``-th of ``total`` (the signature of
        ``CalibOptions.progress``: whoever builds a calibration hook passes this method there)."""


class Hook(Protocol):
    """A step between rewrite and save (calibration): it transforms the converted model, keeps its
    ``report`` and ``notes``, and offers the inputs it did not fit on for verification."""

    report: Any
    notes: list
    distillation: Any

    def __call__(self, loaded: LoadedModel, converted: Converted, backend: Backend) -> Converted:
        """The transformed converted model."""
        ...

    def verification_feed(self) -> tuple[dict, str, str]:
        """(inputs by name, source, role) to verify on."""
        ...


@dataclass(frozen=True)
class ConvertRequest:
    """Everything one conversion needs. ``after_rewrite`` may transform the converted model before it is
    saved (calibration plugs in here); ``seed`` drives random inputs and ``--init random``;
    without ``inputs_path``, a hook with a ``verification_feed()`` method (calibration) gives the
    verification inputs, else they are seeded random ones."""

    source: str
    output: str | None
    load: LoadOptions = field(default_factory=LoadOptions)
    plan: planner.PlanOptions = field(default_factory=planner.PlanOptions)
    force: bool = False
    dry_run: bool = False
    verify: bool = True
    inputs_path: str | None = None
    tolerance: float | None = None
    benchmark: bool = False
    seed: int = 0
    after_rewrite: Hook | None = None
    goal: Goal | None = None
    threads: int = 1
    eval_path: str | None = None


@dataclass
class ConversionResult:
    """What happened: plan (as realised), reports before/after, verification, latency, stage timings, and
    ``calibration`` (the hook's ``report`` attribute, a ``CalibrationReport``, when a hook ran)."""

    before: Report
    plan: Plan
    output: str | None = None
    after: Report | None = None
    verification: verify_mod.Verification | None = None
    latency: verify_mod.Latency | None = None
    folded_bn: tuple[str, ...] = ()
    manifest: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    calibration: Any = None
    goal: GoalOutcome | None = None
    evaluation: Any = None
    distillation: Any = None

    @property
    def written(self) -> bool:
        """True when an output file was produced."""
        return self.manifest is not None


def check_suffix(backend: Backend, output: str) -> None:
    """UsageError when the backend cannot write the format ``output``'s suffix asks for."""
    suffixes = backend.suffixes
    if not output.lower().endswith(tuple(suffixes)):
        raise UsageError(f"{output}: this model converts to {', '.join(suffixes)} files; choose an output "
                         f"name ending so")


class _Clock:
    """Accumulates wall time per stage into a dict (seconds) and announces stages."""

    def __init__(self, timings: dict[str, float], events: Events):
        self.timings, self.events = timings, events

    def run(self, stage: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.events.stage(stage)
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


def nothing_to_convert(plan: Plan, report: Report) -> str:
    """``"MODEL: nothing to convert (reasons)"`` for an empty plan."""
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in plan.skipped[:3])
    return f"{report.model.path}: nothing to convert" + (f" ({reasons})" if reasons else "")


def make_plan(report: Report, loaded: LoadedModel, options: planner.PlanOptions) -> tuple[Report, Plan]:
    """The plan (the planner assesses every selected conv itself); PlanError when it is empty."""
    plan = planner.make_plan(report, loaded.handle, options)
    if not plan.layers:
        raise PlanError(nothing_to_convert(plan, report))
    return report, plan


def _analysed_shapes(report: Report) -> dict | None:
    """The analysed input shapes by name when all are static (exporters need concrete examples)."""
    shapes = {t.name: t.shape for t in report.model.inputs}
    if shapes and all(is_static(shape) for shape in shapes.values()):
        return shapes
    return None


def _options_record(request: ConvertRequest, convert: ConvertOptions) -> dict:
    """The options used, as plain JSON values (for the manifest)."""
    plan = asdict(request.plan)
    return {"plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
            "convert": convert.record(), "verify": request.verify, "inputs": request.inputs_path,
            "tolerance": request.tolerance, "seed": request.seed}


def _plan(request: ConvertRequest, job: Job, clock: _Clock, notes: list[str]) -> tuple[Plan, Any, Any]:
    """(plan, prebuilt converted model or None, goal outcome or None): the rank rules' plan, or the plan
    the goal search built and measured."""
    if request.goal is None or request.dry_run:
        plan = clock.run("plan", planner.make_plan, job.loaded.report, job.loaded.handle, request.plan)
        return plan, None, None
    built = clock.run("allocate", reach_goal, request, job, notes)
    return built.plan, built.converted, built.outcome


def convert(request: ConvertRequest, events: Events | None = None) -> ConversionResult:
    """Run the whole pipeline (see the module docstring); raises SepconvError subclasses on refusal. An
    empty plan is no error: the result says why nothing was converted and nothing is written."""
    events = events or Events()
    timings: dict[str, float] = {}
    clock = _Clock(timings, events)
    if not request.dry_run:
        check_output(request.source, request.output, request.force)
    fmt = detect_format(request.source, request.load)
    loaded = clock.run("load", loader_for(fmt), request.source, request.load)
    backend = backend_for(fmt) if not request.dry_run else None
    if backend is not None and request.output is not None:
        check_suffix(backend, request.output)
    options = ConvertOptions(init=request.plan.init, fold_bn=request.plan.fold_bn,
                             depthwise_bias=request.plan.depthwise_bias, seed=request.seed,
                             progress=events.layer_done)
    job = Job(loaded, backend, options, fmt)
    notes: list[str] = []
    plan, prebuilt, outcome = _plan(request, job, clock, notes)
    events.planned(plan)
    result = ConversionResult(before=loaded.report, plan=plan, timings=timings, notes=notes, goal=outcome)
    if not plan.layers:
        result.notes.append(nothing_to_convert(plan, loaded.report))
    if request.dry_run or not plan.layers:
        return result
    if request.output is None or backend is None:
        raise UsageError("give an output file (-o) or --dry-run")
    folder = os.path.dirname(os.path.abspath(request.output))
    with writing(folder):
        tmpdir = tempfile.mkdtemp(prefix=".sepconv-", dir=folder)
    try:
        _finish(request, result, job, tmpdir, clock, prebuilt)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return result


def _build(request: ConvertRequest, result: ConversionResult, job: Job, clock: _Clock) -> Converted:
    """Rewrite the plan and run the calibration step, if any."""
    converted = clock.run("rewrite", job.backend.rewrite, job.loaded, result.plan, job.options)
    hook = request.after_rewrite
    if hook is not None:
        converted = clock.run("calibrate", hook, job.loaded, converted, job.backend)
        result.calibration = hook.report
        result.distillation = hook.distillation
        result.notes.extend(hook.notes)
    return converted


def _finish(request: ConvertRequest, result: ConversionResult, job: Job, tmpdir: str, clock: _Clock,
            prebuilt: Converted | None) -> None:
    """Rewrite (unless ``prebuilt``), save, verify, re-analyse and publish into ``tmpdir`` then beside the
    output."""
    loaded, backend, output = job.loaded, job.backend, request.output
    feed = verification_inputs(request, loaded.report, result.notes) if request.verify else None  # fail early
    if request.eval_path:
        from sepconv_cli.pipeline.evaluate import load_eval

        load_eval(request.eval_path, loaded.report.model.inputs, verify_mod.fixed_batch(loaded.report.model.inputs))
    if prebuilt is None:
        converted = _build(request, result, job, clock)
    else:
        converted = prebuilt
        chosen = result.goal.trials[result.goal.chosen] if result.goal and result.goal.chosen is not None else None
        result.calibration, result.distillation = chosen.calibration if chosen else (None, None)
    result.plan, result.folded_bn = converted.plan, tuple(converted.folded_bn)
    staged = os.path.join(tmpdir, os.path.basename(output))
    shapes = dict(request.load.input_shapes) or _analysed_shapes(loaded.report)
    with writing(os.path.dirname(os.path.abspath(output))):
        clock.run("save", backend.save, converted, staged, shapes)
    if request.verify:
        models = (backend.source(loaded), backend.output_source(converted, staged))
        feed = feed or hook_feed(request.after_rewrite, verify_mod.fixed_batch(loaded.report.model.inputs))
        result.verification, result.latency, result.evaluation = clock.run(
            "verify", run_verification, request, backend, models, feed, loaded.report)
    result.after = clock.run("analyse", _reanalyse, staged, output, request.load, result.notes)
    _publish(request, result, job, tmpdir, staged)


def _publish(request: ConvertRequest, result: ConversionResult, job: Job, tmpdir: str, staged: str) -> None:
    """Write the manifest beside the staged model and move both into place."""
    output, after = request.output, result.after
    inputs = manifest_mod.ManifestInputs(
        before=result.before, plan=result.plan, output_path=output,
        output_format=after.model.format if after else os.path.splitext(output)[1].lstrip("."),
        options=_options_record(request, job.options), after=after,
        verification=verification_record(result.verification),
        calibration=asdict(result.calibration) if result.calibration is not None else None)
    with writing(os.path.dirname(os.path.abspath(output))):
        with open(manifest_mod.manifest_path(staged), "w", encoding="utf-8") as fh:
            fh.write(manifest_mod.dumps(inputs))
        publish(tmpdir, output, request.force)
    result.output, result.manifest = output, manifest_mod.manifest_path(output)


# Output suffixes whose files need the converted architecture to be read back (a bare state_dict).
_NOT_REANALYSABLE = (".pt", ".pth")


def _reanalyse(staged: str, output: str, options: LoadOptions, notes: list[str]) -> Report | None:
    """The loader's report of the written file, with the final path in it (None, with a note, for a
    state_dict output, which cannot be read back without the converted architecture)."""
    if output.endswith(_NOT_REANALYSABLE):
        notes.append(f"{output} is a state_dict of the converted structure, not re-analysed: rebuild it from the "
                     f"original architecture with the manifest (sepconv_cli.load_converted), "
                     f"then load_state_dict")
        return None
    fmt = detect_format(staged, options)
    report = loader_for(fmt)(staged, options).report
    return replace(report, model=replace(report.model, path=output))
