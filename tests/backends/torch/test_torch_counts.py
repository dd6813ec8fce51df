"""PyTorch counting engine: published figures, independent arithmetic, fvcore and FlopCounterMode agreement.

fvcore is right on every test model except where noted, and rows are compared module by module:
- string padding (``padding='same'``): fvcore traces ``aten::_convolution_mode``, has no handle for it and
  counts 0; sepconv counts the arithmetic ``N*Cout*H*W*Cin/g*K``;
- ``scaled_dot_product_attention``: fvcore has no handle (0); sepconv counts its two matmuls.
fvcore's non-MAC handles (batch_norm, norms, upsample, adaptive pooling) are replaced by zero handles for
the comparison (``set_op_handle(name, None)`` does not remove a default handle in fvcore 0.1.5).
``FlopCounterMode`` counts 2 FLOPs per MAC; on the meta device attention runs its math path (two bmm),
so totals agree on every model.
"""

from __future__ import annotations

import pytest
import torch
from archs import (
    SMALL_MODELS,
    TORCHVISION,
    EffNetBlock,
    ResNet50,
    TransformerBlock,
    UNet3D,
)
from torch.utils.flop_counter import FlopCounterMode

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.backends.torch.analyze import ENGINES, Engine, analyze_module
from sepconv_cli.core.records import ModelInfo

FVCORE_NON_MAC = ("aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
                  "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
                  "aten::grid_sampler")


def analyze(model, shape, **options):
    return analyze_module(model, ModelInfo("test", "entrypoint"),
                          LoadOptions(input_shapes=((None, shape),), **options))


def meta(factory):
    with torch.device("meta"):
        return factory()


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_published_figures_on_meta(name):
    factory, params, gmacs = TORCHVISION[name]
    report = analyze(meta(factory), (1, 3, 224, 224)).report
    assert report.params == params
    assert round(report.macs / 1e9, 3) == gmacs
    assert report.uncounted == ()
    assert sum(layer.params for layer in report.layers) == params


def test_resnet50_rows_names_and_bn_dataflow():
    report = analyze(meta(ResNet50), (1, 3, 224, 224)).report
    conv1 = report.layer("layer1.0.conv1")
    assert conv1.op == "Conv2d" and conv1.bn_follows == "layer1.0.bn1"
    assert conv1.input_shapes == ((1, 64, 56, 56),) and conv1.output_shapes == ((1, 64, 56, 56),)
    assert conv1.macs == 64 * 56 * 56 * 64
    assert report.layer("layer1.0.downsample.0").bn_follows == "layer1.0.downsample.1"
    assert report.layer("layer1.0.bn1").buffers == 64 * 2 + 1
    assert report.buffers == sum(layer.buffers for layer in report.layers)
    assert dict(report.extra)["params_bn_folded"] < report.params


def test_unet3d_transpose_conv_arithmetic():
    report = analyze(meta(UNet3D), (1, 1, 16, 16, 16)).report
    up2 = report.layer("up2")  # 32 -> 16 channels, k=2, s=2, input 4^3
    assert up2.conv.transposed and up2.conv.in_channels == 32 and up2.conv.out_channels == 16
    assert up2.macs == 1 * 32 * 4 ** 3 * 16 * 2 ** 3
    assert up2.output_shapes == ((1, 16, 8, 8, 8),)
    assert report.layer("dec1.0").macs == 8 * 16 ** 3 * 16 * 27


def test_same_padding_subclass_depthwise_and_functional_conv():
    report = analyze(meta(EffNetBlock), (1, 16, 20, 20)).report
    dw = report.layer("depthwise")
    assert dw.op == "SamePadConv2d" and dw.conv.padding_text == "same" and dw.conv.is_depthwise
    assert dw.macs == 64 * 20 * 20 * 1 * 25
    functional = report.layer("convolution_0")
    assert functional.conv.pads == (1, 1, 1, 1) and functional.macs == 24 * 20 * 20 * 24 * 9
    assert functional.params == 24 * 24 * 9  # the bare nn.Parameter used by F.conv2d
    weights = analyze(EffNetBlock().eval(), (1, 16, 20, 20)).handle.conv_weights("convolution_0")
    assert weights.weight.shape == (24, 24, 3, 3) and weights.bias is None and weights.bn is None


def test_transformer_linear_over_sequence_attention_and_einsum():
    report = analyze(meta(TransformerBlock), (2, 10, 32)).report
    assert report.layer("qkv").macs == 2 * 10 * 32 * 96
    attention = 2 * 4 * 10 * 10 * 8 * 2
    einsum_and_matmul = 2 * (2 * 10 * 32 * 32)
    linears = 2 * 10 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32)
    assert report.macs == linears + attention + einsum_and_matmul
    assert report.uncounted == ()


