"""Real exports, as users have them: a dynamic batch, pads computed at run time, GroupNorm emulation,
DenseNet concatenations, an audio model with attention. Params and MACs are exact with no flags (per
sample) and with the shape pinned, against independent arithmetic (the design's formulas applied to the
shapes each module sees), against ``torch.utils.flop_counter`` (FLOPs / 2), and across the legacy and
dynamo exporters.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from exports import (  # noqa: E402
    GroupNormUNet3D,
    TinyEfficientNetB0,
    TinyMobileNetV2,
    TinyWav2Vec2,
    attention_macs,
    batchnorm_channels,
    export,
    hook_macs,
    params_of,
    tiny_densenet,
    torch_macs,
    trained,
)

from sepconv_cli.backends.onnx.shape_probe import SOURCE  # noqa: E402
from sepconv_cli.backends.registry import LoadOptions, load  # noqa: E402

MODELS = {  # name: (factory, input shape with batch 2, extra functional MACs)
    "mobilenet_v2": (TinyMobileNetV2, (2, 3, 64, 64), None),
    "efficientnet_b0_tf_same": (TinyEfficientNetB0, (2, 3, 64, 64), None),
    "groupnorm_unet3d": (GroupNormUNet3D, (2, 1, 16, 16, 16), None),
    "densenet": (tiny_densenet, (2, 3, 64, 64), None),
    "wav2vec2_like": (TinyWav2Vec2, (2, 1600), attention_macs),
}
PROBED = {"efficientnet_b0_tf_same", "wav2vec2_like"}  # shapes computed at run time: one onnxruntime run


def _built(name: str):
    factory, shape, extra = MODELS[name]
    torch.manual_seed(0)
    model = trained(factory())
    return model, torch.randn(*shape), extra


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """name -> (model, example batch, extra, path of its legacy export with a dynamic batch)."""
    folder = tmp_path_factory.mktemp("legacy")
    out = {}
    for name in MODELS:
        model, x, extra = _built(name)
        out[name] = (model, x, extra, export(model, x, str(folder / f"{name}.onnx")))
    return out


def _pin(x: torch.Tensor, batch: int) -> tuple:
    return ((None, (batch, *x.shape[1:])),)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_legacy_export_with_dynamic_batch_is_exact_with_no_flags(legacy, name):
    model, x, extra, path = legacy[name]
    report = load(path, LoadOptions()).report
    sample = x[:1]
    expected = hook_macs(model, sample, extra)
    assert expected == torch_macs(model, sample)  # the two references agree
    assert report.macs == expected and not report.unknown_rows and report.macs_symbolic is None
    assert report.model.assumed_dims == (("N", 1),)
    assert report.params == params_of(model)
    assert report.buffers == 2 * batchnorm_channels(model)  # running mean and variance
    assert report.model.shape_source == (SOURCE if name in PROBED else "")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_legacy_export_pinned_to_a_batch_of_three(legacy, name):
    model, x, extra, path = legacy[name]
    report = load(path, LoadOptions(input_shapes=_pin(x, 3))).report
    assert report.macs == 3 * hook_macs(model, x[:1], extra) and report.model.assumed_dims == ()


@pytest.mark.slow
def test_bn_folding_export_loses_exactly_one_param_per_channel(tmp_path):
    """The legacy exporter's default folds each BatchNorm into its conv: 2 params per channel go, the
    bias-free conv gains a bias of 1 per channel. MACs are unchanged."""
    model, x, _ = _built("mobilenet_v2")
    report = load(export(model, x, str(tmp_path / "folded.onnx"), fold=True), LoadOptions()).report
    assert report.params == params_of(model) - batchnorm_channels(model)
    assert report.buffers == 0 and report.macs == torch_macs(model, x[:1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0_tf_same", "groupnorm_unet3d", "densenet",
                                  "wav2vec2_like"])
def test_dynamo_export_agrees_with_legacy_and_torch(legacy, tmp_path, name):
    model, x, extra, legacy_path = legacy[name]
    report = load(export(model, x, str(tmp_path / "dynamo.onnx"), dynamo=True), LoadOptions()).report
    legacy_report = load(legacy_path, LoadOptions()).report
    assert report.params == legacy_report.params == params_of(model)
    assert report.macs == legacy_report.macs == torch_macs(model, x[:1])
    assert report.model.assumed_dims == (("N", 1),)


@pytest.mark.slow
def test_probe_path_imports_no_torch(legacy):
    """Analysing the TF-'same' EfficientNet needs the shape probe; the whole ONNX path, child included,
    runs without torch."""
    path = legacy["efficientnet_b0_tf_same"][3]
    code = ("import sys\n"
            "from sepconv_cli.backends.registry import LoadOptions, load\n"
            f"report = load({path!r}, LoadOptions()).report\n"
            f"assert report.model.shape_source == {SOURCE!r} and not report.unknown_rows\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
