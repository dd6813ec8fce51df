"""The seed tutorial's VGG-style model with a BatchNorm after every conv, sized for 3x32x32 inputs.

Entry point ``samples/digits_vgg.py:build`` (``batchnorm=True`` by default): three blocks of two 3x3
'same' convs (64, 128, 256 filters, bias) each followed by BatchNorm and ReLU, a 2x2 max-pool after each
block, Flatten and a Linear 4096 -> 10 giving logits. Without BatchNorm it is exactly the seed's
1,186,378-param model; with it, 1,188,170 params (plus 1,792 running-stat buffers).
Module names (``block1.conv1``, ``block1.bn1``, ``dense``) match ``samples/vgg_cifar.onnx``.
"""

from __future__ import annotations

from torch import nn

FILTERS = (64, 128, 256)


class Block(nn.Module):
    """Two 3x3 'same' convs (each followed by BatchNorm when asked, then ReLU) and a 2x2 max-pool."""

    def __init__(self, cin: int, cout: int, batchnorm: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.pool(x)


class DigitsVGG(nn.Module):
    """VGG-style classifier for 3x32x32 images, 10 classes (logits)."""

    def __init__(self, batchnorm: bool = True, num_classes: int = 10):
        super().__init__()
        channels = (3,) + FILTERS
        self.block1 = Block(channels[0], channels[1], batchnorm)
        self.block2 = Block(channels[1], channels[2], batchnorm)
        self.block3 = Block(channels[2], channels[3], batchnorm)
        self.flatten = nn.Flatten()
        self.dense = nn.Linear(4 * 4 * FILTERS[-1], num_classes)

    def forward(self, x):
        return self.dense(self.flatten(self.block3(self.block2(self.block1(x)))))


def build(batchnorm: bool = True, num_classes: int = 10) -> nn.Module:
    """The digits VGG (untrained; load ``samples/digits_vgg.pt`` for the trained weights)."""
    return DigitsVGG(batchnorm=batchnorm, num_classes=num_classes)
