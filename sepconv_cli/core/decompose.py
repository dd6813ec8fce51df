"""Per-input-channel SVD of a convolution kernel: depthwise + pointwise factors, spectra, errors.

Pure numpy, float64 throughout (callers cast back to the model dtype). DESIGN §4 (Network Decoupling):
for every input channel ``i`` (group ``gi``, local index ``li``) the ``Cout_g x K`` slice
``M_i = U_i S_i V_i^T`` gives ``T`` depthwise kernels ``v_{i,t}`` and pointwise weights ``U_i[:, t] * s_{i,t}``.

Layouts: Conv weight ``(Cout, Cin/g, *k)``; ConvTranspose weight ``(Cin, Cout/g, *k)``; ``K = prod(k)``.
All slices of a layer are stacked into one ``(Cin, Cout_g, K)`` array and decomposed by ONE batched
``np.linalg.svd`` call, which is what keeps a ResNet-50-sized model within seconds.

Energy kept at rank T is the share of the kernel's squared Frobenius norm the rank-T form keeps, over the
whole layer; an all-zero kernel keeps everything by definition (energy 1.0, relative error 0.0 at every T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sepconv_cli.core.records import ConvSpec
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
from sepconv_cli.errors import InputError, ShapeError

# Floating-point slack when comparing a cumulative energy with a target (targets such as 1.0 are reached
# only up to rounding of the cumulative sum).
_ENERGY_SLACK = 1e-12

# Singular values come from the small Gram matrix of each slice (K x K, or Cout_g x Cout_g), whose
# eigenvalues are their squares: several times faster than an SVD of the tall slice. Eigenvalues carry
# an error of about eps * lambda_max, so a slice whose smallest eigenvalue is below this share of its
# largest (condition number above 100, or rank-deficient) is refined by an exact SVD; every value then
# keeps a relative error far below 1e-9, far below anything reported.
_GRAM_FLOOR = 1e-4


NON_FINITE = "weight holds NaN/Inf"
"""Why a kernel with non-finite values is never decomposed (an SVD of one does not converge, or hangs)."""


class NonFiniteWeights(InputError):
    """A kernel holds NaN or Inf values: no SVD is attempted (LAPACK would fail, loop, or print to stdout)."""


@dataclass(frozen=True)
class _Geometry:
    """Channel counts implied by a stored kernel: ``cin``, ``cout``, ``groups``, ``kernel`` (spatial dims)."""

    cin: int
    cout: int
    groups: int
    kernel: tuple[int, ...]

    @property
    def cin_g(self) -> int:
        return self.cin // self.groups

    @property
    def cout_g(self) -> int:
        return self.cout // self.groups

    @property
    def k(self) -> int:
        return int(np.prod(self.kernel, dtype=np.int64))

    @property
    def max_rank(self) -> int:
        return min(self.cout_g, self.k)


def _geometry(shape: tuple[int, ...], groups: int, transposed: bool) -> _Geometry:
    """Channel counts of a stored kernel of ``shape``; ShapeError when groups do not divide it."""
    if len(shape) < 3:
        raise ShapeError(f"conv kernel of shape {shape} has no spatial dims (need at least 3 dims)")
    if groups < 1 or shape[0] % groups:
        raise ShapeError(f"groups={groups} does not divide the first dim of kernel shape {shape}")
    lead, per_group, kernel = shape[0], shape[1], tuple(int(d) for d in shape[2:])
    if transposed:
        return _Geometry(cin=lead, cout=per_group * groups, groups=groups, kernel=kernel)
    return _Geometry(cin=per_group * groups, cout=lead, groups=groups, kernel=kernel)


def _float64(array: np.ndarray) -> np.ndarray:
    """``array`` as float64; ShapeError when it holds no numbers (a string-typed weight)."""
    if np.asarray(array).dtype.kind not in "fiub":
        raise ShapeError(f"conv kernel of type {np.asarray(array).dtype} is not numeric")
    return np.asarray(array, dtype=np.float64)


def channel_slices(weight: np.ndarray, groups: int, transposed: bool = False) -> np.ndarray:
    """The stacked per-input-channel slices ``M_i`` as a float64 ``(Cin, Cout_g, K)`` array."""
    geo = _geometry(weight.shape, groups, transposed)
    w = _float64(weight)
    if not np.isfinite(w).all():
        raise NonFiniteWeights(NON_FINITE)
    if transposed:
        return w.reshape(geo.cin, geo.cout_g, geo.k)
    # (g, Cout_g, Cin_g, K) -> (g, Cin_g, Cout_g, K): input channel i = gi*Cin_g + li.
    stacked = w.reshape(geo.groups, geo.cout_g, geo.cin_g, geo.k).transpose(0, 2, 1, 3)
    return stacked.reshape(geo.cin, geo.cout_g, geo.k)


def _from_slices(slices: np.ndarray, geo: _Geometry, transposed: bool) -> np.ndarray:
    """Inverse of :func:`channel_slices`: ``(Cin, Cout_g, K)`` back to the stored kernel layout."""
    if transposed:
        return slices.reshape(geo.cin, geo.cout_g, *geo.kernel)
    grouped = slices.reshape(geo.groups, geo.cin_g, geo.cout_g, geo.k).transpose(0, 2, 1, 3)
    return grouped.reshape(geo.cout, geo.cin_g, *geo.kernel)


def fold_batchnorm(w: ConvWeights, groups: int, transposed: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 ``(weight, bias)`` with ``w.bn`` folded in (a bias is created when a BN is present).

    Without a BN the result is float64 copies of the stored weight and bias. The BN scale
    ``gamma / sqrt(var + eps)`` multiplies output channel ``o``: axis 0 of a Conv kernel, and for a
    ConvTranspose the entries ``W[i, j]`` of every input channel ``i`` in group ``gi`` with ``o = gi*Cout_g + j``.
    """
    weight = np.array(_float64(w.weight))
    bias = None if w.bias is None else np.array(_float64(w.bias))
    if w.bn is None:
        return weight, bias
    with np.errstate(all="ignore"):  # a negative variance or zero scale gives NaN/Inf: channel_slices refuses it
        return _fold(weight, bias, w.bn, _geometry(weight.shape, groups, transposed), transposed)


