"""Architectures of the benchmark models; every ``build_NAME`` returns an untrained ``nn.Module``.

Load the trained weights with ``model.load_state_dict(torch.load("artifacts/NAME.pt"))``.

- ``build_resnet_digits``: ResNet-14-style classifier for 1x32x32 images (stem, 3 stages x 2 basic blocks,
  32/64/128 channels, 1x1 conv + BN projection shortcut where stride or width changes), 10 logits.
- ``build_dncnn``: DnCNN-style denoiser for 1xHxW images in [0, 1]: 10 3x3 convs of 64 channels (BN + ReLU
  in the 8 middle ones); the network predicts the noise and the module returns ``x - noise``.
- ``build_cnn1d``: 1-D CNN classifier for 1x256 signals (5 Conv1d + BN + ReLU, stride and max-pooling,
  global average pool), 6 logits.
- ``build_resnet50_like``: ResNet-50-shaped network (bottleneck blocks [3, 4, 6, 3]) for 3x224x224 inputs,
  1000 logits; only ever used untrained, to time conversions of a large model.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """A bias-free 'same'-padded 2-D conv followed by BatchNorm (no activation)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU, conv3x3-BN, residual add (projected when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        """Block from ``cin`` to ``cout`` channels; the first conv (and the shortcut) uses ``stride``."""
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3)
        self.relu = nn.ReLU()
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual output of the block."""
        return self.relu(self.conv2(self.relu(self.conv1(x))) + self.shortcut(x))


class ResNetDigits(nn.Module):
    """Small ResNet (14 weight layers on the main path) for 1x32x32 digit images."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 2,
                 num_classes: int = 10):
        """Stem to ``widths[0]`` channels, then one stage per width (stride 2 from the second stage on)."""
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_channels, widths[0], 3), nn.ReLU())
        stages = []
        cin = widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(cin if b == 0 else width, width, stride if b == 0 else 1)
                                          for b in range(blocks)]))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of images (N, C, 32, 32)."""
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class DnCNN(nn.Module):
    """DnCNN-style residual denoiser: the conv stack estimates the noise, the output is ``x - noise``."""

    def __init__(self, channels: int = 1, features: int = 64, depth: int = 10):
        """``depth`` 3x3 convs: conv+ReLU, ``depth - 2`` x (conv+BN+ReLU), conv back to ``channels``."""
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features), nn.ReLU()]
        layers.append(nn.Conv2d(features, channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoised image (same shape as the noisy input ``x``)."""
        return x - self.body(x)


class CNN1d(nn.Module):
    """1-D CNN classifier for single-channel signals of length 256."""

    def __init__(self, in_channels: int = 1, num_classes: int = 6):
        """Five Conv1d+BN+ReLU layers (32, 64, 64, 128, 128 channels), stride 2 then three max-pools."""
        super().__init__()

        def unit(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
            """Conv1d (bias-free, 'same' padding) + BatchNorm1d + ReLU."""
            return [nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
                    nn.BatchNorm1d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *unit(in_channels, 32, 7, stride=2),
            *unit(32, 64, 5), nn.MaxPool1d(2),
            *unit(64, 64, 5), nn.MaxPool1d(2),
            *unit(64, 128, 5), nn.MaxPool1d(2),
            *unit(128, 128, 5),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of signals (N, C, 256)."""
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4, residual add, ReLU."""

    def __init__(self, cin: int, width: int, stride: int):
        """Block from ``cin`` to ``4 * width`` channels through a ``width``-channel 3x3 conv."""
        super().__init__()
        cout = 4 * width
        self.reduce = conv_bn(cin, width, 1)
        self.conv = conv_bn(width, width, 3, stride)
        self.expand = conv_bn(width, cout, 1)
        self.relu = nn.ReLU()
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual output of the block."""
        y = self.relu(self.conv(self.relu(self.reduce(x))))
        return self.relu(self.expand(y) + self.shortcut(x))


class ResNet50Like(nn.Module):
    """ResNet-50 layout: 7x7/2 stem + max-pool, bottleneck stages [3, 4, 6, 3] of widths 64..512, 1000 logits."""

    def __init__(self, num_classes: int = 1000):
        """Standard ResNet-50 shapes (25.6 M params)."""
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        stages = []
        cin = 64
        for index, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            stride = 1 if index == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = 4 * width
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of images (N, 3, 224, 224)."""
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def build_resnet_digits() -> nn.Module:
    """The digits ResNet (1x32x32 input, 10 classes), untrained."""
    return ResNetDigits()


def build_dncnn() -> nn.Module:
    """The DnCNN denoiser (1 channel, 64 features, 10 convs), untrained."""
    return DnCNN()


def build_cnn1d() -> nn.Module:
    """The 1-D signal classifier (1x256 input, 6 classes), untrained."""
    return CNN1d()


def build_resnet50_like() -> nn.Module:
    """The ResNet-50-shaped network (3x224x224 input, 1000 classes), randomly initialised."""
    return ResNet50Like()
