"""Plain records for measured per-layer latency: what a layer looks like to the runtime, and its timings.

``LayerProbe`` is the signature of one conv as the runtime sees it (geometry, input shape at batch 1,
dtype); two layers with equal keys cost the same, so timings are cached and shared by ``key()``.
``LayerTiming`` holds the median seconds of the original conv and of its separable replacement at each
rank T in each equivalent graph ``Form`` (DESIGN §4), keyed ``"T:form"``. Units: seconds per run at
batch 1. Pure data: no I/O, no runtime imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from sepconv_cli.core.records import ConvSpec, Layer, is_static

# torch spells auto padding in lower case; the probe keeps ONNX's spelling
_AUTO_PAD = {"same": "SAME_UPPER", "valid": "VALID", "SAME_UPPER": "SAME_UPPER", "SAME_LOWER": "SAME_LOWER",
             "VALID": "VALID", "": ""}


class Form(str, Enum):
    """Equivalent graphs of a rank-T separable layer (all compute the same function).

    MULTIPLIER: one depthwise conv with depth multiplier T (channel ``i*T+t``), as the rewriter emits.
    TILED: the input channels concatenated T times, then a multiplier-1 depthwise conv over ``Cin*T``
    channels (channel ``t*Cin+i``). PARALLEL: T multiplier-1 depthwise convs on the same input (kernel
    slice t each), concatenated t-major. TILED and PARALLEL need an ungrouped pointwise conv.
    """

    MULTIPLIER = "multiplier"
    TILED = "tiled"
    PARALLEL = "parallel"


def valid_forms(rank: int, groups: int) -> tuple[Form, ...]:
    """The forms that differ and are equivalent at ``rank`` for a conv with ``groups``: at T = 1 every form
    is the multiplier-1 conv, and a grouped pointwise conv keeps only the multiplier form."""
    if rank <= 1 or groups != 1:
        return (Form.MULTIPLIER,)
    return tuple(Form)


def variant_key(rank: int, form: Form | str) -> str:
    """``"T:form"``: the key of one separable variant in ``LayerTiming.variants_s``."""
    return f"{rank}:{Form(form).value}"


def _dims(values: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in values) or "-"


@dataclass(frozen=True)
class LayerProbe:
    """One conv as the runtime sees it. ``spatial``: input spatial dims (batch 1, ``in_channels`` channels);
    ``pads``: ONNX begin..., end... (empty with ``auto_pad``); ``auto_pad``: ONNX spelling or "";
    ``has_bias``: the conv (and so the pointwise conv) has a bias; ``depthwise_bias``: the depthwise conv gets one.
    ``output_padding`` of a ConvTranspose is not part of the signature (it changes the cost by a border)."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    spatial: tuple[int, ...]
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    pads: tuple[int, ...] = ()
    auto_pad: str = ""
    transposed: bool = False
    has_bias: bool = False
    depthwise_bias: bool = False
    dtype: str = "float32"

    def __post_init__(self) -> None:
        rank = len(self.kernel)
        if len(self.spatial) != rank or min(self.spatial + self.kernel, default=0) < 1:
            raise ValueError(f"probe: spatial {self.spatial} does not fit kernel {self.kernel}")
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"probe: groups={self.groups} does not divide {self.in_channels}->{self.out_channels}")
        object.__setattr__(self, "stride", self.stride or (1,) * rank)
        object.__setattr__(self, "dilation", self.dilation or (1,) * rank)
        object.__setattr__(self, "auto_pad", _AUTO_PAD.get(self.auto_pad, self.auto_pad))
        if not self.pads and not self.auto_pad:
            object.__setattr__(self, "pads", (0,) * (2 * rank))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(1, Cin, *spatial)``."""
        return (1, self.in_channels, *self.spatial)

    @property
    def max_rank(self) -> int:
        """min(Cout/g, K): the rank at which the separable form is exact (the largest that exists)."""
        return min(self.out_channels // self.groups, math.prod(self.kernel))

    def key(self) -> str:
        """A stable text key: equal keys, equal runtime cost (cache key; never reorder its parts)."""
        parts = [
            f"{'convT' if self.transposed else 'conv'}{len(self.kernel)}d",
            f"{self.in_channels}->{self.out_channels}", f"k{_dims(self.kernel)}", f"s{_dims(self.stride)}",
            f"d{_dims(self.dilation)}", f"g{self.groups}", f"p{self.auto_pad or ','.join(map(str, self.pads))}",
            f"in{_dims(self.input_shape)}", self.dtype, f"bias{int(self.has_bias)}{int(self.depthwise_bias)}",
        ]
        return "|".join(parts)

    @classmethod
    def from_spec(cls, spec: ConvSpec, spatial: tuple[int, ...], dtype: str = "float32",
                  depthwise_bias: bool = False) -> LayerProbe:
        """The probe of a conv with geometry ``spec`` reading inputs of spatial size ``spatial``."""
        return cls(in_channels=spec.in_channels, out_channels=spec.out_channels, kernel=tuple(spec.kernel),
                   spatial=tuple(spatial), stride=tuple(spec.stride), dilation=tuple(spec.dilation),
                   groups=spec.groups, pads=tuple(spec.pads), auto_pad=spec.padding_text,
                   transposed=spec.transposed, has_bias=spec.has_bias, depthwise_bias=depthwise_bias, dtype=dtype)

    @classmethod
    def from_layer(cls, layer: Layer, dtype: str = "float32", depthwise_bias: bool = False) -> LayerProbe | None:
        """The probe of a report row, or None when it is not a conv or its input's spatial dims are not
        known numbers (the batch dim may be symbolic: probes run at batch 1). A BatchNorm following the conv
        counts as a bias: folded by convert, and fused into the conv by onnxruntime when left in place."""
        if layer.conv is None or not layer.input_shapes:
            return None
        shape = layer.input_shapes[0]
        if shape is None or len(shape) != len(layer.conv.kernel) + 2 or not is_static(tuple(shape[1:])):
            return None
        probe = cls.from_spec(layer.conv, tuple(int(d) for d in shape[2:]), dtype, depthwise_bias)
        return replace(probe, has_bias=True) if layer.bn_follows and not probe.has_bias else probe


@dataclass(frozen=True)
class LayerTiming:
    """Median seconds per run (batch 1) of the original conv and of each separable variant
    (``variants_s``: ``"T:form"`` -> seconds), all measured side by side in one run."""

    original_s: float
    variants_s: Mapping[str, float] = field(default_factory=dict, hash=False)

    def seconds(self, rank: int, form: Form | str) -> float | None:
        """Seconds of one variant, None when it was not measured."""
        return self.variants_s.get(variant_key(rank, form))

    def ranks(self) -> tuple[int, ...]:
        """The ranks with at least one measured variant, ascending."""
        return tuple(sorted({int(key.split(":", 1)[0]) for key in self.variants_s}))

    def best(self, rank: int) -> tuple[str, float]:
        """``(form name, seconds)`` of the fastest measured form at ``rank`` (KeyError if none was)."""
        found = [(seconds, key.split(":", 1)[1]) for key, seconds in self.variants_s.items()
                 if key.split(":", 1)[0] == str(rank)]
        if not found:
            raise KeyError(f"no variant measured at rank {rank}")
        seconds, form = min(found)
        return form, seconds

    def speedup(self, rank: int) -> float:
        """Original seconds over the fastest form's at ``rank`` (> 1: the separable layer is faster)."""
        return self.original_s / self.best(rank)[1]

    def record(self) -> dict:
        """Plain JSON values (seconds)."""
        return {"original_s": self.original_s, "variants_s": dict(sorted(self.variants_s.items()))}