def _fold(weight: np.ndarray, bias: np.ndarray | None, bn: BatchNormParams, geo: _Geometry,
          transposed: bool) -> tuple[np.ndarray, np.ndarray]:
    """``fold_batchnorm`` once a BN is present (float64 weight and bias in, folded pair out)."""
    if np.asarray(bn.gamma).shape != (geo.cout,):
        raise ShapeError(f"BatchNorm {bn.name!r} has {np.asarray(bn.gamma).size} channels, the conv has {geo.cout}")
    scale = _float64(bn.gamma) / np.sqrt(_float64(bn.var) + float(bn.eps))
    if transposed:
        per_group = weight.reshape(geo.groups, geo.cin_g, geo.cout_g, geo.k)
        weight = (per_group * scale.reshape(geo.groups, 1, geo.cout_g, 1)).reshape(weight.shape)
    else:
        weight = weight * scale.reshape((geo.cout,) + (1,) * (weight.ndim - 1))
    shift = _float64(bn.beta) - _float64(bn.mean) * scale
    folded_bias = shift if bias is None else bias * scale + shift
    return weight, folded_bias


@dataclass(frozen=True, eq=False)  # arrays have no truth value: compare fields explicitly
class Spectrum:
    """Singular values of every input channel's slice: ``values`` is ``(Cin, R)``, descending per row,
    ``R = min(Cout/g, K)``. Energies are shares of the squared Frobenius norm (dimensionless, 0..1)."""

    values: np.ndarray

    @property
    def max_rank(self) -> int:
        """R: the rank at which the separable form is exact."""
        return int(self.values.shape[1])

    def _column_energy(self) -> np.ndarray:
        return np.sum(np.square(self.values, dtype=np.float64), axis=0)

    def energies(self) -> np.ndarray:
        """``energies()[T-1] = energy(T)`` for T = 1..R; the last entry is exactly 1.0."""
        kept = np.cumsum(self._column_energy())
        if kept.size == 0 or kept[-1] <= 0.0:
            return np.ones(self.max_rank)
        return kept / kept[-1]

    def errors(self) -> np.ndarray:
        """``errors()[T-1] = relative_error(T)`` for T = 1..R, from the discarded tail (exactly 0 at R)."""
        column = self._column_energy()
        total = column.sum()
        if total <= 0.0:
            return np.zeros(self.max_rank)
        tail = np.concatenate([np.cumsum(column[::-1])[::-1][1:], [0.0]])
        return np.sqrt(tail / total)

    def _check_rank(self, rank: int) -> None:
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")

    def energy(self, rank: int) -> float:
        """Share of the squared Frobenius norm kept at rank T (1.0 for T >= R)."""
        self._check_rank(rank)
        return float(self.energies()[min(rank, self.max_rank) - 1])

    def relative_error(self, rank: int) -> float:
        """``||W - W_T||_F / ||W||_F = sqrt(1 - energy(T))`` (0.0 for T >= R)."""
        self._check_rank(rank)
        return float(self.errors()[min(rank, self.max_rank) - 1])

    def rank_for_energy(self, target: float) -> int:
        """Smallest T in 1..R with ``energy(T) >= target``; ``target`` in [0, 1]."""
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"energy target must be within [0, 1], got {target}")
        reached = np.nonzero(self.energies() >= target - _ENERGY_SLACK)[0]
        return int(reached[0]) + 1 if reached.size else self.max_rank

    def rank_for_error(self, max_error: float) -> int:
        """Smallest T in 1..R with ``relative_error(T) <= max_error``; ``max_error`` >= 0."""
        if max_error < 0.0:
            raise ValueError(f"max error must be non-negative, got {max_error}")
        reached = np.nonzero(self.errors() <= max_error + _ENERGY_SLACK)[0]
        return int(reached[0]) + 1 if reached.size else self.max_rank


