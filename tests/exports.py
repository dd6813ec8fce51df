"""Tiny versions of the architectures people export to ONNX, and the exporters' two routes, for the
exact-counts tests: MobileNetV2, EfficientNet-B0 with TF-style 'same' padding computed from the input
shape at run time (as timm's ``Conv2dSame``), a GroupNorm 3-D UNet with trilinear upsampling, DenseNet,
and a wav2vec2-like audio model (conv feature extractor with GroupNorm, positional grouped conv,
attention). Widths are tiny so that exports and counts stay fast; the structure is the real one.

``export`` writes a model with the legacy (TorchScript) exporter or the dynamo one, with a dynamic batch
(and optionally dynamic spatial/time dims); ``torch_macs`` is ``torch.utils.flop_counter``'s FLOPs / 2.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from archs import DenseNet121, InvertedResidual
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def export(model: nn.Module, x: torch.Tensor, path: str, dynamo: bool = False, axes: dict | None = None,
           fold: bool = False) -> str:
    """Write ``model`` to ``path``. ``axes``: dynamic dims of the input (default ``{0: "N"}``); ``fold``:
    let the legacy exporter fold BatchNorms into the convs (its default)."""
    axes = {0: "N"} if axes is None else axes
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {i: torch.export.Dim(name, min=2) if i else torch.export.Dim(name) for i, name in axes.items()}
            torch.onnx.export(model, (x,), path, dynamo=True, input_names=["x"], dynamic_shapes=({**dims},),
                              optimize=fold, verbose=False)
        else:
            torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": axes}, opset_version=17, do_constant_folding=fold)
    return path


def trained(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with every parameter and buffer drawn at random, as trained weights are:
    freshly initialised norms are all ones/zeros, and exporters merge equal tensors into one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.25)
    return model.eval()


def torch_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs as ``torch.utils.flop_counter`` counts them (FLOPs / 2)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    return counter.get_total_flops() // 2


def hook_macs(model: nn.Module, x: torch.Tensor, extra=None) -> int:
    """MACs by the design's formulas from the shapes each conv and linear module sees (forward hooks),
    independent of both the ONNX path and the flop counter; ``extra(model, x)`` adds functional matmuls."""
    total = 0

    def hook(module, args, out):
        nonlocal total
        x_in = args[0]
        if isinstance(module, nn.Linear):
            total += out.numel() // out.shape[-1] * module.in_features * module.out_features
        elif isinstance(module, nn.modules.conv._ConvTransposeNd):
            total += x_in.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
        else:
            total += out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return total + (extra(model, x) if extra else 0)


def batchnorm_channels(model: nn.Module) -> int:
    """Channels of every BatchNorm: each holds 2 params (scale, bias) and 2 buffers per channel."""
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def params_of(model: nn.Module) -> int:
    """Trainable parameter elements."""
    return sum(p.numel() for p in model.parameters())


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BatchNorm, a 1x1 strided shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.short(x))


class TinyResNet(nn.Module):
    """ResNet-18's layout (7x7 s2 stem, 3x3 s2 max-pool, four stages, total stride 32) at widths 4..32."""

    def __init__(self, classes: int = 10, widths=(4, 8, 16, 32)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], widths[0]
        for index, width in enumerate(widths):
            stages.append(BasicBlock(cin, width, 1 if index == 0 else 2))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1))


