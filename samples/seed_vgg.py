"""The seed tutorial's VGG-style CIFAR model as a PyTorch entry point (``samples/seed_vgg.py:build``).

Three blocks of two 3x3 'same' convs (64, 128, 256 filters, bias, ReLU), a 2x2 max-pool after each
block, Flatten, Linear 4096 -> 10: 1,186,378 params on a 1x3x32x32 input.
``python samples/seed_vgg.py`` writes ``samples/seed_vgg.pt2`` with ``torch.export``.
"""

from __future__ import annotations

import os

import torch
from torch import nn


def build(widths: tuple[int, ...] = (64, 128, 256), num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """The seed VGG; ``widths`` are the filters of each two-conv block. Carries ``example_input_shapes``."""
    layers: list[nn.Module] = []
    channels = 3
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding="same"), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    side = image_size // 2 ** len(widths)
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, num_classes))
    model.example_input_shapes = ((1, 3, image_size, image_size),)
    return model


def main(path: str | None = None) -> str:
    """Export the seed VGG (random weights, seed 0) to ``samples/seed_vgg.pt2``; return the path."""
    torch.manual_seed(0)
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_vgg.pt2")
    model = build().eval()
    program = torch.export.export(model, (torch.randn(1, 3, 32, 32),))
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)  # source paths of the machine that built it; not model data
    torch.export.save(program, path)
    return path


if __name__ == "__main__":
    print(main())