def _singular_values(slices: np.ndarray) -> np.ndarray:
    """Descending singular values of each ``(Cout_g, K)`` slice of ``slices``, float64 (see ``_GRAM_FLOOR``)."""
    if slices.size == 0 or not np.isfinite(slices).all():
        return np.linalg.svd(slices, compute_uv=False)
    flipped = slices.transpose(0, 2, 1)
    gram = flipped @ slices if slices.shape[1] >= slices.shape[2] else slices @ flipped
    squares = np.linalg.eigvalsh(gram)[:, ::-1]
    values = np.sqrt(np.maximum(squares, 0.0))
    refine = ~(squares[:, -1] >= _GRAM_FLOOR * squares[:, 0])
    if refine.any():
        values[refine] = np.linalg.svd(slices[refine], compute_uv=False)
    return values


def spectrum(weight: np.ndarray, groups: int, transposed: bool = False) -> Spectrum:
    """The per-channel singular values of ``weight`` (one batched Gram eigen-solve, values only)."""
    return Spectrum(values=_singular_values(channel_slices(weight, groups, transposed)))


@dataclass(frozen=True, eq=False)
class Factors:
    """Depthwise and pointwise weights of the separable form at ``rank`` T (float64).

    ``depthwise``: Conv ``(Cin*T, 1, *k)``, ConvTranspose ``(Cin, T, *k)``; channel ``i*T+t`` has kernel
    ``v_{i,t}``. ``pointwise``: ``(Cout, Cin*T/g, 1, ..., 1)`` with ``[o, li*T+t] = U_i[o_local, t] * s_{i,t}``.
    """

    depthwise: np.ndarray
    pointwise: np.ndarray
    rank: int


