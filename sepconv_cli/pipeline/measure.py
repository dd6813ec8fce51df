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
from sepconv_cli.core.records import Plan
from sepconv_cli.lazy import resolve
from sepconv_cli.pipeline import allocation as alloc
from sepconv_cli.pipeline import verify as verify_mod
from sepconv_cli.planner.targets import Metric

LAYER_LATENCY = "sepconv_cli.backends.onnx.latency:measure"
"""Per-layer timing in onnxruntime (probes are framework-free conv geometries, so every source format
uses it)."""

FORM_LOWERING: dict[str, str] = {"onnx": "sepconv_cli.backends.onnx.rewriter:lower_converted"}
"""Output format -> function restructuring converted layers into their fastest equivalent form."""

LATENCY_RUNS = 30
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

    def cost(self, metric: Metric) -> float:
        """The measured figure the metric names (seconds after for latency)."""
        if metric is Metric.LATENCY:
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
        result = verify_mod.verify(self._reference, after, "held-back")
        error, label = result.rel_l2, "output"
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
        if converted is None:
            return Measured(macs, params, 0.0 if self.feed else None, "output", 1.0, before, after)
        error, label, agreement = self._error(converted)
        return Measured(macs, params, error, label, agreement, before, after, dict(converted.forms))

    def layer_seconds(self, found: alloc.Offers) -> dict[str, alloc.Seconds]:
        """Measured seconds of every offered layer: original and fastest form at each offered rank."""
        report = self.loaded.report
        probes: dict[str, LayerProbe] = {}
        for offer in found.layers:
            probe = LayerProbe.from_layer(report.layer(offer.name), depthwise_bias=found.depthwise_bias)
            if probe is not None:
                probes[offer.name] = probe
        ranks = {name: found_ranks(found, name) for name in probes}
        timings = resolve(LAYER_LATENCY)(list(probes.values()), ranks={p.key(): ranks[n] for n, p in probes.items()},
                                         threads=self.threads)
        out: dict[str, alloc.Seconds] = {}
        for name, probe in probes.items():
            timing = timings.get(probe.key())
            if timing is None:
                continue
            by_rank = {r: timing.best(r)[1] for r in timing.ranks()}
            out[name] = alloc.Seconds(timing.original_s, by_rank)
        self.timings = {name: timings[p.key()] for name, p in probes.items() if p.key() in timings}
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
