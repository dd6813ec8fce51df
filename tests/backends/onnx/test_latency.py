"""Measured latency: what is timed is what convert emits, the per-machine cache, whole-model timing.

No test compares wall times: only that figures are positive and finite, and where they come from.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from convert_builders import ConvCase, conv_model
from onnx import helper, numpy_helper

from sepconv_cli import planner
from sepconv_cli.backends.base import ConvertOptions
from sepconv_cli.backends.onnx.forms import lower
from sepconv_cli.backends.onnx.latency import Schedule, interleaved, measure, measure_model
from sepconv_cli.backends.onnx.latency_cache import FILE_NAME, LatencyCache, cache_path, machine_key
from sepconv_cli.backends.onnx.latency_models import LAYER, ORIGINAL, variant_models, wanted_variants
from sepconv_cli.backends.registry import backend_for, load
from sepconv_cli.core.latency import Form, LayerProbe
from sepconv_cli.errors import InputError

PROBE = LayerProbe(8, 16, (3, 3), (8, 8), pads=(1, 1, 1, 1), has_bias=True)
QUICK = Schedule(min_runs=3, min_seconds=0.0, max_runs=3, warmup=1)
ALL_AT_2 = {"2:multiplier", "2:tiled", "2:parallel"}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SEPCONV_CACHE_DIR", str(folder))
    return folder


def _positive(timing) -> bool:
    values = [timing.original_s, *timing.variants_s.values()]
    return all(math.isfinite(v) and v > 0 for v in values)


def _write_cache(folder, entries: dict, machine: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    machines = {machine or machine_key(1): {PROBE.key(): entries}}
    (folder / FILE_NAME).write_text(json.dumps({"version": 1, "machines": machines}))


def test_measure_times_every_valid_variant_and_caches_it(cache_dir):
    [(key, timing)] = measure([PROBE, PROBE], [1, 2, 3, 99], schedule=QUICK).items()
    assert key == PROBE.key()
    assert set(timing.variants_s) == {"1:multiplier"} | ALL_AT_2 | {"3:multiplier", "3:tiled", "3:parallel"}
    assert _positive(timing)
    stored = json.loads((cache_dir / FILE_NAME).read_text())["machines"][machine_key(1)][key]
    assert stored == {ORIGINAL: timing.original_s, **timing.variants_s}
    again = measure([PROBE], [1, 2, 3], schedule=QUICK)[key]
    assert again == timing  # read back from the cache, not re-measured


def test_cached_figures_are_used_and_use_cache_false_ignores_them(cache_dir):
    fake = {ORIGINAL: 100.0, "2:multiplier": 90.0, "2:tiled": 40.0, "2:parallel": 50.0, "7:tiled": "bad"}
    _write_cache(cache_dir, fake)
    timing = measure([PROBE], [2], schedule=QUICK)[PROBE.key()]
    assert timing.original_s == 100.0 and timing.best(2) == ("tiled", 40.0) and timing.speedup(2) == 2.5
    before = (cache_dir / FILE_NAME).read_text()
    fresh = measure([PROBE], [2], use_cache=False, schedule=QUICK)[PROBE.key()]
    assert fresh.original_s != 100.0 and _positive(fresh)
    assert (cache_dir / FILE_NAME).read_text() == before


def test_a_partly_cached_probe_is_measured_again_as_a_whole(cache_dir):
    _write_cache(cache_dir, {ORIGINAL: 100.0, "2:multiplier": 90.0, "4:parallel": 80.0, "junk": 1.0})
    timing = measure([PROBE], [2], schedule=QUICK)[PROBE.key()]
    assert set(timing.variants_s) == ALL_AT_2 and timing.original_s != 100.0
    stored = LatencyCache(machine_key(1)).load().get(PROBE.key())
    assert set(stored) == {ORIGINAL, "4:parallel"} | ALL_AT_2
    assert stored["4:parallel"] != 80.0  # the cached variant was re-measured alongside


@pytest.mark.parametrize("content", [b"\x00\xff not json {", b"[1, 2]", b'{"version": 2, "machines": {}}',
                                     b'{"version": 1, "machines": {"m": 3}}', b""])
def test_a_corrupt_cache_is_ignored_and_replaced(cache_dir, content):
    cache_dir.mkdir()
    (cache_dir / FILE_NAME).write_bytes(content)
    timing = measure([PROBE], [1], schedule=QUICK)[PROBE.key()]
    assert _positive(timing)
    assert json.loads((cache_dir / FILE_NAME).read_text())["version"] == 1


def test_non_finite_or_negative_cached_values_are_ignored(cache_dir):
    cache_dir.mkdir()
    text = '{"version": 1, "machines": {"%s": {"%s": {"original": NaN, "1:multiplier": -1}}}}'
    (cache_dir / FILE_NAME).write_text(text % (machine_key(1), PROBE.key()))
    assert LatencyCache(machine_key(1)).load().get(PROBE.key()) == {}
    assert _positive(measure([PROBE], [1], schedule=QUICK)[PROBE.key()])


def test_an_unwritable_cache_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SEPCONV_CACHE_DIR", str(blocker / "cache"))
    assert _positive(measure([PROBE], [2], schedule=QUICK)[PROBE.key()])
    cache = LatencyCache("m")
    cache.put("p", {ORIGINAL: 1.0})
    assert cache.save() is False


def test_other_machines_are_kept(cache_dir):
    _write_cache(cache_dir, {ORIGINAL: 1.0}, machine="another cpu | onnxruntime 0 | threads=1")
    measure([PROBE], [1], schedule=QUICK)
    machines = json.loads((cache_dir / FILE_NAME).read_text())["machines"]
    assert set(machines) == {"another cpu | onnxruntime 0 | threads=1", machine_key(1)}


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("SEPCONV_CACHE_DIR", str(tmp_path / "a"))
    assert cache_path() == tmp_path / "a" / "latency-v1.json"
    monkeypatch.delenv("SEPCONV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_path() == tmp_path / "xdg" / "sepconv" / "latency-v1.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_path() == tmp_path / "home" / ".cache" / "sepconv" / "latency-v1.json"
    assert machine_key(2).endswith("threads=2") and "onnxruntime" in machine_key(2)


def _layer_structure(model: onnx.ModelProto, layer: str) -> list:
    """Name, op, attributes and weight shapes/dtypes of the nodes of converted ``layer``, in order."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rows = []
    for node in model.graph.node:
        if node.name.startswith(f"{layer}/"):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            weights = [(n, inits[n].shape, inits[n].dtype) for n in node.input if n in inits]
            rows.append((node.name, node.op_type, attrs, weights, len(node.input), len(node.output)))
    return rows