class TinyMobileNetV2(nn.Module):
    """MobileNetV2's layout (stem s2, inverted residuals with expansion 6, 1x1 head) at width 1/8."""

    SETTINGS = ((1, 4, 1, 1), (6, 6, 2, 2), (6, 8, 2, 2), (6, 12, 1, 2))

    def __init__(self, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())]
        cin = 8
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(nn.Sequential(nn.Conv2d(cin, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(32, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def same_pads(size, k: int, s: int, d: int = 1):
    """TF 'same' total padding of one dim, computed from the (possibly traced) size at run time."""
    if isinstance(size, torch.Tensor):
        return torch.clamp((torch.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, min=0).to(torch.int64)
    return max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """timm's Conv2dSame: pads from the input shape at every call, then a conv without padding."""

    def forward(self, x):
        h, w = x.shape[-2:]
        ph = same_pads(h, self.kernel_size[0], self.stride[0], self.dilation[0])
        pw = same_pads(w, self.kernel_size[1], self.stride[1], self.dilation[1])
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """EfficientNet MBConv: 1x1 expand, kxk depthwise 'same', squeeze-excite, 1x1 project, residual."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = nn.Sequential(Conv2dSame(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU()) \
            if expand != 1 else nn.Identity()
        self.dw = nn.Sequential(Conv2dSame(hidden, hidden, k, stride, groups=hidden, bias=False),
                                nn.BatchNorm2d(hidden), nn.SiLU())
        self.se_reduce, self.se_expand = nn.Conv2d(hidden, max(1, cin // 4), 1), nn.Conv2d(max(1, cin // 4), hidden, 1)
        self.project = nn.Sequential(Conv2dSame(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.dw(self.expand(x))
        y = y * torch.sigmoid(self.se_expand(F.silu(self.se_reduce(F.adaptive_avg_pool2d(y, 1)))))
        y = self.project(y)
        return x + y if self.residual else y


class TinyEfficientNetB0(nn.Module):
    """EfficientNet-B0's seven stages (kernel, stride, expansion) at tiny widths, one block each."""

    STAGES = ((1, 3, 1, 4), (6, 3, 2, 6), (6, 5, 2, 8), (6, 3, 2, 12), (6, 5, 1, 12), (6, 5, 2, 16), (6, 3, 1, 16))

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(Conv2dSame(3, 8, 3, 2, bias=False), nn.BatchNorm2d(8), nn.SiLU())
        blocks, cin = [], 8
        for expand, k, stride, cout in self.STAGES:
            blocks.append(MBConv(cin, cout, k, stride, expand))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(Conv2dSame(cin, 32, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU())
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _gn_block(cin: int, cout: int, groups: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.ReLU())


class GroupNormUNet3D(nn.Module):
    """A two-level 3-D UNet as SegResNet builds it: GroupNorm blocks, max-pool down, trilinear up, skips."""

    def __init__(self, cin: int = 1, base: int = 4, classes: int = 2):
        super().__init__()
        self.enc1, self.enc2 = _gn_block(cin, base), _gn_block(base, base * 2)
        self.bottom = _gn_block(base * 2, base * 4)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.dec2, self.dec1 = _gn_block(base * 6, base * 2), _gn_block(base * 3, base)
        self.head = nn.Conv3d(base, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool3d(e1, 2))
        b = self.bottom(F.max_pool3d(e2, 2))
        d2 = self.dec2(torch.cat([self.up(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        return self.head(d1)


def tiny_densenet() -> nn.Module:
    """DenseNet-121's layout (7x7 stem, dense blocks with 1x1/3x3 bottlenecks, transitions) with growth 4."""
    return DenseNet121(num_classes=10, growth=4, blocks=(2, 2, 2))


class Attention(nn.Module):
    """Multi-head self-attention written with matmuls (as wav2vec2's eager attention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        split = lambda y: y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x) * self.scale), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        return self.out(a.transpose(1, 2).reshape(b, t, d))


def attention_macs(model: TinyWav2Vec2, wave: torch.Tensor) -> int:
    """The two functional matmuls of the attention (QK^T and AV): 2 * B * T'^2 * d, T' the frame count."""
    frames = wave.shape[-1]
    for conv in [model.conv0, *model.convs]:
        frames = (frames - conv.kernel_size[0]) // conv.stride[0] + 1
    return 2 * wave.shape[0] * frames * frames * model.projection.out_features


class TinyWav2Vec2(nn.Module):
    """wav2vec2's shape: conv feature extractor (first layer GroupNorm over every channel), feature
    projection, grouped positional conv embedding (even kernel, last frame dropped), one post-norm
    transformer layer."""

    def __init__(self, c: int = 8, d: int = 16, heads: int = 2):
        super().__init__()
        self.conv0, self.norm0 = nn.Conv1d(1, c, 10, 5, bias=False), nn.GroupNorm(c, c)
        self.convs = nn.ModuleList(nn.Conv1d(c, c, 3, 2, bias=False) for _ in range(2))
        self.feature_norm, self.projection = nn.LayerNorm(c), nn.Linear(c, d)
        self.pos_conv = nn.Conv1d(d, d, 4, padding=2, groups=2)
        self.norm, self.attention = nn.LayerNorm(d), Attention(d, heads)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.norm2 = nn.LayerNorm(d)

    def forward(self, wave):
        x = F.gelu(self.norm0(self.conv0(wave.unsqueeze(1))))
        for conv in self.convs:
            x = F.gelu(conv(x))
        x = self.projection(self.feature_norm(x.transpose(1, 2)))
        x = x + F.gelu(self.pos_conv(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2)
        x = self.norm(x)
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.ff(x))
