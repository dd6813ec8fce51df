"""Measuring plans end to end for the goal search: output error on held-back inputs, whole-model latency
measured side by side with the original, per-layer latency of every rank, and the fastest structure.

Units: seconds per inference at batch 1 (medians of interleaved runs), relative L2 errors, MACs and
params in elements. The latency cost model and the structure emitted come from the backend registry
(``LAYER_LATENCY``, ``FORM_LOWERING``), so this module never tests a format.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sepconv_cli.backends.base import Backend, Converted, LoadedModel
from sepconv_cli.core.latency import LayerProbe, LayerTiming
from sepconv_cli.core.plans import Plan
from sepconv_cli.lazy import resolve
from sepconv_cli.pipeline import allocation as alloc
from sepconv_cli.pipeline import verify as verify_mod
from sepconv_cli.planner.targets import Metric

LAYER_LATENCY = "sepconv_cli.backends.onnx.latency:measure"
"""Per-layer timing in onnxruntime (probes are framework-free conv geometries, so every source format
uses it)."""

FORM_LOWERING: dict[str, str] = {"onnx": "sepconv_cli.backends.onnx.rewriter:lower_converted"}
"""Output format -> function restructuring converted layers into their fastest equivalent form."""

LATENCY_RUNS = 50
"""Interleaved whole-model runs per side when timing a trial."""


@dataclass(frozen=True)
class Measured:
    """A plan measured end to end. ``error``: the headline relative L2 error (``error_of`` says of what:
    ``output`` or ``residual``); ``agreement``: top-1 agreement for classifiers; seconds at batch 1."""

    macs: int
    params: int
    error: float | None = None
    error_of: str = "output"
    agreement: float | None = None
    seconds_before: float | None = None
    seconds_after: float | None = None
    forms: dict[str, str] = field(default_factory=dict)
    reference_s: float | None = None

    def cost(self, metric: Metric) -> float:
        """The measured figure the metric names. Latency: the reference seconds of the original (its first
        measurement) over this trial's side-by-side speed-up, so that trials compare under one clock."""
        if metric is Metric.LATENCY:
            if self.reference_s and self.speedup:
                return self.reference_s / self.speedup
            return self.seconds_after if self.seconds_after is not None else float("inf")
        return float(self.macs if metric is Metric.MACS else self.params)

    @property
    def speedup(self) -> float | None:
        """Original seconds over converted seconds (> 1: faster)."""
        if not self.seconds_before or not self.seconds_after:
            return None
        return self.seconds_before / self.seconds_after


