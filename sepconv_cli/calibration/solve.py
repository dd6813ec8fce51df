"""Calibrated refit of a separable layer's pointwise factor by least squares (pure numpy).

Asymmetric reconstruction (Zhang et al. 2015) applied to the pointwise factor: with ``Z`` the depthwise
outputs of the converted network and ``Y`` the original layer's outputs on the original network, both
flattened to ``(samples * positions, channels)``, solve per pointwise group

    (Z1^T Z1 + lambda I) P = Z1^T Y,    Z1 = [Z, 1]   (the ones column carries the bias).

Only the sufficient statistics ``Z1^T Z1``, ``Z1^T Y`` and ``Y^T Y`` are kept, accumulated over
mini-batches, so memory does not grow with the number of samples, and the output error of ANY
coefficients on those samples follows from them exactly:
``||Y - Z1 P||^2 = Y^T Y - 2 <P, Z1^T Y> + <P, Z1^T Z1 P>``.

Coefficient layout ``P``: ``(groups, D + 1, Cout_g)``, row ``D`` being the bias, with ``D = Cin*T/g``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sepconv_cli.calibration.linalg import spd_solve
from sepconv_cli.calibration.moments import Moments, moments
from sepconv_cli.core.calibrated import CalibratedLayer

TOO_FEW_ROWS = "{rows} equations for {unknowns} unknowns per group: too few calibration samples for a " \
               "well-posed fit; kept the SVD weights"
WORSE_ON_FIT = "the refit did not lower the output error on the calibration samples; kept the SVD weights"
WORSE_ON_HOLDOUT = "the refit raised the output error on held-back samples; kept the SVD weights"
NOT_FINITE = "the refit produced non-finite weights; kept the SVD weights"


@dataclass(frozen=True)
class CalibOptions:
    """How to calibrate.

    ``samples``: cap on calibration inputs used. ``batch_size``: inputs per forward pass (memory).
    ``ridge``: lambda relative to the mean diagonal of ``Z^T Z`` (dimensionless). ``holdout``: share
    of the inputs held back to measure errors (0 disables). ``max_output_error``: when set, each layer
    gets the smallest rank whose calibrated relative output error on held-back samples is at most this.
    ``progress(layer_name, done, total)`` is called after each layer, ``sample_progress(layer_name,
    samples_done, samples_total)`` as the samples of a layer's pass go by. ``threads``: runtime threads
    (0 = the usable cores). After the pointwise refit (``calibration.refine``): ``refit_depthwise`` refits
    the depthwise factor too (``depthwise_steps`` rounds of alternating least squares, on layers where that
    costs at most ``depthwise_budget`` times the pointwise refit or little), ``fit_relu`` fits a
    layer read only by a ReLU to its post-ReLU output (``relu_steps`` passes over the data); each is kept
    only when it lowers the held-back error.
    """

    samples: int = 256
    batch_size: int = 8
    ridge: float = 1e-5
    holdout: float = 0.25
    max_output_error: float | None = None
    progress: Callable[[str, int, int], None] | None = field(default=None, compare=False)
    threads: int = 0
    seed: int = 0
    sample_progress: Callable[[str, int, int], None] | None = field(default=None, compare=False)
    refit_depthwise: bool = True
    depthwise_steps: int = 5
    depthwise_budget: float = 8.0
    fit_relu: bool = False
    relu_steps: int = 2


def to_rows(activation: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> float64 ``(N * prod(spatial), C)``: one row per sample and position."""
    a = np.asarray(activation)
    return np.ascontiguousarray(np.moveaxis(a, 1, -1), dtype=np.float64).reshape(-1, a.shape[1])


