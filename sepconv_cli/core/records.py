"""Plain-data records shared by every layer of the pipeline.

Records hold names, shapes and integers only: never a live ``nn.Module``, ``ModelProto`` or array.
Units: ``params``/``buffers`` are tensor elements, ``macs`` are multiply-accumulates (1 MAC = 2 FLOPs),
``*_bytes`` are bytes. Nothing here imports torch or onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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

    @property
    def macs(self) -> int:
        """Sum of counted layer MACs (rows with ``macs=None`` are listed in ``unknown_rows``)."""
        return sum(layer.macs for layer in self.layers if layer.macs is not None)

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs."""
        return 2 * self.macs

    @property
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
        """The row called ``name`` (KeyError if absent)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def with_candidates(
        self, candidates: tuple[Candidate, ...], excluded: tuple[Excluded, ...], energy_target: float | None
    ) -> Report:
        """A copy of this report carrying the planner's candidates and exclusions."""
        return replace(self, candidates=candidates, excluded=excluded, energy_target=energy_target)


@dataclass(frozen=True)
class PlannedLayer:
    """One convolution `convert` will rewrite: its rank T and what that costs and keeps.

    ``energy`` is the share of squared kernel norm kept at ``rank`` and ``weight_error`` the relative
    Frobenius error ``||W - W_T|| / ||W||`` (both None with ``--init random`` or no weights).
    """

    name: str
    rank: int
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    energy: float | None = None
    weight_error: float | None = None
    bn_folded: str | None = None
    pointwise_bias: bool | None = None  # None: the pointwise conv has a bias iff the conv had one or a BN was folded


@dataclass(frozen=True)
class Plan:
    """What `convert` will do: layers to rewrite and layers left alone (with reasons)."""

    layers: tuple[PlannedLayer, ...]
    skipped: tuple[Excluded, ...] = ()
    init: str = "svd"
    depthwise_bias: bool = False

    @property
    def params_saved(self) -> int:
        """Params removed by the whole plan."""
        return sum(p.params_before - p.params_after for p in self.layers)

    @property
    def macs_saved(self) -> int:
        """MACs removed by the whole plan (layers with unknown MACs count 0)."""
        return sum(
            (p.macs_before - p.macs_after)
            for p in self.layers
            if p.macs_before is not None and p.macs_after is not None
        )


@dataclass(frozen=True)
class Budget:
    """One limit on one metric. ``metric`` is the flag name without dashes (``"max-params"``)."""

    metric: str
    limit: float
    source: str = "cli"


@dataclass(frozen=True)
class BudgetOutcome:
    """The outcome of one budget on one model: value, limit, and whether it holds.

    ``unknown`` says why the value could not be established (``"3 rows not counted: ..."``), "" when it
    could; ``value`` then covers only what was counted. An unknown outcome never passes. ``baseline`` is
    the recorded figure a growth outcome compares with (None for other budgets).
    """

    model: str
    metric: str
    value: float
    limit: float
    passed: bool
    message: str = ""
    unknown: str = ""
    baseline: float | None = None

    @property
    def growth(self) -> float | None:
        """Growth over the baseline as a fraction (``0.021`` = +2.1%); None without a (non-zero) baseline."""
        if self.baseline is None or not self.baseline:
            return None
        return (self.value - self.baseline) / self.baseline

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"FAIL"`` (exceeded) or ``"unknown"`` (not established: fails too)."""
        if self.unknown:
            return "unknown"
        return "pass" if self.passed else "FAIL"

    @property
    def headroom(self) -> float:
        """limit - value for max-budgets, value - limit for min-budgets (negative = exceeded)."""
        if self.metric.startswith("min-"):
            return self.value - self.limit
        return self.limit - self.value


@dataclass(frozen=True)
class ModelError:
    """A model `check` could not load: its path and the one-line reason."""

    model: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    """All budget outcomes of one `check` run, and the models that could not be loaded."""

    results: tuple[BudgetOutcome, ...] = field(default_factory=tuple)
    errors: tuple[ModelError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every budget holds and every model loaded."""
        return not self.errors and all(r.passed for r in self.results)

    def count(self, verdict: str) -> int:
        """Outcomes with this ``BudgetOutcome.verdict`` (``"pass"``, ``"FAIL"``, ``"unknown"``)."""
        return sum(1 for r in self.results if r.verdict == verdict)

    @property
    def models(self) -> tuple[str, ...]:
        """Every model named, checked or not, in first-seen order."""
        return tuple(dict.fromkeys([*(r.model for r in self.results), *(e.model for e in self.errors)]))


@dataclass(frozen=True)
class CalibratedLayer:
    """The calibrated refit of one converted layer's pointwise factor (weights and bias).

    Errors are relative L2 errors ``||Y - Y_hat|| / ||Y||`` of the layer's output (dimensionless) against
    the original layer's output (BN-folded original when a BN was folded): ``fit_*`` on the samples the
    fit used, ``holdout_*`` on held-back calibration samples (None when none were held back);
    ``*_before`` with the SVD weights, ``*_after`` with the weights kept. ``rows`` are the equations
    (samples x output positions) and ``unknowns`` the solved coefficients per pointwise group.
    ``fell_back`` says why the SVD weights were kept ("" when the refit was accepted); ``note`` explains a
    rank choice (``--max-output-error``).

    Refinements beyond the pointwise refit, each kept only when it lowered the held-back error:
    ``depthwise_refit`` (the depthwise factor refit too, by alternating least squares; the ``*_after``
    errors include it) and ``relu_fit`` (fit to the output after the ReLU that alone reads it, which
    trades pre-ReLU error for post-ReLU error). ``relu_error_before``/``after`` are the held-back
    relative errors after that ReLU (fit samples when none were held back) before and after that fit;
    ``refine_note`` says why a refinement was not tried or not kept.
    """

    name: str
    rank: int
    fit_error_before: float
    fit_error_after: float
    holdout_error_before: float | None = None
    holdout_error_after: float | None = None
    rows: int = 0
    unknowns: int = 0
    fell_back: str = ""
    note: str = ""
    depthwise_refit: bool = False
    relu_fit: bool = False
    relu_error_before: float | None = None
    relu_error_after: float | None = None
    refine_note: str = ""


@dataclass(frozen=True)
class CalibrationReport:
    """What the calibrated refit did: per layer, and end to end.

    ``output_error_before``/``after`` are the relative L2 errors of the whole model's outputs against the
    original, SVD-only vs calibrated, measured on the held-back samples (on the fit samples when none
    were held back: ``end_to_end_on`` says which). ``seconds`` is the wall time of the calibration.
    """

    layers: tuple[CalibratedLayer, ...]
    samples_fit: int
    samples_holdout: int
    output_error_before: float | None = None
    output_error_after: float | None = None
    end_to_end_on: str = "holdout"
    seconds: float = 0.0
    max_output_error: float | None = None
