"""The layer-by-layer calibration loop shared by the ONNX and PyTorch drivers.

Layers are refit in topological order on the converted path: layer L's depthwise outputs come from the
network whose earlier layers are already refit, its targets from the original network, so each refit
also absorbs the error that earlier layers let through. The samples are cut once into chunks (fit chunks,
then held-back chunks) that every pass walks in the same order; a driver keeps both networks' live
tensors at the current cut for every chunk and only ever runs forward from there, so the whole
calibration costs one walk of each network plus the layer solves: linear in depth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from sepconv_cli.calibration.refine import LayerState, refine
from sepconv_cli.calibration.solve import (
    CalibOptions,
    NormalEquations,
    Refit,
    batches,
    choose_rank,
    pack,
    rank_columns,
    refit,
    split_samples,
    unpack,
)
from sepconv_cli.calibration.stream import prefetched
from sepconv_cli.core import costs
from sepconv_cli.core.calibrated import CalibratedLayer, CalibrationReport
from sepconv_cli.core.decompose import decompose, spectrum
from sepconv_cli.core.plans import Plan
from sepconv_cli.core.records import ConvSpec, Report, is_static
from sepconv_cli.errors import InputError


@dataclass(frozen=True)
class LayerTask:
    """One converted layer to refit at its planned ``rank``. ``weight`` is the (BN-folded) original float64
    kernel, needed only to try ranks (``--max-output-error``); ``transposed`` for ConvTranspose."""

    name: str
    groups: int
    rank: int
    transposed: bool = False
    weight: np.ndarray | None = None


@dataclass(frozen=True)
class Chunks:
    """Sample indices of every chunk, in walking order, and whether each one is held back from the fit."""

    indices: tuple[np.ndarray, ...]
    held: tuple[bool, ...]

    def samples(self, held: bool) -> np.ndarray:
        """All sample indices of the fit (``held=False``) or held-back chunks."""
        parts = [c for c, h in zip(self.indices, self.held) if h == held]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def make_chunks(count: int, options: CalibOptions, step: int = 1) -> Chunks:
    """Seeded fit/held-back split (``split_samples``) cut into chunks of ``options.batch_size``; with a
    fixed batch ``step`` > 1 every chunk holds exactly ``step`` samples (a remainder is left out)."""
    fit, held = split_samples(count, options.holdout, options.seed)
    size = step * max(1, options.batch_size // step) if step > 1 else options.batch_size
    out: list[tuple[np.ndarray, bool]] = []
    for indices, role in ((fit, False), (held, True)):
        if step > 1:
            indices = indices[: len(indices) - len(indices) % step]
        out += [(c, role) for c in batches(indices, size) if len(c)]
    if not any(not role for _, role in out):
        raise InputError(f"the model's batch dim is fixed at {step}; got too few calibration samples to fit on")
    return Chunks(tuple(c for c, _ in out), tuple(r for _, r in out))


class Driver(Protocol):
    """What the loop needs from a framework (numpy arrays in and out, model dtype handled inside).

    Per-chunk iterators follow the chunk order given to ``begin``."""

    def begin(self, chunks: Chunks) -> None:
        """Fix the chunks every later pass walks; both networks start at their inputs."""
        ...

    def factors(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Current (depthwise kernel, pointwise kernel, pointwise bias) of converted layer ``name``."""
        ...

    def install(self, name: str, depthwise: np.ndarray, pointwise: np.ndarray, bias: np.ndarray | None) -> None:
        """Make the converted layer ``name`` use these factors (shapes may change with the rank); a None
        bias leaves the pointwise conv without one."""
        ...

    def depthwise(self, name: str, kernel: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Per chunk: layer ``name``'s depthwise conv (without bias) applied to the layer's input on the
        converted path, with ``kernel`` (None: the installed one)."""
        ...

    def targets(self, name: str) -> Iterator[np.ndarray]:
        """Per chunk: the original layer's output (the folded BatchNorm's output when one was folded)."""
        ...

    def relu_follows(self, name: str) -> bool:
        """True when every reader of the layer's output is a ReLU (so only its positive part matters)."""
        ...

    def advance(self, name: str) -> None:
        """Layer ``name``'s factors are final: later passes start after it."""
        ...

    def outputs(self, converted: bool, indices: np.ndarray) -> list[np.ndarray]:
        """Final outputs of the original (``converted=False``) or converted model on those samples."""
        ...