class NormalEquations:
    """Sufficient statistics of ``Y ~ [Z, 1] P`` for ``groups`` independent pointwise groups."""

    def __init__(self, groups: int, inputs: int, outputs: int):
        """``inputs`` = D (columns of Z per group), ``outputs`` = Cout_g (columns of Y per group)."""
        self.groups, self.inputs, self.outputs = groups, inputs, outputs
        self.zz = np.zeros((groups, inputs + 1, inputs + 1))
        self.zy = np.zeros((groups, inputs + 1, outputs))
        self.yy = 0.0
        self.rows = 0

    @property
    def unknowns(self) -> int:
        """Coefficients solved per output channel of a group (D weights + 1 bias)."""
        return self.inputs + 1

    def add(self, z: np.ndarray, y: np.ndarray) -> None:
        """Accumulate one mini-batch: ``z`` (N, Cin*T, ...) depthwise output, ``y`` (N, Cout, ...) target."""
        self.add_moments(moments(z, y, self.groups))

    def add_moments(self, m: Moments) -> None:
        """Accumulate precomputed sums (``moments.moments`` of a mini-batch)."""
        d = self.inputs
        # The ones column of [Z, 1] enters as column sums and the row count (no copy of Z).
        self.zz[:, :d, :d] += m.zz
        self.zz[:, :d, d] += m.zsum
        self.zz[:, d, :d] += m.zsum
        self.zz[:, d, d] += m.rows
        self.zy[:, :d] += m.zy
        self.zy[:, d] += m.ysum
        self.yy += m.yy
        self.rows += m.rows

    def select(self, columns: np.ndarray) -> NormalEquations:
        """The same statistics restricted to Z columns ``columns`` (local to a group); the bias is kept."""
        keep = np.append(np.asarray(columns, dtype=np.int64), self.inputs)
        sub = NormalEquations(self.groups, len(columns), self.outputs)
        sub.zz = self.zz[:, keep][:, :, keep]
        sub.zy = self.zy[:, keep]
        sub.yy, sub.rows = self.yy, self.rows
        return sub

    def solve(self, ridge: float) -> np.ndarray:
        """Ridge solution ``P``; lambda = ``ridge`` x mean diagonal of Z^T Z (the bias is not shrunk)."""
        d = self.inputs
        diag = np.einsum("gii->gi", self.zz[:, :d, :d])
        lam = ridge * np.maximum(diag.mean(axis=1), 1e-30)
        a = self.zz.copy()
        a[:, np.arange(d), np.arange(d)] += lam[:, None]
        return spd_solve(a, self.zy)

    def relative_error(self, p: np.ndarray) -> float:
        """``||Y - [Z, 1] P|| / ||Y||`` over every accumulated row (0 when Y is all zero)."""
        sse = self.yy - 2.0 * float(np.sum(p * self.zy)) + float(np.sum(p * (self.zz @ p)))
        if self.yy <= 0.0:
            return float(np.sqrt(max(sse, 0.0)))
        return float(np.sqrt(max(sse, 0.0) / self.yy))


