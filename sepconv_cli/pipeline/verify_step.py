"""The verification step of `convert`: which inputs it runs on, the comparison of the original and the
converted model (residual outputs judged on their residual part), optional latency and labelled evaluation.

Inputs, first match wins: ``--inputs``, the calibration step's held-back samples, seeded random inputs.
Units: relative L2 errors, latency in milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sepconv_cli.backends.base import Backend
from sepconv_cli.backends.limits import active as active_limits
from sepconv_cli.core.records import Report
from sepconv_cli.errors import SepconvError
from sepconv_cli.pipeline import verify as verify_mod

if TYPE_CHECKING:
    from sepconv_cli.pipeline.convert import ConvertRequest, Hook


@dataclass(frozen=True)
class Feed:
    """Verification inputs by input name, where they came from (a path, or ``random (seed S)``) and, when
    they are not simply that file's arrays, their ``role`` (e.g. ``held-back calibration``)."""

    arrays: dict
    source: str
    role: str = ""


def verification_inputs(request: ConvertRequest, report: Report, notes: list[str] | None = None) -> Feed | None:
    """Verification inputs: the ``--inputs`` file, seeded random ones, or None when the hook gives them."""
    if request.inputs_path:
        return Feed(verify_mod.load_inputs(request.inputs_path, report.model.inputs, notes), request.inputs_path)
    if request.after_rewrite is not None:
        return None  # calibration offers its held-back inputs
    try:
        arrays = verify_mod.random_inputs(report.model.inputs, request.seed, verify_mod.RANDOM_SAMPLES,
                                          max_bytes=active_limits().memory)
        return Feed(arrays, f"random (seed {request.seed})")
    except SepconvError as exc:
        raise type(exc)(f"{report.model.path}: {exc}") from None


def hook_feed(hook: Hook, batch: int | None) -> Feed:
    """The hook's verification inputs, cut to a multiple of a fixed batch ``batch`` (when there are enough)."""
    arrays, source, role = hook.verification_feed()
    count = min(len(a) for a in arrays.values())
    if batch and count >= batch:
        arrays = {name: a[:count - count % batch] for name, a in arrays.items()}
    return Feed(arrays, source, role)


def run_verification(request: ConvertRequest, backend: Backend, models: tuple[Any, Any], feed: Feed,
                     report: Report) -> tuple:
    """(verification, latency or None, evaluation or None) of ``models`` = (before, after) on ``feed``;
    samples beyond the model's fixed batch size run in chunks of it."""
    batch = verify_mod.fixed_batch(report.model.inputs)
    before, after = models
    inputs = feed.arrays
    run_before, run_after = backend.runner(before), backend.runner(after)
    result = verify_mod.verify(verify_mod.run_chunked(run_before, inputs, batch),
                               verify_mod.run_chunked(run_after, inputs, batch), feed.source, request.tolerance,
                               role=feed.role, inputs=inputs)
    latency = None
    if request.benchmark:
        one = verify_mod.chunks(inputs, batch)[0]  # latency of one model call
        latency = verify_mod.benchmark(lambda: run_before(one), lambda: run_after(one))
    evaluation = None
    if request.eval_path:
        from sepconv_cli.pipeline.evaluate import evaluate

        evaluation = evaluate(run_before, run_after, request.eval_path, report.model.inputs, batch)
    return result, latency, evaluation




def verification_record(result: verify_mod.Verification | None) -> dict | None:
    """The verification as plain JSON values (for the manifest)."""
    if result is None:
        return None
    return {"inputs": result.inputs_source, "inputs_role": result.inputs_role, "rel_l2": result.rel_l2,
            "max_abs": result.max_abs, "tolerance": result.tolerance, "passed": result.passed,
            "outputs": [asdict(o) for o in result.outputs]}
