"""Reference architectures built in code (no torchvision) for the PyTorch counting tests.

ResNet-50, VGG-16, MobileNetV2 and AlexNet follow torchvision's definitions layer for layer, so their
params and MACs at 224x224 must equal torchvision's published figures. The small models cover what
popular counters get wrong: ConvTranspose3d (3-D UNet), Conv1d (audio), Linear over a sequence and
scaled_dot_product_attention (transformer block), depthwise convs with 'same' padding in a Conv2d
subclass (EfficientNet-like block), and functional convs/einsum.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples"))
from seed_vgg import build as seed_vgg  # noqa: E402


class Bottleneck(nn.Module):
    """torchvision ResNet bottleneck (stride on the 3x3 conv, v1.5)."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    """torchvision resnet50: 25,557,032 params, 4.089 GMACs at 224x224."""

    def __init__(self, num_classes: int = 1000, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1, self.relu, self.maxpool = nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        cin, stages = 64, []
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
            layers = []
            for j in range(n):
                layers.append(Bottleneck(cin, width, 2 if j == 0 and i > 0 else 1))
                cin = width * 4
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _vgg_features(cfg) -> nn.Sequential:
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """torchvision vgg16: 138,357,544 params, 15.470 GMACs at 224x224."""

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features, self.avgpool = _vgg_features(self.CFG), nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
            nn.Dropout(), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGG19(VGG16):
    """torchvision vgg19: 143,667,240 params, 19.632 GMACs at 224x224."""

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1, self.expand3x3 = nn.Conv2d(squeeze, e1, 1), nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class SqueezeNet10(nn.Module):
    """torchvision squeezenet1_0: 1,248,424 params, 0.819 GMACs at 224x224."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2), nn.ReLU(True), pool(), Fire(96, 16, 64, 64), Fire(128, 16, 64, 64),
            Fire(128, 32, 128, 128), pool(), Fire(256, 32, 128, 128), Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), pool(), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Conv2d(512, num_classes, 1), nn.ReLU(True),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class DenseLayer(nn.Module):
    """DenseNet bottleneck layer: BN-ReLU-1x1 (4*growth), BN-ReLU-3x3 (growth), concatenated to its input."""

    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))
        return torch.cat([x, y], 1)


