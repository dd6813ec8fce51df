"""Small PyTorch fixtures for the rewriter tests: loaded-model records, hand-made plans, the seed VGG."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sepconv_cli.backends.base import LoadedModel
from sepconv_cli.backends.torch.modules import spec_of
from sepconv_cli.core import costs
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.core.records import Layer, ModelInfo, Report, TensorInfo


class NoWeights:
    """A handle without weights: the module backend reads weights from the module itself."""

    def conv_weights(self, name):
        return None


def report_for(model: nn.Module, shape: tuple[int, ...], fmt: str = "entrypoint") -> Report:
    """A report whose rows are the model's convs (qualified names, ConvSpec) and BN parameter rows."""
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd,)):
            layers.append(Layer(name=name, op=type(module).__name__, conv=spec_of(module)))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            layers.append(Layer(name=name, op="BatchNorm", params=sum(p.numel() for p in module.parameters())))
    params = sum(p.numel() for p in model.parameters())
    info = ModelInfo(path="model", format=fmt, inputs=(TensorInfo("input", shape),))
    return Report(model=info, layers=tuple(layers), params=params)


def loaded(model: nn.Module, shape: tuple[int, ...], fmt: str = "entrypoint") -> LoadedModel:
    """A LoadedModel around an eval-mode module."""
    model.eval()
    return LoadedModel(report=report_for(model, shape, fmt), handle=NoWeights(), native=model)


def planned(model: nn.Module, name: str, rank: int, bn: str | None = None, depthwise_bias: bool = False) -> PlannedLayer:
    """A planned layer costed with costs.py (a folded BN's params leave with the conv; it adds a bias)."""
    conv = model.get_submodule(name)
    spec = spec_of(conv)
    bn_params = sum(p.numel() for p in model.get_submodule(bn).parameters()) if bn else 0
    after = costs.separable_params(spec, rank, depthwise_bias) + (spec.out_channels if bn and not spec.has_bias else 0)
    return PlannedLayer(name=name, rank=rank, params_before=costs.conv_params(spec) + bn_params, params_after=after,
                        macs_before=None, macs_after=None, bn_folded=bn)


def full_rank(conv: nn.Module) -> int:
    """min(Cout/g, K): the rank at which the separable form is exact."""
    return min(conv.out_channels // conv.groups, int(np.prod(conv.kernel_size)))


def plan_of(*layers: PlannedLayer) -> Plan:
    return Plan(layers=tuple(layers))


def randomise_bn(bn: nn.Module, seed: int) -> nn.Module:
    """Give a BatchNorm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=g))
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return bn


def seed_vgg() -> nn.Module:
    """The seed tutorial's VGG-style CIFAR model in torch: 3x3 padding=1 convs with bias, no BN."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    cin = 3
    for width in (64, 128, 256):
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                   nn.MaxPool2d(2)]
        cin = width
    layers += [nn.Flatten(), nn.Linear(256 * 4 * 4, 10)]
    return nn.Sequential(*layers)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||a|| in float64."""
    a64, b64 = a.detach().double(), b.detach().double()
    return float((a64 - b64).norm() / a64.norm())
