"""The PyTorch modules a conversion produces, and how to rebuild them from a manifest.

A converted convolution becomes a :class:`SeparableConv` at the conv's original qualified name
(``features.0``), holding two children:

- ``depthwise``: the conv's own class (``nn.ConvNd`` or ``nn.ConvTransposeNd``), ``Cin -> Cin*T``,
  ``groups=Cin``, with the original kernel, stride, padding (tuple or ``"same"``/``"valid"``),
  output padding, dilation and padding mode; a bias only with ``depthwise_bias``.
- ``pointwise``: a 1x1 ``nn.ConvNd`` ``Cin*T -> Cout``, ``groups=g``, carrying the original bias (or the
  bias of a folded BatchNorm).

``forward(x) = pointwise(depthwise(x))``. A BatchNorm folded into the conv is replaced by ``nn.Identity``
at its own name, so the state_dict of a converted model has the keys ``<name>.depthwise.weight``,
``<name>.pointwise.weight``, ``<name>.pointwise.bias`` and no keys for folded BatchNorms.

Rebuilding a converted model from its manifest (for a saved ``.pt``/``.pth`` state_dict)::

    model = build_original_architecture()            # same code that built the source model
    apply_manifest(model, manifest["layers"], depthwise_bias=manifest.get("depthwise_bias", False))
    model.load_state_dict(torch.load("model.sep.pt"), strict=True)

:func:`apply_manifest` reads, per manifest layer, ``name`` (qualified module name of the conv), ``rank``
(T, the depth multiplier), optionally ``bn_folded`` (qualified name of the BatchNorm replaced by
``nn.Identity``, or null) and optionally ``depthwise_bias`` / ``pointwise_bias`` (booleans; the defaults
are the manifest-wide ``depthwise_bias`` and "the conv had a bias or a BatchNorm was folded"). Every other
geometric attribute (kernel, stride, padding, dilation, groups, padding mode) is taken from the original
conv, so the manifest's copies of them are informative only. Weights are not initialised meaningfully:
``load_state_dict`` supplies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from sepconv_cli.core.records import ConvSpec
from sepconv_cli.errors import RewriteError


@dataclass(frozen=True)
class ConvKind:
    """What a conv class turns into: its spatial rank, whether it is transposed, and the 1x1 class."""

    dims: int
    transposed: bool
    pointwise: type


# Exact base classes (dispatch walks the MRO, so subclasses of these are recognised too).
CONV_KINDS: dict[type, ConvKind] = {
    nn.Conv1d: ConvKind(1, False, nn.Conv1d),
    nn.Conv2d: ConvKind(2, False, nn.Conv2d),
    nn.Conv3d: ConvKind(3, False, nn.Conv3d),
    nn.ConvTranspose1d: ConvKind(1, True, nn.Conv1d),
    nn.ConvTranspose2d: ConvKind(2, True, nn.Conv2d),
    nn.ConvTranspose3d: ConvKind(3, True, nn.Conv3d),
}


def conv_kind(module: nn.Module) -> tuple[type, ConvKind] | None:
    """The registered base conv class of ``module`` and its kind, or None when it is not a conv."""
    for cls in type(module).__mro__:
        if cls in CONV_KINDS:
            return cls, CONV_KINDS[cls]
    return None


class SeparableConv(nn.Module):
    """Depthwise conv followed by a 1x1 pointwise conv (see the module docstring)."""

    def __init__(self, depthwise: nn.Module, pointwise: nn.Module) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = pointwise

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


@dataclass(frozen=True)
class SeparableShape:
    """Structure of one separable replacement: rank T and which of the two convs carry a bias."""

    rank: int
    pointwise_bias: bool
    depthwise_bias: bool = False


def spec_of(conv: nn.Module) -> ConvSpec:
    """The ConvSpec geometry of a torch conv module (RewriteError when it is not a conv)."""
    _, kind = _require_conv(conv, "module")
    padding = conv.padding if isinstance(conv.padding, str) else ""
    return ConvSpec(
        in_channels=conv.in_channels, out_channels=conv.out_channels, kernel=tuple(conv.kernel_size),
        stride=tuple(conv.stride), dilation=tuple(conv.dilation), groups=conv.groups,
        padding_text=padding, transposed=kind.transposed, has_bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def _require_conv(module: nn.Module, name: str) -> tuple[type, ConvKind]:
    found = conv_kind(module)
    if found is None:
        raise RewriteError(f"{name}: {type(module).__name__} is not a convolution this tool can separate")
    return found


def build_separable(conv: nn.Module, shape: SeparableShape) -> SeparableConv:
    """An (uninitialised) SeparableConv with ``conv``'s geometry, device and dtype at rank ``shape.rank``."""
    base, kind = _require_conv(conv, "module")
    cin, rank = conv.in_channels, shape.rank
    where = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    common = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=cin, bias=shape.depthwise_bias,
                  padding_mode=conv.padding_mode, **where)
    if kind.transposed:
        common["output_padding"] = conv.output_padding
    depthwise = base(cin, cin * rank, **common)
    pointwise = kind.pointwise(cin * rank, conv.out_channels, 1, groups=conv.groups,
                               bias=shape.pointwise_bias, **where)
    return SeparableConv(depthwise, pointwise)