def test_attention_flash_kernel_on_cpu_counts_two_matmuls():
    """Run for real on the CPU, attention takes the fused flash kernel: it still costs its two matmuls
    (batch 2, 4 heads, 10 queries x 10 keys, head dim 8), and the total equals the meta path's."""
    from sepconv_cli.backends.torch.count import Mode, trace_module

    torch.manual_seed(0)
    model = TransformerBlock().eval()
    trace = trace_module(model, (torch.randn(2, 10, 32),), mode=Mode.REAL)
    kernels = [e.macs for e in trace.events if e.op == "scaled_dot_product_attention"]
    assert kernels == [2 * 4 * 10 * 10 * 8 * 2]
    default = analyze(model, (2, 10, 32)).report
    assert sum(e.macs or 0 for e in trace.events if e.known) == default.macs
    assert default.macs == analyze(meta(TransformerBlock), (2, 10, 32)).report.macs


def _fvcore(model, x):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, (x,))
    for op in FVCORE_NON_MAC:
        analysis.set_op_handle(op, lambda inputs, outputs: 0)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return analysis.by_module()


@pytest.mark.parametrize("name", sorted(SMALL_MODELS) + [pytest.param("resnet50", marks=pytest.mark.slow)])
def test_per_module_agreement_with_fvcore(name):
    factory, shape = SMALL_MODELS.get(name, (ResNet50, (1, 3, 64, 64)))
    torch.manual_seed(0)
    model = factory().eval()
    by_module = _fvcore(model, torch.randn(shape))
    report = analyze(model, shape).report
    compared = 0
    for layer in report.layers:
        if layer.name not in by_module:
            continue  # functional rows: compared through totals below
        if layer.conv is not None and layer.conv.padding_text:
            assert by_module[layer.name] == 0  # fvcore's gap: aten::_convolution_mode
            spec, out = layer.conv, layer.output_shapes[0]
            assert layer.macs == out[0] * spec.out_channels * out[2] * out[3] * (
                spec.in_channels // spec.groups) * spec.kernel_elems
        else:
            assert layer.macs == by_module[layer.name], layer.name
        compared += 1
    assert compared >= 3


@pytest.mark.parametrize("name", sorted(SMALL_MODELS) + ["resnet50", "mobilenet_v2"])
def test_totals_agree_with_flop_counter_mode_on_meta(name):
    factory, shape = SMALL_MODELS.get(name, (TORCHVISION.get(name, (ResNet50,))[0], (1, 3, 64, 64)))
    model = meta(factory).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(shape, device="meta"))
    assert analyze(model, shape).report.macs * 2 == counter.get_total_flops()


@pytest.mark.slow
def test_fvcore_engine_reproduces_fvcore_tables():
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    model = ResNet50().eval()
    x = torch.zeros(1, 3, 64, 64)
    reference = FlopCountAnalysis(model, (x,))
    reference.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    report = analyze(model, tuple(x.shape), engine="fvcore").report
    assert report.macs == reference.total()
    assert report.layer("layer1.0.bn1").macs == reference.by_module()["layer1.0.bn1"] > 0
    assert any("fvcore" in w for w in report.warnings)


def test_fvcore_engine_on_meta_model_materialises():
    report = analyze(meta(UNet3D), (1, 1, 8, 8, 8), engine="fvcore").report
    assert report.layer("up1").macs == 16 * 4 ** 3 * 8 * 8


def test_engine_mapping_is_exhaustive():
    assert set(ENGINES) == set(Engine)


class ComputedKernel(torch.nn.Module):
    """A conv whose kernel is computed at run time (weight standardisation): not a constant."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight - self.weight.mean(), stride=2)


def test_computed_kernel_is_counted_but_not_constant():
    loaded = analyze(ComputedKernel(), (1, 3, 9, 9))
    row = loaded.report.layer("convolution_0")
    assert row.macs == 4 * 4 * 4 * 3 * 9 and row.conv.stride == (2, 2)
    assert not row.weight_constant and loaded.handle.conv_weights("convolution_0") is None


class _DataDependent(torch.nn.Module):
    """Takes a branch on a tensor's value: no meta or fake pass can run it, only real arithmetic."""

    def __init__(self):
        super().__init__()
        self.small = torch.nn.Conv2d(3, 4, 1)
        self.big = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.big(x) if bool(x.sum() > 0) else self.small(x)


def test_data_dependent_forward_falls_back_to_real_arithmetic():
    report = analyze(_DataDependent().eval(), (1, 3, 8, 8)).report
    # inputs are zeros, so the 1x1 branch runs: 4 * 8 * 8 * 3 MACs, and only that module is a row
    assert report.macs == 4 * 8 * 8 * 3
    assert [layer.name for layer in report.layers if layer.macs] == ["small"]
