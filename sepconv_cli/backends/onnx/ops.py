"""ONNX op handlers: ``op_type`` -> function giving a node's MACs (and a ``ConvSpec`` for convolutions).

Handlers read shapes only (``NodeView``) and call the formulas in ``costs.py``; they never touch weight
bytes. Einsum counts one MAC per term of each pairwise product (see ``einsum``). Ops counted as 0 MACs
by convention (activations, elementwise, pooling, data movement, norms: DESIGN §3 counts only
multiply-accumulates of conv/linear/matmul) are explicit entries. An op missing from
``OP_HANDLERS`` has no formula: the loader reports it with ``macs=None`` and lists it as uncounted.
A handler raises ``UnknownShape`` when a shape it needs is not static (conv handlers instead return
their geometry with ``macs=None`` and a note); the loader turns that into ``macs=None`` with a note,
never a silent 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from math import ceil, prod
from typing import Any

from sepconv_cli.core import costs
from sepconv_cli.core.records import ConvSpec, Shape, format_shape, is_static
from sepconv_cli.errors import ShapeError


class UnknownShape(Exception):
    """A shape the formula needs is not known (or not static); ``str()`` says which."""


@dataclass(frozen=True)
class NodeView:
    """What a handler may read: op, name, attributes, and positional input/output shapes.

    An absent optional input (empty name) has shape None and ``present[i]`` False.
    """

    name: str
    op: str
    attrs: dict[str, Any] = field(default_factory=dict)
    input_shapes: tuple[Shape | None, ...] = ()
    output_shapes: tuple[Shape | None, ...] = ()
    present: tuple[bool, ...] = ()

    def has_input(self, index: int) -> bool:
        """True when input ``index`` is given (not omitted and not an empty name)."""
        return index < len(self.present) and self.present[index]

    def static_input(self, index: int, what: str) -> tuple[int, ...]:
        """Input ``index``'s shape as ints, or ``UnknownShape`` naming ``what``."""
        shape = self.input_shapes[index] if index < len(self.input_shapes) else None
        if not is_static(shape):
            raise UnknownShape(f"{what} shape {format_shape(shape)}")
        return tuple(shape)  # type: ignore[arg-type]

    def static_output(self, index: int) -> tuple[int, ...] | None:
        """Output ``index``'s shape as ints, or None when not static."""
        shape = self.output_shapes[index] if index < len(self.output_shapes) else None
        return tuple(shape) if is_static(shape) else None  # type: ignore[arg-type]


@dataclass(frozen=True)
class OpCost:
    """A handler's answer: MACs (None with ``note`` when a shape is unknown), a conv's geometry, and the
    formula with its operands (``"M·K·N = 1·512·10"``; empty when the MACs are unknown)."""

    macs: int | None
    conv: ConvSpec | None = None
    note: str = ""
    formula: str = ""


Handler = Callable[[NodeView], OpCost]