def set_module(root: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Put ``module`` at qualified ``name`` under ``root``; returns the (possibly new) root."""
    if name == "":
        return module
    root.set_submodule(name, module)
    return root


def get_module(root: nn.Module, name: str, what: str = "layer") -> nn.Module:
    """The submodule at qualified ``name`` (RewriteError naming it when absent)."""
    try:
        return root.get_submodule(name)
    except AttributeError:
        raise RewriteError(f"{what} {name!r} is not a submodule of the model") from None


def _field(entry: Any, key: str, default: Any = None) -> Any:
    """``entry[key]`` for a mapping (manifest JSON) or ``entry.key`` for a record (PlannedLayer)."""
    if isinstance(entry, Mapping):
        return entry.get(key, default)
    return getattr(entry, key, default)


def apply_manifest(module: nn.Module, manifest_layers: Iterable[Any], depthwise_bias: bool = False) -> nn.Module:
    """Turn the ORIGINAL architecture ``module`` into the converted structure, in place; returns it.

    ``manifest_layers``: the manifest's per-layer entries (mappings or ``PlannedLayer`` records; keys in
    the module docstring), or the whole manifest (its ``layers`` and ``depthwise_bias`` are read). After
    this, ``module.load_state_dict(saved, strict=True)`` restores a converted model saved as a state_dict
    (``sepconv_cli.load_converted`` does all three steps).
    """
    if isinstance(manifest_layers, Mapping):  # the manifest itself, as read from its JSON file
        depthwise_bias = bool(manifest_layers.get("depthwise_bias", depthwise_bias))
        manifest_layers = manifest_layers.get("layers", ())
    for entry in manifest_layers:
        name, rank = _field(entry, "name"), _field(entry, "rank")
        if not isinstance(rank, int) or rank < 1:
            raise RewriteError(f"manifest layer {name!r}: rank must be a positive integer, got {rank!r}")
        conv = get_module(module, name, "manifest layer")
        bn_name = _field(entry, "bn_folded")
        shape = SeparableShape(
            rank=rank,
            pointwise_bias=bool(_field(entry, "pointwise_bias", conv.bias is not None or bool(bn_name))),
            depthwise_bias=bool(_field(entry, "depthwise_bias", depthwise_bias)),
        )
        module = set_module(module, name, build_separable(conv, shape))
        if bn_name:
            get_module(module, bn_name, "folded BatchNorm")
            module = set_module(module, bn_name, nn.Identity())
    return module


__all__ = ["CONV_KINDS", "ConvKind", "SeparableConv", "SeparableShape", "apply_manifest", "build_separable",
           "conv_kind", "get_module", "set_module", "spec_of"]