class DenseNet121(nn.Module):
    """torchvision densenet121: 7,978,856 params, 2.834 GMACs at 224x224."""

    def __init__(self, num_classes: int = 1000, growth: int = 32, blocks=(6, 12, 24, 16)):
        super().__init__()
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(True), nn.MaxPool2d(3, 2, 1)]
        channels = 64
        for index, count in enumerate(blocks):
            for _ in range(count):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if index < len(blocks) - 1:
                layers += [nn.BatchNorm2d(channels), nn.ReLU(True), nn.Conv2d(channels, channels // 2, 1, bias=False),
                           nn.AvgPool2d(2, 2)]
                channels //= 2
        self.features = nn.Sequential(*layers, nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)
        return self.classifier(torch.flatten(x, 1))


def _conv_bn(cin, cout, k, stride, groups=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision mobilenet_v2: 3,504,872 params, 0.301 GMACs at 224x224."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [_conv_bn(3, 32, 3, 2)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class AlexNet(nn.Module):
    """torchvision alexnet: 61,100,840 params, 0.714 GMACs at 224x224."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(True), nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True),
            nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class UNet3D(nn.Module):
    """A two-level 3-D UNet: Conv3d encoders, ConvTranspose3d (k=2, s=2) up-sampling, skip concat."""

    def __init__(self, cin: int = 1, base: int = 8, classes: int = 2):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv3d(cin, base, 3, padding=1), nn.BatchNorm3d(base), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv3d(base, base * 2, 3, padding=1), nn.BatchNorm3d(base * 2), nn.ReLU())
        self.pool = nn.MaxPool3d(2)
        self.bottom = nn.Sequential(nn.Conv3d(base * 2, base * 4, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose3d(base * 4, base * 2, 2, stride=2)
        self.dec2 = nn.Sequential(nn.Conv3d(base * 4, base * 2, 3, padding=1), nn.ReLU())
        self.up1 = nn.ConvTranspose3d(base * 2, base, 2, stride=2)
        self.dec1 = nn.Sequential(nn.Conv3d(base * 2, base, 3, padding=1), nn.ReLU())
        self.head = nn.Conv3d(base, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


class AudioFrontEnd(nn.Module):
    """Conv1d front-end over a waveform (strided, dilated, grouped), then a ConvTranspose1d and a Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 16, 10, stride=5)
        self.conv2 = nn.Conv1d(16, 32, 3, stride=2, dilation=2, groups=4, bias=False)
        self.bn = nn.BatchNorm1d(32)
        self.up = nn.ConvTranspose1d(32, 16, 4, stride=2, padding=1)
        self.proj = nn.Linear(16, 8)

    def forward(self, x):
        x = F.gelu(self.bn(self.conv2(F.gelu(self.conv1(x)))))
        return self.proj(self.up(x).transpose(1, 2))


class TransformerBlock(nn.Module):
    """Pre-norm attention block: Linear over a (B, L, D) sequence, SDPA, MLP, plus a bare einsum/matmul."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.mix = nn.Parameter(torch.randn(dim, dim) * 0.02)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.out(a)
        x = x + self.mlp(self.norm2(x))
        return torch.einsum("bnd,de->bne", x, self.mix) + torch.matmul(x, self.mix)


class SamePadConv2d(nn.Conv2d):
    """A Conv2d subclass (as in HF EfficientNet ports) always using padding='same'."""

    def __init__(self, cin, cout, k, groups=1, bias=False):
        super().__init__(cin, cout, k, padding="same", groups=groups, bias=bias)


class EffNetBlock(nn.Module):
    """EfficientNet MBConv-like: expand 1x1, depthwise 5x5 'same', squeeze-excite, project; F.conv2d too."""

    def __init__(self, cin: int = 16, expand: int = 4, cout: int = 24):
        super().__init__()
        hidden = cin * expand
        self.expand, self.bn0 = SamePadConv2d(cin, hidden, 1), nn.BatchNorm2d(hidden)
        self.depthwise, self.bn1 = SamePadConv2d(hidden, hidden, 5, groups=hidden), nn.BatchNorm2d(hidden)
        self.se_reduce, self.se_expand = nn.Conv2d(hidden, 4, 1), nn.Conv2d(4, hidden, 1)
        self.project, self.bn2 = SamePadConv2d(hidden, cout, 1), nn.BatchNorm2d(cout)
        self.extra = nn.Parameter(torch.randn(cout, cout, 3, 3) * 0.1)

    def forward(self, x):
        x = F.silu(self.bn0(self.expand(x)))
        x = F.silu(self.bn1(self.depthwise(x)))
        s = torch.sigmoid(self.se_expand(F.silu(self.se_reduce(F.adaptive_avg_pool2d(x, 1)))))
        x = self.bn2(self.project(x * s))
        return F.conv2d(x, self.extra, padding=1)


class TiedHead(nn.Module):
    """Shared parameters: ``b`` is ``a`` reused, ``head.weight`` is ``emb.weight`` (610 params, not 1,220)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 10)
        self.b = self.a
        self.emb, self.head = nn.Embedding(50, 10), nn.Linear(10, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        return self.head(self.b(self.a(x)))


TIED_PARAMS = 10 * 10 + 10 + 50 * 10


SMALL_MODELS = {
    "unet3d": (UNet3D, (1, 1, 16, 16, 16)),
    "audio": (AudioFrontEnd, (2, 1, 400)),
    "transformer": (TransformerBlock, (2, 10, 32)),
    "effnet": (EffNetBlock, (1, 16, 20, 20)),
    "seed_vgg": (seed_vgg, (1, 3, 32, 32)),
}

TORCHVISION = {  # name: (factory, params, MACs at 1x3x224x224, published GMACs)
    "resnet50": (ResNet50, 25_557_032, 4.089),
    "vgg16": (VGG16, 138_357_544, 15.470),
    "mobilenet_v2": (MobileNetV2, 3_504_872, 0.301),
    "alexnet": (AlexNet, 61_100_840, 0.714),
    "vgg19": (VGG19, 143_667_240, 19.632),
    "squeezenet1_0": (SqueezeNet10, 1_248_424, 0.819),
    "densenet121": (DenseNet121, 7_978_856, 2.834),
}
