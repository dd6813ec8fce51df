"""Parity between the PyTorch and ONNX paths: export each test model with ``torch.onnx.export``
(dynamo exporter) and load both. Conv MACs and matmul/linear MACs must be identical. Params agree up to
BatchNorm folding: the exporter folds an eval-mode BN into the conv before it (gamma/beta vanish, the conv
gains a bias), which the PyTorch report gives as ``extra["params_bn_folded"]``.
"""

from __future__ import annotations

import pytest
import torch
from archs import SMALL_MODELS

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.backends.registry import load


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Distinct values everywhere: exporters drop all-zero biases and merge equal-valued initializers
    (two fresh LayerNorms share one weight and one bias in the ONNX file), which would skew params."""
    for param in model.parameters():
        param.data.uniform_(-0.5, 0.5)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-1, 1)
    return model


def _conv_macs(report) -> int:
    return sum(layer.macs for layer in report.layers if layer.conv is not None)


@pytest.mark.parametrize("name", ["unet3d", "audio", "effnet", "transformer"])
@pytest.mark.slow
def test_torch_and_onnx_reports_agree(name, tmp_path):
    factory, shape = SMALL_MODELS[name]
    torch.manual_seed(0)
    model = _randomise(factory()).eval()
    path = str(tmp_path / f"{name}.onnx")
    torch.onnx.export(model, (torch.randn(shape),), path, dynamo=True, verbose=False)
    onnx_report = load(path, LoadOptions()).report
    torch_report = load(f"archs:{factory.__name__}", LoadOptions(input_shapes=((None, shape),))).report
    assert _conv_macs(onnx_report) == _conv_macs(torch_report)
    assert not onnx_report.uncounted and not torch_report.uncounted
    assert onnx_report.macs - _conv_macs(onnx_report) == torch_report.macs - _conv_macs(torch_report)
    folded = dict(torch_report.extra).get("params_bn_folded", torch_report.params)
    assert onnx_report.params - _scalar_constants(path) == folded


def _scalar_constants(path: str) -> int:
    """One-element float initializers the exporter adds (attention scale, GELU constants): ONNX counts
    every float initializer as a param, the module has no such parameter."""
    import onnx

    model = onnx.load(path)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    return sum(1 for t in model.graph.initializer if t.data_type in floats and list(t.dims) in ([], [1]))