def _ints(view: NodeView, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = view.attrs.get(key)
    return tuple(int(v) for v in value) if value else default


def _auto_pad(view: NodeView) -> str:
    value = view.attrs.get("auto_pad", "NOTSET")
    return value.decode() if isinstance(value, bytes) else str(value)


def _conv_geometry(view: NodeView, weight: tuple[int, ...], transposed: bool) -> ConvSpec:
    """ConvSpec from the weight shape and attributes (ONNX defaults filled in)."""
    spatial = len(weight) - 2
    groups = int(view.attrs.get("group", 1))
    kernel = _ints(view, "kernel_shape", weight[2:])
    auto_pad = _auto_pad(view)
    pads = _ints(view, "pads", (0,) * (2 * spatial)) if auto_pad == "NOTSET" else ()
    if transposed:
        in_ch, out_ch = weight[0], weight[1] * groups
    else:
        in_ch, out_ch = weight[1] * groups, weight[0]
    return ConvSpec(
        in_channels=in_ch, out_channels=out_ch, kernel=kernel,
        stride=_ints(view, "strides", (1,) * spatial), dilation=_ints(view, "dilations", (1,) * spatial),
        groups=groups, pads=pads, padding_text="" if auto_pad == "NOTSET" else auto_pad,
        transposed=transposed, has_bias=view.has_input(2),
    )


def conv_output_spatial(spec: ConvSpec, in_spatial: tuple[int, ...]) -> tuple[int, ...]:
    """Output spatial size of a regular conv, including ``auto_pad`` SAME_* (ceil(in/stride)) and VALID."""
    if spec.padding_text in ("SAME_UPPER", "SAME_LOWER"):
        return tuple(ceil(size / s) for size, s in zip(in_spatial, spec.stride))
    rank = len(in_spatial)
    pads = spec.pads or (0,) * (2 * rank)
    return tuple(
        costs.conv_output_size(size, k, s, d, pads[i] + pads[i + rank])
        for i, (size, k, s, d) in enumerate(zip(in_spatial, spec.kernel, spec.stride, spec.dilation))
    )


def _check_channels(view: NodeView, spec: ConvSpec, channels: object) -> None:
    """Impossible geometry (input channels that do not match the kernel) is a ShapeError."""
    expected = spec.in_channels
    if isinstance(channels, int) and channels != expected:
        raise ShapeError(f"node {view.name!r} ({view.op}): input has {channels} channels, "
                         f"weight expects {expected}")


def _conv_cost(view: NodeView, transposed: bool) -> OpCost:
    """Geometry from the weight shape (known even when activations are dynamic), then MACs if possible."""
    weight = view.static_input(1, "weight")
    spec = _conv_geometry(view, weight, transposed)
    x = view.input_shapes[0]
    if x is not None and len(x) == len(weight):
        _check_channels(view, spec, x[1])
    try:
        macs, formula = _transpose_macs(view, spec) if transposed else _conv_macs(view, spec)
    except UnknownShape as exc:
        return OpCost(None, spec, f"shape unknown: {exc}")
    return OpCost(macs, spec, formula=formula)


def _conv_macs(view: NodeView, spec: ConvSpec) -> tuple[int, str]:
    """``N * Cout * prod(out_spatial) * (Cin/g) * prod(kernel)``; output shape from inference, else
    computed from the input (pads, strides, dilations, auto_pad)."""
    out = view.static_output(0)
    if out is None:
        x = view.static_input(0, "input")
        batch, out_spatial = x[0], conv_output_spatial(spec, x[2:])
    else:
        batch, out_spatial = out[0], out[2:]
    if any(d <= 0 for d in out_spatial):
        raise ShapeError(f"node {view.name!r} (Conv): output spatial size {out_spatial} is not positive")
    macs = costs.conv_macs(batch, spec.out_channels, out_spatial, spec.in_channels // spec.groups, spec.kernel)
    text = costs.conv_macs_text(batch, spec.out_channels, tuple(out_spatial), spec.in_channels, spec.groups,
                                spec.kernel)
    return macs, text


def _transpose_macs(view: NodeView, spec: ConvSpec) -> tuple[int, str]:
    """``N * Cin * prod(in_spatial) * (Cout/g) * prod(kernel)``."""
    x = view.static_input(0, "input")
    macs = costs.conv_transpose_macs(x[0], spec.in_channels, x[2:], spec.out_channels // spec.groups,
                                     spec.kernel)
    text = costs.conv_transpose_macs_text(x[0], spec.in_channels, x[2:], spec.out_channels, spec.groups,
                                          spec.kernel)
    return macs, text


def conv(view: NodeView) -> OpCost:
    """Conv (1-D/2-D/3-D, groups, dilation, strides, pads or auto_pad)."""
    return _conv_cost(view, transposed=False)


def conv_transpose(view: NodeView) -> OpCost:
    """ConvTranspose (MACs over the input grid)."""
    return _conv_cost(view, transposed=True)


def gemm(view: NodeView) -> OpCost:
    """Gemm ``Y = alpha * A' @ B' + beta * C`` (A' = A or A^T by ``transA``): ``M * K * N``."""
    a = view.static_input(0, "A")
    b = view.static_input(1, "B")
    m, k = (a[1], a[0]) if view.attrs.get("transA", 0) else (a[0], a[1])
    k2, n = (b[1], b[0]) if view.attrs.get("transB", 0) else (b[0], b[1])
    if k != k2:
        raise ShapeError(f"node {view.name!r} (Gemm): inner dims differ ({k} vs {k2})")
    return OpCost(costs.gemm_macs(m, k, n), formula=costs.gemm_macs_text(m, k, n))


def matmul(view: NodeView) -> OpCost:
    """MatMul with numpy broadcasting (batched; attention's QK^T and AV are two of these)."""
    a = view.static_input(0, "A")
    b = view.static_input(1, "B")
    try:
        return OpCost(costs.matmul_macs(a, b), formula=costs.matmul_macs_text(a, b))
    except ValueError as exc:
        raise ShapeError(f"node {view.name!r} (MatMul): {exc}") from None


def _einsum_terms(view: NodeView) -> tuple[list[tuple[str, ...]], tuple[str, ...], dict[str, int]]:
    """Labels of each operand (ellipsis dims become labels ``.0``, ``.1``... counted from the right, so
    they broadcast like numpy), the output labels (implicit output: ellipsis then letters used once, in
    alphabetical order) and every label's size (broadcast: the size that is not 1)."""
    equation = view.attrs.get("equation", b"")
    equation = (equation.decode() if isinstance(equation, bytes) else str(equation)).replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(view.input_shapes):
        raise ShapeError(f"node {view.name!r} (Einsum): equation {equation!r} names {len(specs)} operands, "
                         f"node has {len(view.input_shapes)}")
    operands: list[tuple[str, ...]] = []
    sizes: dict[str, int] = {}
    for index, spec in enumerate(specs):
        shape = view.static_input(index, f"operand {index}")
        labels = _einsum_labels(spec, len(shape))
        if len(labels) != len(shape):
            raise ShapeError(f"node {view.name!r} (Einsum): {spec!r} does not fit rank {len(shape)}")
        for label, dim in zip(labels, shape):
            if sizes.get(label, 1) not in (1, dim) and dim != 1:
                raise ShapeError(f"node {view.name!r} (Einsum): index {label!r} is both {sizes[label]} and {dim}")
            sizes[label] = max(sizes.get(label, 1), dim)
        operands.append(labels)
    return operands, _einsum_output(operands, rhs if arrow else None), sizes


def _einsum_output(operands: list[tuple[str, ...]], rhs: str | None) -> tuple[str, ...]:
    """Output labels: the explicit right-hand side, else ellipsis dims then the letters used once, sorted."""
    dots = sorted({x for ops in operands for x in ops if x.startswith(".")}, key=lambda x: -int(x[1:]))
    if rhs is not None:
        return _einsum_labels(rhs, len(rhs.replace("...", "")) + len(dots))
    counts = Counter(label for ops in operands for label in ops if not label.startswith("."))
    return tuple(dots) + tuple(sorted(label for label, n in counts.items() if n == 1))


def _einsum_labels(spec: str, rank: int) -> tuple[str, ...]:
    """``"b...ij"`` at rank 5 -> ``("b", ".1", ".0", "i", "j")``."""
    head, dots, tail = spec.partition("...")
    if not dots:
        return tuple(spec)
    width = rank - len(head) - len(tail)
    return tuple(head) + tuple(f".{i}" for i in reversed(range(max(width, 0)))) + tuple(tail)


def einsum(view: NodeView) -> OpCost:
    """Einsum, one MAC per term of each pairwise product (the convention of the PyTorch path, and of
    fvcore and ``torch.utils.flop_counter`` whenever an index is summed): two operands cost the product
    of the sizes of every distinct index, contracted and free (``"bij,bjk->bik"`` = ``b*i*j*k``, as
    MatMul); more operands are contracted left to right, each step costing the product over the pair's
    indices and keeping only the indices still needed. One operand (transpose, trace, diagonal, sum)
    multiplies nothing: 0 MACs, as for Transpose and ReduceSum. Ellipsis dims broadcast like numpy."""
    operands, output, sizes = _einsum_terms(view)
    macs, current, names, values = 0, operands[0], [], []
    for step, labels in enumerate(operands[1:], start=2):
        pair = tuple(dict.fromkeys(current + labels))
        macs += prod(sizes[label] for label in pair)
        names.append("·".join(x if not x.startswith(".") else f"…{x[1:]}" for x in pair))
        values.append("·".join(str(sizes[x]) for x in pair))
        later = {x for ops in operands[step:] for x in ops} | set(output)
        current = tuple(label for label in pair if label in later)
    formula = f"{' + '.join(names)} = {' + '.join(values)}" if names else "0 (one operand: nothing multiplied)"
    return OpCost(macs, formula=formula)


def zero(view: NodeView) -> OpCost:
    """Counted as 0 MACs by convention (no multiply-accumulate of weights and activations)."""
    return OpCost(0, formula=f"0 (by convention, {view.op} has no multiply-accumulate of weights)")


ZERO_MAC_OPS = (
    # activations
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Gelu", "Softplus", "Softsign", "Mish", "Clip", "ThresholdedRelu", "Erf",
    # elementwise maths and logic
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Floor", "Ceil",
    "Round", "Sign", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Greater", "GreaterOrEqual", "Less",
    "LessOrEqual", "Not", "And", "Or", "Xor", "Mod", "IsNaN", "IsInf", "Sin", "Cos",
    # pooling and normalisation
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "BatchNormalization",
    "InstanceNormalization", "LayerNormalization", "GroupNormalization", "LRN", "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ArgMax", "ArgMin",
    # data movement and shape plumbing
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather",
    "GatherElements", "GatherND", "Shape", "Size", "Cast", "CastLike", "Identity", "Dropout", "Pad",
    "Resize", "Upsample", "Expand", "Tile", "Range", "ConstantOfShape", "DepthToSpace", "SpaceToDepth",
    "Trilu", "ScatterND", "ScatterElements", "NonZero", "TopK", "OneHot",
    "QuantizeLinear", "DequantizeLinear", "Constant",
)

OP_HANDLERS: dict[str, Handler] = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "Gemm": gemm,
    "MatMul": matmul,
    "Einsum": einsum,
    **{op: zero for op in ZERO_MAC_OPS},
}
