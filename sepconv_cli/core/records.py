"""Plain-data records shared by every layer of the pipeline.

Records hold names, shapes and integers only: never a live ``nn.Module``, ``ModelProto`` or array.
Units: ``params``/``buffers`` are tensor elements, ``macs`` are multiply-accumulates (1 MAC = 2 FLOPs),
``*_bytes`` are bytes. Nothing here imports torch or onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TypeGuard

SCHEMA_VERSION = 1

Dim = int | str
"""One tensor dimension: an int, or a symbol (``"N"``, ``"batch"``) when it is dynamic, or ``"?"`` unknown."""

Shape = tuple[Dim, ...]


def is_static(shape: Shape | None) -> TypeGuard[tuple[int, ...]]:
    """True when every dim of ``shape`` is a known int."""
    return shape is not None and all(isinstance(d, int) for d in shape)


def format_shape(shape: Shape | None) -> str:
    """``(1, 3, 32, 32)`` -> ``"1x3x32x32"``; unknown shape -> ``"?"``; scalar -> ``"()"``."""
    if shape is None:
        return "?"
    if len(shape) == 0:
        return "()"
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class TensorInfo:
    """A named model input or output with its (possibly symbolic) shape and dtype name."""

    name: str
    shape: Shape | None
    dtype: str = "float32"


@dataclass(frozen=True)
class ConvSpec:
    """Geometry of a convolution (regular or transposed), enough for every cost formula.

    ``pads`` is ``begin..., end...`` per spatial dim (ONNX order), or empty when padding is given by
    ``auto_pad`` / a string (``"same"``) recorded in ``padding_mode_text``.
    ``weight_shape`` is the stored kernel shape: ``(Cout, Cin/g, *k)`` for Conv and
    ``(Cin, Cout/g, *k)`` for ConvTranspose.
    """

    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    pads: tuple[int, ...] = ()
    padding_text: str = ""
    transposed: bool = False
    has_bias: bool = False
    padding_mode: str = "zeros"

    @property
    def kernel_elems(self) -> int:
        """K = prod(kernel)."""
        k = 1
        for d in self.kernel:
            k *= d
        return k

    @property
    def is_depthwise(self) -> bool:
        """Already depthwise: one input channel per group."""
        return self.groups == self.in_channels and self.groups > 1


@dataclass(frozen=True)
class Operand:
    """One input of a row and what it counts as: ``kind`` is ``"param"``, ``"buffer"``, ``"config"``
    (shapes, indices, scales: never a param), ``"literal"`` (a scalar constant of the code), or
    ``"activation"`` (computed at run time). ``role`` names the input's role for the op (``"conv weight"``,
    ``"Resize scales"``); ``elements`` are the param or buffer elements credited to this row (0 when an
    earlier row reads the same tensor first)."""

    name: str
    shape: Shape | None
    kind: str
    role: str = ""
    elements: int = 0


@dataclass(frozen=True)
class SymbolicTerm:
    """One term ``coefficient/denominator · prod(symbol^power)`` of a symbolic count; a constant term
    has no powers."""

    coefficient: int
    powers: tuple[tuple[str, int], ...] = ()
    denominator: int = 1


@dataclass(frozen=True)
class SymbolicMacs:
    """MACs as an exact polynomial in the symbolic input dims (``"81,453·H·W"``), ``valid_when`` saying on
    which sizes it is exact (``"H and W multiples of 32, at least 32"``), and the sizes it was checked at
    against a count of its own."""

    expression: str
    valid_when: str
    terms: tuple[SymbolicTerm, ...] = ()
    symbols: tuple[str, ...] = ()
    checked_at: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Layer:
    """One row of the report: a graph node (ONNX) or a leaf module / functional call (PyTorch).

    ``params`` are the trainable weight elements this row is the first user of (shared tensors are
    attributed once, so rows sum to the total). ``macs`` is ``None`` when the row could not be counted;
    ``note`` then says why (``"no formula"``, ``"shape unknown: ..."``).
    ``path`` is the name scope used by ``--depth`` (``("layer1", "0", "conv1")``).
    ``weight_constant`` tells whether the conv's weight is a constant of the model (convertible).
    ``bn_follows`` names an eval-mode BatchNorm that directly and solely consumes this conv's output.
    ``formula`` spells the MACs out with its operands (``"N·Cout·Hout·Wout·(Cin/g)·kh·kw =
    1·64·56·56·(64/1)·3·3"``); ``operands`` say which inputs count as params and why; ``macs_symbolic`` is
    the row's MACs as a polynomial in the model's symbolic dims when they stay symbolic (``macs`` is None).
    """

    name: str
    op: str
    input_shapes: tuple[Shape | None, ...] = ()
    output_shapes: tuple[Shape | None, ...] = ()
    params: int = 0
    buffers: int = 0
    macs: int | None = 0
    note: str = ""
    path: tuple[str, ...] = ()
    conv: ConvSpec | None = None
    weight_constant: bool = True
    bn_follows: str | None = None
    formula: str = ""
    operands: tuple[Operand, ...] = ()
    macs_symbolic: str = ""

    @property
    def flops(self) -> int | None:
        """FLOPs = 2 x MACs, derived for display only."""
        return None if self.macs is None else 2 * self.macs


@dataclass(frozen=True)
class Uncounted:
    """An op type that has no MAC formula, how many nodes of it the model has, and their names."""

    op: str
    count: int
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A regular convolution whose depthwise-separable form would save something.

    ``params_separable``/``macs_separable`` are at T=1 (Keras ``SeparableConv2D`` convention: one bias,
    on the pointwise conv). ``rank`` is the smallest T keeping the requested energy (None without
    weights, or when that T reaches break-even); ``params_at_rank``/``macs_at_rank`` are the costs there.
    ``energy_t1`` is the share of squared Frobenius norm kept at T=1 (None without weights).
    ``break_even`` is T* = K*Cout/(K*g+Cout); savings exist only for T < T*. When the following
    BatchNorm is folded (``bn_folded``), ``params`` include the BN's, which leave the model with it, and
    the separable figures include the pointwise bias the folding leaves. ``energies`` is the cumulative
    energy curve: ``energies[T-1]`` is the energy kept at rank T, for T = 1..``max_rank`` (empty without
    weights).
    """

    name: str
    op: str
    params: int
    macs: int | None
    params_separable: int
    macs_separable: int | None
    break_even: float
    max_rank: int
    energy_t1: float | None = None
    rank: int | None = None
    params_at_rank: int | None = None
    macs_at_rank: int | None = None
    energy_at_rank: float | None = None
    convertible: bool = True
    reason: str = ""
    risk: str | None = None
    bn_folded: str | None = None
    energies: tuple[float, ...] = ()

    @property
    def macs_saved(self) -> int:
        """MACs saved at T=1 (0 when unknown)."""
        if self.macs is None or self.macs_separable is None:
            return 0
        return self.macs - self.macs_separable

    @property
    def params_saved(self) -> int:
        """Params saved at T=1."""
        return self.params - self.params_separable


@dataclass(frozen=True)
class Excluded:
    """A convolution that is not a candidate (or not convertible), with the reason in words."""

    name: str
    reason: str


@dataclass(frozen=True)
class ModelInfo:
    """Where the model came from: path (or entry point), format name, file size in bytes (0 if none:
    an entry point or an in-memory model has no file). ``device``: where a PyTorch module was built
    to be counted (``"cpu"``, ``"meta"``; empty for models that are not built).
    ``file_size`` includes the external data files the model refers to; ``external_data_size`` is that
    part. ``assumed_dims`` are symbolic dims taken at a default size (a dynamic batch ``N`` -> 1, per
    sample). ``shape_source`` says how shapes static inference could not resolve were found (``""``: no
    need; else e.g. ``"one onnxruntime run on zeros"``)."""

    path: str
    format: str
    file_size: int = 0
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    device: str = ""
    assumed_dims: tuple[tuple[str, int], ...] = ()
    external_data_size: int = 0
    shape_source: str = ""


def rows_not_counted(rows: int) -> str:
    """``"3 rows not counted"`` (``"1 row ..."``); empty for 0."""
    return f"{rows} row{'s' if rows != 1 else ''} not counted" if rows else ""


@dataclass(frozen=True)
class Report:
    """Everything `analyze` knows about a model, ready for planners and renderers.

    ``params`` is the model total of unique trainable weight elements (it can exceed the sum of layer
    rows when a weight feeds no counted row). ``buffers`` are non-trainable state elements (BN running
    stats). ``weight_bytes`` maps a dtype name to the bytes of weights stored in that dtype.
    ``extra`` carries loader-specific figures as (key, int) pairs, e.g. ``("params_bn_folded", n)``.
    ``warnings`` need the user's attention; ``notes`` only explain a figure or a choice (shown on request,
    e.g. ``--verbose``).
    """

    model: ModelInfo
    layers: tuple[Layer, ...]
    params: int
    buffers: int = 0
    weight_bytes: tuple[tuple[str, int], ...] = ()
    uncounted: tuple[Uncounted, ...] = ()
    warnings: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    excluded: tuple[Excluded, ...] = ()
    extra: tuple[tuple[str, int], ...] = ()
    energy_target: float | None = None
    notes: tuple[str, ...] = ()
    macs_symbolic: SymbolicMacs | None = None

    @cached_property
    def macs(self) -> int:
        """Sum of counted layer MACs (rows with ``macs=None`` are listed in ``unknown_rows``); computed once
        (a report is frozen), so that asking per row stays linear in the rows."""
        return sum(layer.macs for layer in self.layers if layer.macs is not None)

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs."""
        return 2 * self.macs

    @cached_property
    def unknown_rows(self) -> tuple[Layer, ...]:
        """Rows whose op has a formula but whose MACs could not be counted (unknown shapes)."""
        return tuple(layer for layer in self.layers if layer.macs is None and layer.note != "no formula")

    @property
    def not_counted(self) -> str:
        """``"3 rows not counted"`` when some rows' MACs are unknown, else empty."""
        return rows_not_counted(len(self.unknown_rows))

    @property
    def total_weight_bytes(self) -> int:
        """Bytes of all stored weights, every dtype together."""
        return sum(n for _, n in self.weight_bytes)

    def layer(self, name: str) -> Layer:
        """The row called ``name`` (KeyError if absent; the first one when names repeat)."""
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Layer]:
        index: dict[str, Layer] = {}
        for layer in self.layers:
            index.setdefault(layer.name, layer)
        return index

    def with_candidates(
        self, candidates: tuple[Candidate, ...], excluded: tuple[Excluded, ...], energy_target: float | None
    ) -> Report:
        """A copy of this report carrying the planner's candidates and exclusions."""
        return replace(self, candidates=candidates, excluded=excluded, energy_target=energy_target)