@dataclass
class CalibResult:
    """The calibrated model (framework object), the report, and the rank each layer ended with."""

    model: Any
    report: CalibrationReport
    ranks: dict[str, int] = field(default_factory=dict)
    energies: dict[str, float] = field(default_factory=dict)


def search_ranks(weight: np.ndarray, groups: int, transposed: bool) -> list[int]:
    """Ranks T that save something: ``T <= costs.max_rank`` and ``T < costs.break_even_rank``."""
    kernel = tuple(int(d) for d in weight.shape[2:])
    cin, cout = ((weight.shape[0], weight.shape[1] * groups) if transposed
                 else (weight.shape[1] * groups, weight.shape[0]))
    spec = ConvSpec(int(cin), int(cout), kernel, (1,) * len(kernel), (1,) * len(kernel), groups=groups,
                    transposed=transposed)
    return [t for t in range(1, costs.max_rank(spec) + 1) if t < costs.break_even_rank(spec)] or [1]


def nested_depthwise(depthwise: np.ndarray, full: int, rank: int, transposed: bool) -> np.ndarray:
    """The rank-``rank`` depthwise kernel inside a rank-``full`` one (top singular vectors first)."""
    if transposed:
        return np.ascontiguousarray(depthwise[:, :rank])
    cin = depthwise.shape[0] // full
    return depthwise.reshape(cin, full, *depthwise.shape[1:])[:, :rank].reshape(cin * rank, *depthwise.shape[1:])


def _accumulate(driver: Driver, task: LayerTask, chunks: Chunks, options: CalibOptions,
                shape: tuple[int, int]) -> tuple[NormalEquations, NormalEquations | None]:
    """Normal equations of ``task`` over the fit chunks and (if any) the held-back ones, in one pass."""
    d, c = shape
    stats = {False: NormalEquations(task.groups, d, c), True: NormalEquations(task.groups, d, c)}
    total, done = sum(len(i) for i in chunks.indices), 0
    pairs = prefetched(zip(driver.depthwise(task.name), driver.targets(task.name)))
    for held, indices, (z, y) in zip(chunks.held, chunks.indices, pairs):
        stats[held].add(z, y)
        done += len(indices)
        if options.sample_progress is not None:
            options.sample_progress(task.name, done, total)
    return stats[False], (stats[True] if any(chunks.held) else None)


def _start_search(driver: Driver, task: LayerTask, weight: np.ndarray) -> list[int]:
    """Install the SVD factors of ``weight`` at the largest rank worth trying; returns the ranks to try."""
    ranks = search_ranks(weight, task.groups, task.transposed)
    full = decompose(weight, task.groups, max(ranks), task.transposed)
    driver.install(task.name, full.depthwise, full.pointwise, driver.factors(task.name)[2])
    return ranks


