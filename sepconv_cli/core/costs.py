"""Pure shape maths: params and MACs of the ops we count, and of separable replacements at rank T.

Conventions (DESIGN §3): one multiply-accumulate = 1 MAC; FLOPs = 2 x MACs are derived elsewhere.
Bias additions and BatchNorm are not MACs. Params are tensor elements. Every function takes ints or
tuples of ints and returns ints (or a float for the break-even rank). No torch, no onnx.
"""

from __future__ import annotations

from math import prod

from sepconv_cli.core.records import ConvSpec


def conv_macs(batch: int, out_channels: int, out_spatial: tuple[int, ...], in_per_group: int,
              kernel: tuple[int, ...]) -> int:
    """MACs of a convolution: ``N * Cout * prod(out_spatial) * (Cin/groups) * prod(kernel)``."""
    return batch * out_channels * prod(out_spatial) * in_per_group * prod(kernel)


def conv_transpose_macs(batch: int, in_channels: int, in_spatial: tuple[int, ...], out_per_group: int,
                        kernel: tuple[int, ...]) -> int:
    """MACs of a transposed convolution: ``N * Cin * prod(in_spatial) * (Cout/groups) * prod(kernel)``."""
    return batch * in_channels * prod(in_spatial) * out_per_group * prod(kernel)


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_total: int) -> int:
    """Output length of one spatial dim of a regular conv (floor mode)."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def conv_params(spec: ConvSpec) -> int:
    """Weight elements (plus bias if any) of a regular or transposed convolution."""
    weight = spec.out_channels * (spec.in_channels // spec.groups) * spec.kernel_elems
    return weight + (spec.out_channels if spec.has_bias else 0)


def spec_macs(spec: ConvSpec, batch: int, in_spatial: tuple[int, ...], out_spatial: tuple[int, ...]) -> int:
    """MACs of ``spec`` applied to an input of ``batch`` x C x ``in_spatial`` giving ``out_spatial``."""
    if spec.transposed:
        return conv_transpose_macs(batch, spec.in_channels, in_spatial, spec.out_channels // spec.groups,
                                   spec.kernel)
    return conv_macs(batch, spec.out_channels, out_spatial, spec.in_channels // spec.groups, spec.kernel)


def gemm_macs(m: int, k: int, n: int) -> int:
    """MACs of an (m x k) @ (k x n) product."""
    return m * k * n


def matmul_macs(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> int:
    """MACs of ``numpy.matmul``-style batched product with broadcasting (1-D operands promoted)."""
    a = tuple(a_shape)
    b = tuple(b_shape)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("matmul operands must have at least one dimension")
    if len(a) == 1:
        a = (1,) + a
    if len(b) == 1:
        b = b + (1,)
    m, k = a[-2], a[-1]
    k2, n = b[-2], b[-1]
    if k != k2:
        raise ValueError(f"matmul inner dims differ: {k} vs {k2}")
    batch = _broadcast(a[:-2], b[:-2])
    return prod(batch) * m * k * n


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Numpy broadcast of two batch shapes."""
    width = max(len(a), len(b))
    a = (1,) * (width - len(a)) + a
    b = (1,) * (width - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ValueError(f"cannot broadcast batch dims {a} and {b}")
        out.append(max(x, y))
    return tuple(out)


def max_rank(spec: ConvSpec) -> int:
    """Full rank of the per-channel slices: ``min(Cout/g, K)`` — the rank at which the SVD form is exact."""
    return min(spec.out_channels // spec.groups, spec.kernel_elems)


def break_even_rank(spec: ConvSpec) -> float:
    """T* = K*Cout / (K*g + Cout): the separable form is cheaper exactly when T < T*."""
    k = spec.kernel_elems
    return k * spec.out_channels / (k * spec.groups + spec.out_channels)


def separable_params(spec: ConvSpec, rank: int, depthwise_bias: bool = False) -> int:
    """Params of depthwise (Cin -> Cin*T, groups=Cin, kernel k) + pointwise (1x1, Cin*T -> Cout, groups=g).

    The original bias (if any) goes on the pointwise conv (Keras ``SeparableConv2D``); ``depthwise_bias``
    adds one bias per depthwise output channel too.
    """
    cin, cout, g = spec.in_channels, spec.out_channels, spec.groups
    depthwise = cin * rank * spec.kernel_elems + (cin * rank if depthwise_bias else 0)
    pointwise = cout * (cin * rank // g) + (cout if spec.has_bias else 0)
    return depthwise + pointwise


def separable_macs(spec: ConvSpec, rank: int, batch: int, in_spatial: tuple[int, ...],
                   out_spatial: tuple[int, ...]) -> int:
    """MACs of the separable form at rank T (depthwise keeps stride/padding/dilation; pointwise is 1x1).

    For a transposed conv the depthwise part is a transposed depthwise conv (MACs over the input grid)
    and the pointwise conv runs on the output grid.
    """
    cin, cout, g = spec.in_channels, spec.out_channels, spec.groups
    if spec.transposed:
        depthwise = conv_transpose_macs(batch, cin, in_spatial, rank, spec.kernel)
    else:
        depthwise = conv_macs(batch, cin * rank, out_spatial, 1, spec.kernel)
    pointwise = conv_macs(batch, cout, out_spatial, cin * rank // g, (1,) * len(spec.kernel))
    return depthwise + pointwise


SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
"""Names of the spatial dims in formula text, by their count (``d1, d2...`` beyond three)."""

KERNEL_NAMES = {1: ("k",), 2: ("kh", "kw"), 3: ("kd", "kh", "kw")}


def _spatial(rank: int, suffix: str) -> tuple[str, ...]:
    return tuple(n + suffix for n in SPATIAL_NAMES.get(rank, tuple(f"d{i + 1}" for i in range(rank))))


def _kernel(rank: int) -> tuple[str, ...]:
    return KERNEL_NAMES.get(rank, tuple(f"k{i + 1}" for i in range(rank)))


def _dot(parts) -> str:
    return "·".join(str(p) for p in parts)


def conv_macs_text(batch: int, out_channels: int, out_spatial: tuple[int, ...], in_channels: int, groups: int,
                   kernel: tuple[int, ...]) -> str:
    """``"N·Cout·Hout·Wout·(Cin/g)·kh·kw = 1·64·56·56·(64/1)·3·3"``: the conv formula with its operands."""
    rank = len(kernel)
    names = _dot(("N", "Cout", *_spatial(rank, "out"), "(Cin/g)", *_kernel(rank)))
    values = _dot((batch, out_channels, *out_spatial, f"({in_channels}/{groups})", *kernel))
    return f"{names} = {values}"


def conv_transpose_macs_text(batch: int, in_channels: int, in_spatial: tuple[int, ...], out_channels: int,
                             groups: int, kernel: tuple[int, ...]) -> str:
    """``"N·Cin·Hin·Win·(Cout/g)·kh·kw = ..."``: the transposed-conv formula (over the input grid)."""
    rank = len(kernel)
    names = _dot(("N", "Cin", *_spatial(rank, "in"), "(Cout/g)", *_kernel(rank)))
    values = _dot((batch, in_channels, *in_spatial, f"({out_channels}/{groups})", *kernel))
    return f"{names} = {values}"


def matmul_macs_text(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> str:
    """``"batch·M·K·N = 8·10·16·10"`` (``"M·K·N = ..."`` without batch dims) for a broadcast matmul."""
    a = (1,) + tuple(a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b = tuple(b_shape) + (1,) if len(b_shape) == 1 else tuple(b_shape)
    batch = _broadcast(a[:-2], b[:-2])
    if batch:
        return f"batch·M·K·N = {_dot(batch)}·{a[-2]}·{a[-1]}·{b[-1]}"
    return f"M·K·N = {a[-2]}·{a[-1]}·{b[-1]}"


def gemm_macs_text(m: int, k: int, n: int) -> str:
    """``"M·K·N = 1·512·10"``."""
    return f"M·K·N = {m}·{k}·{n}"