def pack(pointwise: np.ndarray, bias: np.ndarray | None, groups: int) -> np.ndarray:
    """Pointwise kernel ``(Cout, D, 1, ...)`` and bias ``(Cout,)`` -> coefficients ``(g, D + 1, Cout_g)``."""
    cout, d = pointwise.shape[0], pointwise.shape[1]
    w = np.asarray(pointwise, np.float64).reshape(groups, cout // groups, d).transpose(0, 2, 1)
    b = np.zeros(cout) if bias is None else np.asarray(bias, np.float64)
    return np.concatenate([w, b.reshape(groups, 1, cout // groups)], axis=1)


def unpack(p: np.ndarray, spatial_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(g, D + 1, Cout_g)`` -> float64 pointwise kernel ``(Cout, D, 1, ...)`` and bias."""
    g, d1, c = p.shape
    w = p[:, :-1, :].transpose(0, 2, 1).reshape(g * c, d1 - 1, *((1,) * spatial_dims))
    return np.ascontiguousarray(w), np.ascontiguousarray(p[:, -1, :].reshape(g * c))


@dataclass(frozen=True)
class Refit:
    """Coefficients kept for one layer at one rank, and the record describing them."""

    coefficients: np.ndarray
    record: CalibratedLayer


def _error_or_none(stats: NormalEquations | None, p: np.ndarray) -> float | None:
    return None if stats is None or stats.rows == 0 else stats.relative_error(p)


def _fallback_reason(fit: NormalEquations, hold: NormalEquations | None, p: np.ndarray,
                     init: np.ndarray) -> str:
    """Why the refit ``p`` must not replace the SVD ``init`` ("" when it may)."""
    if not np.all(np.isfinite(p)):
        return NOT_FINITE
    if fit.relative_error(p) > fit.relative_error(init):
        return WORSE_ON_FIT
    before, after = _error_or_none(hold, init), _error_or_none(hold, p)
    if before is not None and after is not None and after > before:
        return WORSE_ON_HOLDOUT
    return ""


def refit(name: str, rank: int, stats: tuple[NormalEquations, NormalEquations | None],
          init: np.ndarray, ridge: float) -> Refit:
    """Solve for the pointwise coefficients of one layer; keep ``init`` (SVD) unless the fit is better.

    ``stats`` is (fit, holdout). The refit is refused when the fit has fewer equations than unknowns,
    when it does not lower the output error on the fit samples, or when it raises it on held-back ones.
    """
    fit, hold = stats
    if fit.rows < fit.unknowns:
        reason, p = TOO_FEW_ROWS.format(rows=fit.rows, unknowns=fit.unknowns), init
    else:
        p = fit.solve(ridge)
        reason = _fallback_reason(fit, hold, p, init)
    kept = init if reason else p
    record = CalibratedLayer(
        name=name, rank=rank, fit_error_before=fit.relative_error(init), fit_error_after=fit.relative_error(kept),
        holdout_error_before=_error_or_none(hold, init), holdout_error_after=_error_or_none(hold, kept),
        rows=fit.rows, unknowns=fit.unknowns, fell_back=reason)
    return Refit(coefficients=kept, record=record)


def rank_columns(cin_g: int, full_rank: int, rank: int) -> np.ndarray:
    """Z columns (local to a group) of the rank-``rank`` form inside a rank-``full_rank`` one:
    depthwise channel ``li*T+t`` keeps the top ``t < T`` singular vectors, nested across ranks."""
    return (np.arange(cin_g)[:, None] * full_rank + np.arange(rank)[None, :]).reshape(-1)


def _achieved(record: CalibratedLayer) -> float:
    """The error ``--max-output-error`` judges: held-back samples, else the fit samples."""
    return record.holdout_error_after if record.holdout_error_after is not None else record.fit_error_after


def choose_rank(name: str, stats: tuple[NormalEquations, NormalEquations | None], init: np.ndarray,
                ranks: Sequence[int], target: float, ridge: float) -> Refit:
    """The smallest rank in ``ranks`` whose calibrated output error is at most ``target``.

    ``stats`` and ``init`` are at rank ``max(ranks)``; lower ranks use nested column subsets. When no
    rank meets the target the largest is kept and the record's note says so.
    """
    if not ranks:
        raise ValueError("choose_rank needs at least one rank")
    fit, hold = stats
    full = max(ranks)
    cin_g = fit.inputs // full
    best: Refit | None = None
    for rank in sorted(ranks):
        cols = rank_columns(cin_g, full, rank)
        sub = (fit.select(cols), None if hold is None else hold.select(cols))
        best = refit(name, rank, sub, init[:, np.append(cols, fit.inputs)], ridge)
        if _achieved(best.record) <= target:
            where = "held-back" if best.record.holdout_error_after is not None else "calibration"
            note = f"smallest rank with output error <= {target:g} on {where} samples"
            return Refit(best.coefficients, _with_note(best.record, note))
    if best is None:
        raise ValueError("choose_rank needs at least one rank")
    note = f"no rank below break-even reaches output error {target:g}; kept the largest, T={full}"
    return Refit(best.coefficients, _with_note(best.record, note))


def _with_note(record: CalibratedLayer, note: str) -> CalibratedLayer:
    return replace(record, note=note)


def split_samples(count: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``count`` sample indices into (fit, held back); at least one fit sample."""
    order = np.random.default_rng(seed).permutation(count)
    held = min(int(round(count * holdout)), count - 1) if holdout > 0 else 0
    return np.sort(order[: count - held]), np.sort(order[count - held:])


def batches(indices: np.ndarray, size: int) -> list[np.ndarray]:
    """``indices`` cut into consecutive chunks of at most ``size``."""
    return [indices[i: i + size] for i in range(0, len(indices), max(1, size))]