@dataclass
class Measurer:
    """Measures trials of one loaded model. ``feed``: held-back inputs (by input name) for the error;
    ``batch``: the model's fixed batch (None: dynamic); ``threads``: runtime threads for every timing;
    ``time_model``: time whole models (latency goals, ``--benchmark``)."""

    loaded: LoadedModel
    backend: Backend
    feed: dict[str, np.ndarray] | None
    batch: int | None = None
    threads: int = 1
    time_model: bool = True
    timings: dict[str, LayerTiming] = field(default_factory=dict)
    scale: float = 1.0
    reference_s: float | None = None
    _reference: dict | None = None
    _before: Any = None

    def _runner_before(self) -> Any:
        if self._before is None:
            self._before = self.backend.runner(self.backend.source(self.loaded), self.threads)
        return self._before

    def _error(self, converted: Converted) -> tuple[float | None, str, float | None]:
        """Headline error, what it measures, and top-1 agreement on the feed."""
        if not self.feed:
            return None, "output", None
        run = self._runner_before()
        if self._reference is None:
            self._reference = verify_mod.run_chunked(run, self.feed, self.batch)
        after = verify_mod.run_chunked(self.backend.runner(converted.native, self.threads), self.feed, self.batch)
        result = verify_mod.verify(self._reference, after, "held-back", inputs=self.feed)
        error, label = verify_mod.headline_error(result)
        agreement = [o.top1 for o in result.outputs if o.top1 is not None]
        return error, label, (agreement[0] if agreement else None)

    def _seconds(self, converted: Converted | None) -> tuple[float | None, float | None]:
        """Whole-model seconds (before, after) on one sample, interleaved; after = before when unconverted."""
        if not self.time_model or not self.feed:
            return None, None
        one = {k: v[: self.batch or 1] for k, v in self.feed.items()}
        before = self._runner_before()
        if converted is None:
            lat = verify_mod.benchmark(lambda: before(one), lambda: before(one), runs=LATENCY_RUNS // 2)
            return lat.before_ms / 1e3, lat.before_ms / 1e3
        after = self.backend.runner(converted.native, self.threads)
        lat = verify_mod.benchmark(lambda: before(one), lambda: after(one), runs=LATENCY_RUNS)
        return lat.before_ms / 1e3, lat.after_ms / 1e3

    def measure(self, converted: Converted | None, plan: Plan) -> Measured:
        """Error, latency, MACs and params of ``converted`` (None: the original itself)."""
        report = self.loaded.report
        macs, params = report.macs - plan.macs_saved, report.params - plan.params_saved
        before, after = self._seconds(converted)
        if self.reference_s is None:
            self.reference_s = before
        if converted is None:
            return Measured(macs, params, 0.0 if self.feed else None, "output", 1.0, before, after,
                            reference_s=self.reference_s)
        error, label, agreement = self._error(converted)
        return Measured(macs, params, error, label, agreement, before, after, dict(converted.forms), self.reference_s)

    def layer_seconds(self, found: alloc.Offers, whole_s: float | None = None) -> dict[str, alloc.Seconds]:
        """Measured seconds of every offered layer: original and fastest form at each offered rank.

        A conv timed alone runs faster than inside the whole model (caches, layout changes), so when the
        whole model's time ``whole_s`` is known every figure is scaled by whole / (sum of every conv row
        timed alone), clamped to [1, 3]: the other ops are assumed cheap next to the convolutions.
        """
        report = self.loaded.report
        offered = set(found.names())
        probes: dict[str, LayerProbe] = {}
        for layer in report.layers:
            probe = LayerProbe.from_layer(layer, depthwise_bias=found.depthwise_bias) if layer.conv else None
            if probe is not None:
                probes[layer.name] = probe
        ranks = {p.key(): (found_ranks(found, n) if n in offered else ()) for n, p in probes.items()}
        timings = resolve(LAYER_LATENCY)(list(probes.values()), ranks=ranks, threads=self.threads)
        alone = sum(timings[p.key()].original_s for p in probes.values() if p.key() in timings)
        scale = min(3.0, max(1.0, whole_s / alone)) if whole_s and alone > 0 else 1.0
        out: dict[str, alloc.Seconds] = {}
        for name, probe in probes.items():
            timing = timings.get(probe.key())
            if timing is None or name not in offered:
                continue
            by_rank = {r: scale * timing.best(r)[1] for r in timing.ranks()}
            out[name] = alloc.Seconds(scale * timing.original_s, by_rank)
        self.timings = {name: timings[p.key()] for name, p in probes.items() if p.key() in timings and name in offered}
        self.scale = scale
        return out

    def finish(self, converted: Converted) -> Converted:
        """Restructure each converted layer with T > 1 into its fastest measured equivalent form."""
        target = FORM_LOWERING.get(self.loaded.report.model.format)
        timings = self.timings
        if target is None or not timings:
            return converted
        forms = {}
        for layer in converted.plan.layers:
            timing = timings.get(layer.name)
            if layer.rank > 1 and timing is not None and layer.rank in timing.ranks():
                forms[layer.name] = timing.best(layer.rank)[0]
        if not forms:
            return converted
        return replace(resolve(target)(converted, forms), forms=forms)


def found_ranks(found: alloc.Offers, name: str) -> tuple[int, ...]:
    """The ranks offered for layer ``name``."""
    return next(o.ranks for o in found.layers if o.name == name)