def _assemble(u_scaled: np.ndarray, vt: np.ndarray, geo: _Geometry, transposed: bool) -> Factors:
    """Factors from ``u_scaled`` ``(Cin, Cout_g, T)`` and ``vt`` ``(Cin, T, K)``."""
    rank = vt.shape[1]
    if transposed:
        depthwise = vt.reshape(geo.cin, rank, *geo.kernel)
    else:
        depthwise = vt.reshape(geo.cin * rank, 1, *geo.kernel)
    # (g, Cin_g, Cout_g, T) -> (g, Cout_g, Cin_g, T): pointwise column li*T+t within group gi.
    grouped = u_scaled.reshape(geo.groups, geo.cin_g, geo.cout_g, rank).transpose(0, 2, 1, 3)
    pointwise = grouped.reshape(geo.cout, geo.cin_g * rank, *((1,) * len(geo.kernel)))
    return Factors(depthwise=np.ascontiguousarray(depthwise), pointwise=np.ascontiguousarray(pointwise), rank=rank)


def _check_factor_rank(rank: int, geo: _Geometry) -> None:
    if not 1 <= rank <= geo.max_rank:
        raise ValueError(f"rank must be within 1..{geo.max_rank} (min(Cout/g, K)), got {rank}")


def decompose(weight: np.ndarray, groups: int, rank: int, transposed: bool = False) -> Factors:
    """Best rank-T separable factors of ``weight`` (Eckart-Young per input channel), float64 SVD.

    ``rank`` must be within ``1..min(Cout/g, K)``; at the upper end ``recompose`` gives back ``weight``.
    """
    geo = _geometry(weight.shape, groups, transposed)
    _check_factor_rank(rank, geo)
    u, s, vt = np.linalg.svd(channel_slices(weight, groups, transposed), full_matrices=False)
    return _assemble(u[:, :, :rank] * s[:, None, :rank], vt[:, :rank], geo, transposed)


def _factor_geometry(factors: Factors, groups: int, transposed: bool) -> _Geometry:
    rank = factors.rank
    cin = factors.depthwise.shape[0] if transposed else factors.depthwise.shape[0] // rank
    return _Geometry(cin=cin, cout=factors.pointwise.shape[0], groups=groups,
                     kernel=tuple(factors.depthwise.shape[2:]))


def recompose(factors: Factors, groups: int, transposed: bool = False) -> np.ndarray:
    """``W_T``: the kernel the separable form computes, in the stored layout of the original conv."""
    geo = _factor_geometry(factors, groups, transposed)
    rank = factors.rank
    v = np.asarray(factors.depthwise, np.float64).reshape(geo.cin, rank, geo.k)
    p = np.asarray(factors.pointwise, np.float64).reshape(geo.groups, geo.cout_g, geo.cin_g, rank)
    u_scaled = p.transpose(0, 2, 1, 3).reshape(geo.cin, geo.cout_g, rank)
    return _from_slices(u_scaled @ v, geo, transposed)


def random_factors(spec: ConvSpec, rank: int, seed: int) -> Factors:
    """Freshly initialised factors with the shapes :func:`decompose` gives (for ``--init random``).

    Kaiming-uniform like PyTorch's default conv init: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
    fan_in = K for the depthwise kernels and ``Cin/g * T`` for the pointwise weights.
    """
    geo = _Geometry(cin=spec.in_channels, cout=spec.out_channels, groups=spec.groups, kernel=tuple(spec.kernel))
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    rng = np.random.default_rng(seed)
    bound_v = 1.0 / np.sqrt(geo.k)
    bound_u = 1.0 / np.sqrt(geo.cin_g * rank)
    vt = rng.uniform(-bound_v, bound_v, size=(geo.cin, rank, geo.k))
    u_scaled = rng.uniform(-bound_u, bound_u, size=(geo.cin, geo.cout_g, rank))
    return _assemble(u_scaled, vt, geo, spec.transposed)
