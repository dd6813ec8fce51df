"""Latency records: probe keys and defaults, valid forms, timings' best form and speed-up."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sepconv_cli.core.latency import Form, LayerProbe, LayerTiming, valid_forms, variant_key
from sepconv_cli.core.records import ConvSpec, Layer


def _probe(**changes) -> LayerProbe:
    fields = dict(in_channels=64, out_channels=128, kernel=(3, 3), spatial=(28, 28), pads=(1, 1, 1, 1), has_bias=True)
    return LayerProbe(**{**fields, **changes})


def test_probe_key_is_stable_and_defaults_are_filled():
    probe = _probe()
    assert probe.key() == "conv2d|64->128|k3x3|s1x1|d1x1|g1|p1,1,1,1|in1x64x28x28|float32|bias10"
    assert probe.stride == (1, 1) and probe.dilation == (1, 1)
    assert probe.input_shape == (1, 64, 28, 28) and probe.max_rank == 9
    assert LayerProbe(4, 8, (5,), (11,)).pads == (0, 0)
    transposed = _probe(transposed=True, auto_pad="same", groups=2, depthwise_bias=True, dtype="float16")
    assert transposed.key() == "convT2d|64->128|k3x3|s1x1|d1x1|g2|pSAME_UPPER|in1x64x28x28|float16|bias11"
    assert transposed.max_rank == 9 and _probe(out_channels=4).max_rank == 4


def test_probes_that_differ_have_different_keys():
    variants = [_probe(), _probe(stride=(2, 2)), _probe(dilation=(2, 2)), _probe(groups=2), _probe(pads=(0, 0, 0, 0)),
                _probe(spatial=(14, 28)), _probe(has_bias=False), _probe(depthwise_bias=True), _probe(dtype="float64"),
                _probe(transposed=True), _probe(in_channels=32), _probe(out_channels=64), _probe(auto_pad="VALID")]
    assert len({p.key() for p in variants}) == len(variants)
    assert _probe() == _probe() and hash(_probe()) == hash(_probe())


@pytest.mark.parametrize("bad", [dict(spatial=(28,)), dict(groups=3), dict(kernel=(0, 3)), dict(groups=0)])
def test_impossible_probes_are_refused(bad):
    with pytest.raises(ValueError, match="probe"):
        _probe(**bad)


def test_probe_from_a_report_row():
    spec = ConvSpec(in_channels=16, out_channels=32, kernel=(3, 3), stride=(2, 2), dilation=(1, 1),
                    pads=(1, 1, 1, 1), has_bias=True)
    layer = Layer(name="conv", op="Conv", input_shapes=(("N", 16, 20, 24), (32, 16, 3, 3)), conv=spec)
    probe = LayerProbe.from_layer(layer)
    assert probe == LayerProbe(16, 32, (3, 3), (20, 24), stride=(2, 2), pads=(1, 1, 1, 1), has_bias=True)
    assert LayerProbe.from_layer(Layer(name="relu", op="Relu", input_shapes=((1, 16, 20, 24),))) is None
    unknown = Layer(name="conv", op="Conv", input_shapes=((1, 16, "H", 24),), conv=spec)
    assert LayerProbe.from_layer(unknown) is None
    assert LayerProbe.from_layer(Layer(name="conv", op="Conv", input_shapes=(None,), conv=spec)) is None
    no_bias = replace(spec, has_bias=False)
    assert not LayerProbe.from_layer(replace(layer, conv=no_bias)).has_bias
    assert LayerProbe.from_layer(replace(layer, conv=no_bias, bn_follows="bn")).has_bias  # folded into a bias


def test_valid_forms():
    assert valid_forms(1, 1) == (Form.MULTIPLIER,)
    assert valid_forms(4, 2) == (Form.MULTIPLIER,)
    assert valid_forms(2, 1) == (Form.MULTIPLIER, Form.TILED, Form.PARALLEL)
    assert variant_key(2, "tiled") == variant_key(2, Form.TILED) == "2:tiled"
    assert {f.value for f in Form} == {"multiplier", "tiled", "parallel"}


def test_timing_best_and_speedup():
    timing = LayerTiming(original_s=4e-3, variants_s={"1:multiplier": 1e-3, "2:multiplier": 5e-3, "2:tiled": 2e-3,
                                                       "2:parallel": 2.5e-3})
    assert timing.ranks() == (1, 2)
    assert timing.best(2) == ("tiled", 2e-3) and timing.best(1) == ("multiplier", 1e-3)
    assert timing.speedup(2) == pytest.approx(2.0) and timing.speedup(1) == pytest.approx(4.0)
    assert timing.seconds(2, Form.PARALLEL) == 2.5e-3 and timing.seconds(3, "tiled") is None
    with pytest.raises(KeyError, match="rank 3"):
        timing.best(3)
    assert timing.record() == {"original_s": 4e-3, "variants_s": dict(sorted(timing.variants_s.items()))}
    assert timing == LayerTiming(4e-3, dict(timing.variants_s))
