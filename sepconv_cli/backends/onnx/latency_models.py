"""Tiny single-layer ONNX models for latency probes: the original conv and every separable variant.

The original is one Conv/ConvTranspose node ``conv`` with random weights of the probe's shapes on an input
``x`` of shape ``(1, Cin, *spatial)``. Each variant is made by the same code that converts real models: the
ONNX loader reads the tiny model, ``OnnxBackend.rewrite`` replaces ``conv`` at rank T, and ``forms.lower``
restructures it into the form. So what is timed is exactly what ``convert`` emits.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sepconv_cli.backends.base import ConvertOptions, LoadedModel, LoadOptions
from sepconv_cli.backends.onnx.forms import lower
from sepconv_cli.backends.onnx.loader import load_onnx
from sepconv_cli.backends.onnx.rewriter import BACKEND
from sepconv_cli.core.latency import Form, LayerProbe, valid_forms, variant_key
from sepconv_cli.core.plans import Plan, PlannedLayer

ORIGINAL = "original"
"""The key of the original conv among a probe's variants (the others are ``"T:form"``)."""

LAYER = "conv"
OPSET = 17
IR_VERSION = 8  # onnxruntime reads IR <= 13; helper.make_model defaults to the newest


def forms_for(probe: LayerProbe, rank: int, forms: Iterable[Form]) -> tuple[Form, ...]:
    """The requested forms that are distinct and equivalent at ``rank`` (always at least the multiplier form)."""
    valid = valid_forms(rank, probe.groups)
    return tuple(f for f in valid if f in set(forms)) or (Form.MULTIPLIER,)


def wanted_variants(probe: LayerProbe, ranks: Iterable[int], forms: Iterable[Form]) -> tuple[str, ...]:
    """``"T:form"`` keys to time for ``probe``: ranks past ``probe.max_rank`` have no separable form and are
    left out; rank 1 is timed once, as the multiplier-1 conv."""
    forms = tuple(forms)
    ranks = sorted({int(r) for r in ranks if 1 <= int(r) <= probe.max_rank})
    return tuple(variant_key(t, f) for t in ranks for f in forms_for(probe, t, forms))


def is_variant(probe: LayerProbe, key: str) -> bool:
    """True when ``key`` is a ``"T:form"`` key that ``wanted_variants`` could give for ``probe``."""
    rank_text, _, form = key.partition(":")
    if not rank_text.isdigit() or form not in {f.value for f in Form}:
        return False
    return key in wanted_variants(probe, (int(rank_text),), (Form(form),))


def _attributes(probe: LayerProbe) -> dict:
    """The conv's ONNX attributes, leaving out those at their default value (as exporters write them)."""
    attrs: dict = {"kernel_shape": list(probe.kernel), "group": probe.groups}
    if any(s != 1 for s in probe.stride):
        attrs["strides"] = list(probe.stride)
    if any(d != 1 for d in probe.dilation):
        attrs["dilations"] = list(probe.dilation)
    if probe.auto_pad:
        attrs["auto_pad"] = probe.auto_pad
    elif any(probe.pads):
        attrs["pads"] = list(probe.pads)
    return attrs


def original_model(probe: LayerProbe, seed: int = 0) -> onnx.ModelProto:
    """``x -> conv -> y`` with seeded random weights (scaled by 1/sqrt(fan-in)) of the probe's geometry."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(probe.dtype)
    cin_g, cout_g = probe.in_channels // probe.groups, probe.out_channels // probe.groups
    shape = (probe.in_channels, cout_g) if probe.transposed else (probe.out_channels, cin_g)
    fan_in = shape[1] * int(np.prod(probe.kernel))
    weight = rng.standard_normal((*shape, *probe.kernel)) / np.sqrt(fan_in)
    inits = [numpy_helper.from_array(weight.astype(dtype), f"{LAYER}.weight")]
    if probe.has_bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(probe.out_channels).astype(dtype), f"{LAYER}.bias"))
    node = helper.make_node("ConvTranspose" if probe.transposed else "Conv", ["x"] + [t.name for t in inits], ["y"],
                            name=LAYER, **_attributes(probe))
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", elem, list(probe.input_shape))],
                              [helper.make_tensor_value_info("y", elem, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    return onnx.shape_inference.infer_shapes(model)


def _converted(loaded: LoadedModel, probe: LayerProbe, rank: int) -> onnx.ModelProto:
    planned = PlannedLayer(name=LAYER, rank=rank, params_before=0, params_after=0, macs_before=None, macs_after=None)
    plan = Plan(layers=(planned,), depthwise_bias=probe.depthwise_bias)
    return BACKEND.rewrite(loaded, plan, ConvertOptions(depthwise_bias=probe.depthwise_bias)).native


def variant_models(probe: LayerProbe, variants: Sequence[str], seed: int = 0) -> dict[str, onnx.ModelProto]:
    """The original model (key ``ORIGINAL``) and one model per ``"T:form"`` key of ``variants``."""
    original = original_model(probe, seed)
    models = {ORIGINAL: original}
    by_rank: dict[int, onnx.ModelProto] = {}
    with tempfile.TemporaryDirectory(prefix="sepconv-probe-") as tmp:  # the loader reads weights from the file
        path = os.path.join(tmp, "probe.onnx")
        onnx.save_model(original, path)
        loaded = load_onnx(path, LoadOptions())
        for key in variants:
            rank_text, form = key.split(":", 1)
            rank = int(rank_text)
            if rank not in by_rank:
                by_rank[rank] = _converted(loaded, probe, rank)
            models[key] = lower(by_rank[rank], {LAYER: Form(form)})
    return models
