"""Measured latency in onnxruntime: per layer (original conv against each separable variant) and per model.

Every figure is the median of runs that alternate between the variants being compared (run 1 of each,
then run 2 of each, in a rotating order), after a warm-up, so that drift in the machine's load (other
processes, clock changes) hits all variants alike. Sessions use the CPU provider, ``threads`` intra-op
threads, one inter-op thread, sequential execution and the default graph optimisations (what a deployed
model gets). Units: seconds per run at batch 1. A per-layer figure includes onnxruntime's fixed cost of one
``run`` call (the same for every variant of a layer), so differences between variants are sharper than ratios.

Layer timings are cached per machine (``latency_cache``); a probe is re-measured as a whole (original and
every variant side by side) whenever one of the asked variants is not cached.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from sepconv_cli.backends.onnx.latency_cache import LatencyCache, machine_key
from sepconv_cli.backends.onnx.latency_models import ORIGINAL, is_variant, variant_models, wanted_variants
from sepconv_cli.backends.onnx.session import SessionSettings, make_session
from sepconv_cli.core.latency import Form, LayerProbe, LayerTiming
from sepconv_cli.errors import InputError

Ranks = Mapping[str, Sequence[int]] | Sequence[int]


@dataclass(frozen=True)
class Schedule:
    """How long to time each variant: at least ``min_runs`` runs and ``min_seconds`` in all, at most
    ``max_runs``; past the deadline, stop once ``floor_runs`` are done. ``warmup`` runs are not counted."""

    min_runs: int = 15
    min_seconds: float = 0.05
    max_runs: int = 400
    floor_runs: int = 5
    warmup: int = 2


def session(model: Any, threads: int = 1) -> Any:
    """An onnxruntime CPU session for ``model`` (ModelProto, serialised bytes or path), quiet and sequential."""
    # Graphs sepconv built (one conv and its forms): quiet, not bounded (a watchdog would be timed too).
    return make_session(model, SessionSettings(threads=threads, sequential=True))


def interleaved(calls: Mapping[str, Callable[[], object]], schedule: Schedule = Schedule(),
                deadline: float = float("inf")) -> dict[str, float]:
    """Median seconds of each call, timed in alternation (``deadline``: a ``time.perf_counter`` value)."""
    keys = list(calls)
    for key in keys:
        for _ in range(schedule.warmup):
            calls[key]()
    samples: dict[str, list[float]] = {key: [] for key in keys}
    for done in range(1, schedule.max_runs + 1):
        shift = done % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            calls[key]()
            samples[key].append(time.perf_counter() - start)
        enough = done >= schedule.min_runs and min(sum(s) for s in samples.values()) >= schedule.min_seconds
        if enough or (done >= schedule.floor_runs and time.perf_counter() >= deadline):
            break
    return {key: statistics.median(values) for key, values in samples.items()}


def _ranks_of(ranks: Ranks, probe: LayerProbe) -> Sequence[int]:
    return ranks.get(probe.key(), ()) if isinstance(ranks, Mapping) else ranks


def _timing(entries: Mapping[str, float], variants: Iterable[str]) -> LayerTiming:
    """The record of the original and of ``variants`` among ``entries`` (``name -> seconds``)."""
    return LayerTiming(original_s=entries[ORIGINAL], variants_s={v: entries[v] for v in variants})


def _probe_calls(probe: LayerProbe, variants: Sequence[str], threads: int) -> dict[str, Callable[[], object]]:
    """One ``run`` closure per variant, all on the same random input."""
    models = variant_models(probe, variants)
    x = np.random.default_rng(0).standard_normal(probe.input_shape).astype(probe.dtype)
    calls: dict[str, Callable[[], object]] = {}
    for key, model in models.items():
        sess = session(model.SerializeToString(), threads)
        feed = {sess.get_inputs()[0].name: x}
        calls[key] = partial(sess.run, None, feed)
    return calls


def measure_probe(probe: LayerProbe, variants: Sequence[str], threads: int = 1, schedule: Schedule = Schedule(),
                  deadline: float = float("inf")) -> LayerTiming:
    """The original conv and each ``"T:form"`` variant of ``probe``, measured side by side (no cache)."""
    return _timing(interleaved(_probe_calls(probe, variants, threads), schedule, deadline), variants)


def measure(probes: Sequence[LayerProbe], ranks: Ranks, forms: Iterable[Form] = tuple(Form), threads: int = 1,
            budget_s: float = 60.0, use_cache: bool = True, schedule: Schedule = Schedule()) -> dict[str, LayerTiming]:
    """``probe.key() -> LayerTiming`` for every probe, at each rank of ``ranks`` (one list for all probes,
    or per probe key) in each requested form that is valid there (``latency_models.wanted_variants``).

    ``budget_s``: soft limit on the seconds spent timing, shared among the probes not found in the cache
    (each still gets ``schedule.floor_runs`` runs). ``use_cache``: read and update the per-machine cache.
    ``schedule``: how many runs make a measurement.
    """
    forms = tuple(Form(f) for f in forms)
    cache = LatencyCache(machine_key(threads))
    if use_cache:
        cache.load()
    results: dict[str, LayerTiming] = {}
    pending: dict[str, tuple[LayerProbe, tuple[str, ...], tuple[str, ...]]] = {}
    for probe in probes:
        key = probe.key()
        wanted = wanted_variants(probe, _ranks_of(ranks, probe), forms)
        cached = cache.get(key) if use_cache else {}
        if ORIGINAL in cached and all(v in cached for v in wanted):
            results[key] = _timing(cached, wanted)
        else:  # re-measure what was cached too, so that the entry stays one side-by-side measurement
            extra = tuple(v for v in cached if v not in wanted and is_variant(probe, v))
            pending[key] = (probe, wanted, tuple(sorted(wanted + extra, key=_order)))
    start = time.perf_counter()
    try:
        for n, (key, (probe, wanted, variants)) in enumerate(pending.items()):
            left = max(0.0, budget_s - (time.perf_counter() - start))
            entries = interleaved(_probe_calls(probe, variants, threads), schedule,
                                  deadline=time.perf_counter() + left / (len(pending) - n))
            cache.put(key, entries)
            results[key] = _timing(entries, wanted)
    finally:
        if use_cache:
            cache.save()
    return results


def _order(variant: str) -> tuple[int, str]:
    rank, form = variant.split(":", 1)
    return int(rank), form


def _batch_one(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: (value[:1] if np.ndim(value) >= 1 else value) for name, value in inputs.items()}


def measure_model(path_a: Any, path_b: Any, inputs: Mapping[str, np.ndarray], threads: int = 1,
                  runs: int = 30) -> tuple[float, float]:
    """Median seconds per run of two whole models (paths or ModelProtos) measured side by side on the first
    sample of ``inputs`` (each model is fed the inputs it declares)."""
    feeds = _batch_one(inputs)
    calls: dict[str, Callable[[], object]] = {}
    for key, model in (("a", path_a), ("b", path_b)):
        sess = session(model, threads)
        missing = [i.name for i in sess.get_inputs() if i.name not in feeds]
        if missing:
            raise InputError(f"no input named {missing[0]!r} was given for latency measurement")
        feed = {i.name: feeds[i.name] for i in sess.get_inputs()}
        calls[key] = partial(sess.run, None, feed)
    medians = interleaved(calls, Schedule(min_runs=runs, min_seconds=0.0, max_runs=runs))
    return medians["a"], medians["b"]