def calibrate_layer(driver: Driver, task: LayerTask, chunks: Chunks,
                    options: CalibOptions) -> tuple[CalibratedLayer, float | None]:
    """Refit one layer in place (through the driver); returns its record and, on a rank search, its energy.

    A layer whose pointwise conv had no bias gets one only when a refit is kept.
    """
    target, weight = options.max_output_error, task.weight
    ranks = _start_search(driver, task, weight) if target is not None and weight is not None else []
    depthwise, pointwise, bias = driver.factors(task.name)
    init = pack(pointwise, bias, task.groups)
    stats = _accumulate(driver, task, chunks, options, (pointwise.shape[1], pointwise.shape[0] // task.groups))
    result: Refit
    if ranks and target is not None:
        result = choose_rank(task.name, stats, init, ranks, target, options.ridge)
        depthwise = nested_depthwise(depthwise, max(ranks), result.record.rank, task.transposed)
        cols = rank_columns(stats[0].inputs // max(ranks), max(ranks), result.record.rank)
        stats = (stats[0].select(cols), None if stats[1] is None else stats[1].select(cols))
    else:
        result = refit(task.name, task.rank, stats, init, options.ridge)
    new_weight, new_bias = unpack(result.coefficients, pointwise.ndim - 2)
    driver.install(task.name, depthwise, new_weight, None if result.record.fell_back and bias is None else new_bias)
    state = LayerState(depthwise, result.coefficients, stats[0], stats[1], result.record)
    record = refine(driver, task.name, chunks, state, options, task.transposed)
    energy = None
    if ranks and weight is not None:
        energy = spectrum(weight, task.groups, task.transposed).energy(record.rank)
    return record, energy


def end_to_end_error(driver: Driver, indices: np.ndarray, batch_size: int) -> float | None:
    """Relative L2 error of all converted outputs against the original's over ``indices``."""
    err = ref = 0.0
    for chunk in batches(indices, batch_size):
        for o, c in zip(driver.outputs(False, chunk), driver.outputs(True, chunk)):
            o64, c64 = np.asarray(o, np.float64), np.asarray(c, np.float64)
            err += float(np.sum((o64 - c64) ** 2))
            ref += float(np.sum(o64 ** 2))
    if not len(indices):
        return None
    return float(np.sqrt(err / ref)) if ref > 0 else float(np.sqrt(err))


def run_calibration(driver: Driver, tasks: list[LayerTask], count: int, options: CalibOptions, step: int = 1
                    ) -> tuple[CalibrationReport, dict[str, int], dict[str, float]]:
    """Refit every task in order; returns the report, the final rank and (rank search) energy per layer.
    ``step`` > 1: the model only runs at that fixed batch size."""
    if count < 1:
        raise InputError("no calibration samples: the inputs hold none")
    start = time.perf_counter()
    chunks = make_chunks(count, options, step)
    fit, held = chunks.samples(False), chunks.samples(True)
    e2e = held if len(held) else fit
    batch = max(step, options.batch_size)
    before = end_to_end_error(driver, e2e, batch)
    driver.begin(chunks)
    records, energies = [], {}
    for i, task in enumerate(tasks):
        record, energy = calibrate_layer(driver, task, chunks, options)
        driver.advance(task.name)
        records.append(record)
        if energy is not None:
            energies[task.name] = energy
        if options.progress is not None:
            options.progress(task.name, i + 1, len(tasks))
    after = end_to_end_error(driver, e2e, batch)
    report = CalibrationReport(
        layers=tuple(records), samples_fit=len(fit), samples_holdout=len(held),
        output_error_before=before, output_error_after=after,
        end_to_end_on="holdout" if len(held) else "fit", seconds=time.perf_counter() - start,
        max_output_error=options.max_output_error)
    return report, {r.name: r.rank for r in records}, energies


def replan(plan: Plan, report: Report, result: CalibResult) -> Plan:
    """``plan`` as calibration left it: ranks chosen by ``--max-output-error``, and one more bias per layer
    whose pointwise conv had none and got a refit one. Params/MACs after are recomputed from the report's
    conv geometry and shapes (costs.py); energy and weight error from the rank search."""
    kept = {r.name for r in result.report.layers if not r.fell_back}
    layers = []
    for planned in plan.layers:
        rank = result.ranks.get(planned.name, planned.rank)
        row = report.layer(planned.name)
        if row.conv is None:
            raise ValueError(f"{planned.name}: the report has no conv geometry for a planned layer")
        biased = row.conv.has_bias or bool(planned.bn_folded) or planned.name in kept
        spec = replace(row.conv, has_bias=biased)
        params = costs.separable_params(spec, rank, plan.depthwise_bias)
        if rank == planned.rank:
            layers.append(replace(planned, params_after=params, pointwise_bias=biased))
            continue
        ins = row.input_shapes[0] if row.input_shapes else None
        outs = row.output_shapes[0] if row.output_shapes else None
        macs = None
        if ins is not None and outs is not None and is_static(ins) and is_static(outs):
            grid_in, grid_out = tuple(int(d) for d in ins[2:]), tuple(int(d) for d in outs[2:])
            macs = costs.separable_macs(spec, rank, int(ins[0]), grid_in, grid_out)
        energy = result.energies.get(planned.name)
        error = None if energy is None else float(np.sqrt(max(0.0, 1.0 - energy)))
        layers.append(replace(planned, rank=rank, params_after=params, macs_after=macs, energy=energy,
                              weight_error=error, pointwise_bias=biased))
    return replace(plan, layers=tuple(layers))