STRUCTURE_CASES = {
    "same_upper_stride": (ConvCase(cout=16, attrs=dict(auto_pad="SAME_UPPER", strides=[2, 2])), False),
    "conv1d_dilation_dw_bias": (ConvCase(cout=16, kernel=(5,), spatial=(13,), attrs=dict(dilations=[2])), True),
    "pads_no_bias": (ConvCase(cout=16, bias=False, attrs=dict(pads=[1, 0, 1, 2])), False),
    "bn_folded_gets_a_pointwise_bias": (ConvCase(cout=16, bias=False, bn=True), False),
    "transposed": (ConvCase(cout=16, transposed=True, attrs=dict(pads=[1, 0, 0, 1])), False),
    "grouped": (ConvCase(cout=16, groups=2), False),
}


@pytest.mark.parametrize("key", sorted(STRUCTURE_CASES))
def test_timed_variants_are_the_emitted_structure(key, tmp_path):
    case, dw_bias = STRUCTURE_CASES[key]
    path = str(tmp_path / "in.onnx")
    onnx.save_model(conv_model(case, name=LAYER), path)
    loaded = load(path)
    probe = LayerProbe.from_layer(loaded.report.layer(LAYER), depthwise_bias=dw_bias)
    assert probe.has_bias == (case.bias or case.bn)  # a folded BatchNorm gives the pointwise conv a bias
    plan = planner.make_plan(loaded.report, loaded.handle, planner.PlanOptions(rank=2))
    emitted = backend_for("onnx").rewrite(loaded, plan, ConvertOptions(depthwise_bias=dw_bias)).native
    variants = wanted_variants(probe, [2], Form)
    assert set(variants) == ({"2:multiplier"} if case.groups > 1 else ALL_AT_2)
    timed = variant_models(probe, variants)
    tiny = load(_saved(timed[ORIGINAL], tmp_path)).report.layer(LAYER)
    assert LayerProbe.from_layer(tiny, depthwise_bias=dw_bias) == probe
    for variant in variants:
        form = Form(variant.split(":")[1])
        assert _layer_structure(timed[variant], LAYER) == _layer_structure(lower(emitted, {LAYER: form}), LAYER)


def _saved(model: onnx.ModelProto, folder) -> str:
    path = str(folder / "tiny.onnx")
    onnx.save_model(model, path)
    return path


def test_ranks_per_probe_and_grouped_probes(cache_dir):
    grouped = LayerProbe(8, 16, (3, 3), (8, 8), groups=2)
    result = measure([PROBE, grouped], {grouped.key(): [2, 3]}, schedule=QUICK)
    assert result[PROBE.key()].variants_s == {} and _positive(result[PROBE.key()])
    assert set(result[grouped.key()].variants_s) == {"2:multiplier", "3:multiplier"}
    assert wanted_variants(PROBE, [2], [Form.TILED]) == ("2:tiled",)
    assert wanted_variants(PROBE, [1, 10], [Form.PARALLEL]) == ("1:multiplier",)  # 10 > min(16, 9)


def test_runs_alternate_between_variants():
    order: list[str] = []
    calls = {name: (lambda n=name: order.append(n)) for name in "abc"}
    medians = interleaved(calls, Schedule(min_runs=4, min_seconds=0.0, max_runs=4, warmup=1))
    assert set(medians) == set("abc") and all(v >= 0 for v in medians.values())
    timed = order[3:]
    assert len(timed) == 12 and all(sorted(timed[i:i + 3]) == list("abc") for i in range(0, 12, 3))
    assert [timed[i] for i in range(0, 12, 3)] == ["b", "c", "a", "b"]  # each round starts one further on
    order.clear()
    interleaved(calls, Schedule(min_runs=50, min_seconds=0.0, max_runs=50, floor_runs=2, warmup=0), deadline=0.0)
    assert len(order) == 6  # past the deadline: only the floor runs


def test_measure_model_side_by_side(tmp_path):
    case = ConvCase(cout=16)
    source = _saved(conv_model(case), tmp_path)
    loaded = load(source)
    plan = planner.make_plan(loaded.report, loaded.handle, planner.PlanOptions(rank=2))
    converted = lower(backend_for("onnx").rewrite(loaded, plan, ConvertOptions()).native, {LAYER: Form.TILED})
    x = {"x": np.random.default_rng(0).standard_normal((5, case.cin, *case.spatial)).astype(np.float32)}
    a, b = measure_model(source, converted, x, runs=5)
    assert all(math.isfinite(v) and v > 0 for v in (a, b))
    with pytest.raises(InputError, match="'x'"):
        measure_model(source, converted, {"other": x["x"]}, runs=3)
