"""Error-versus-rank curves of candidate layers from one pass over the calibration inputs (pure numpy).

For each candidate conv (BN-folded float64 kernel ``W``, bias ``b``) the backend runs the ORIGINAL
network once and hands over, per sample chunk, ``Z`` = the rank-``Tmax`` depthwise factor of ``W``
applied to the layer's input, and ``Y`` = the layer's output (after the folded BN). With the normal
equations of ``Y ~ [Z, 1] P`` accumulated at ``Tmax`` (``NormalEquations``), every smaller rank is a
nested column subset (``rank_columns``: the top singular vectors come first), so for every rank T:

- ``error_svd``: relative output error with the SVD factors (pointwise ``U S``, the folded bias);
- ``error_refit``: the same after refitting the pointwise factor and bias by least squares on the fit
  samples (the SVD factors are kept where the refit is worse: ``solve.refit``);
- ``energy`` / ``weight_error``: the data-free kernel figures (DESIGN §4).

Output errors are measured on the held-back samples (on the fit samples when none were held back:
``LayerCurve.on`` says which). These are local errors, each layer fed the original network's activations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sepconv_cli.calibration.loop import Chunks, search_ranks
from sepconv_cli.calibration.solve import CalibOptions, NormalEquations, pack, rank_columns, refit
from sepconv_cli.calibration.stream import prefetched
from sepconv_cli.core.decompose import decompose, spectrum


@dataclass(frozen=True, eq=False)
class CurveCandidate:
    """A conv whose curve is wanted: ``weight`` and ``bias`` BN-folded float64 (``bn_folded`` names the
    BatchNorm whose output is the target), ``ranks`` to evaluate (empty: every rank below break-even)."""

    name: str
    weight: np.ndarray
    groups: int
    bias: np.ndarray | None = None
    transposed: bool = False
    ranks: tuple[int, ...] = ()
    bn_folded: str | None = None

    def rank_list(self) -> list[int]:
        """The ranks to evaluate, ascending (``loop.search_ranks`` when none were given)."""
        return sorted(set(self.ranks)) if self.ranks else search_ranks(self.weight, self.groups, self.transposed)

    @property
    def top(self) -> int:
        """Tmax: the largest rank evaluated (the depthwise factor the backend applies)."""
        return self.rank_list()[-1]

    def depthwise(self) -> np.ndarray:
        """The rank-Tmax depthwise kernel (Conv ``(Cin*T, 1, *k)``, ConvTranspose ``(Cin, T, *k)``)."""
        return decompose(self.weight, self.groups, self.top, self.transposed).depthwise


@dataclass(frozen=True)
class LayerCurve:
    """Per rank (``ranks``, ascending): output errors (relative L2, dimensionless) with the SVD factors
    and after the pointwise refit, on ``on`` samples ("holdout" or "fit"), the refit's error on the fit
    samples, whether the refit was kept, and the data-free energy kept and relative weight error."""

    name: str
    ranks: tuple[int, ...]
    error_svd: tuple[float, ...]
    error_refit: tuple[float, ...]
    error_refit_fit: tuple[float, ...]
    refit_kept: tuple[bool, ...]
    energy: tuple[float, ...]
    weight_error: tuple[float, ...]
    samples_fit: int = 0
    samples_holdout: int = 0
    on: str = "holdout"
    rows: int = field(default=0)

    def error(self, rank: int, refitted: bool = True) -> float:
        """The output error at ``rank`` (after the refit by default)."""
        i = self.ranks.index(rank)
        return self.error_refit[i] if refitted else self.error_svd[i]

    def squared(self, refitted: bool = True) -> dict[int, float]:
        """``{rank: error^2}``: squared errors add up across layers (the allocator's currency)."""
        errors = self.error_refit if refitted else self.error_svd
        return {r: e * e for r, e in zip(self.ranks, errors)}


class CurveStats:
    """Normal equations of every candidate at its Tmax, fit and held-back samples apart."""

    def __init__(self, candidates: Sequence[CurveCandidate]):
        self.candidates = {c.name: c for c in candidates}
        self.stats: dict[tuple[str, bool], NormalEquations] = {}
        self.samples = {False: 0, True: 0}

    def add(self, name: str, held: bool, z: np.ndarray, y: np.ndarray) -> None:
        """Accumulate one chunk of layer ``name``: ``z`` (N, Cin*Tmax, ...) and ``y`` (N, Cout, ...)."""
        c = self.candidates[name]
        key = (name, held)
        if key not in self.stats:
            self.stats[key] = NormalEquations(c.groups, z.shape[1] // c.groups, y.shape[1] // c.groups)
        self.stats[key].add(z, y)

    def count(self, held: bool, samples: int) -> None:
        """Record that a chunk of ``samples`` inputs went by (fit or held back)."""
        self.samples[held] += samples

    def pop(self, name: str, ridge: float) -> LayerCurve:
        """The curve of layer ``name`` from what was accumulated; its statistics are dropped."""
        c = self.candidates[name]
        fit, hold = self.stats.pop((name, False)), self.stats.pop((name, True), None)
        return layer_curve(c, (fit, hold), ridge, (self.samples[False], self.samples[True]))


def layer_curve(c: CurveCandidate, stats: tuple[NormalEquations, NormalEquations | None], ridge: float,
                samples: tuple[int, int] = (0, 0)) -> LayerCurve:
    """The curve of candidate ``c`` from its normal equations at Tmax (``stats``: fit, held back)."""
    fit, hold = stats
    ranks, top = c.rank_list(), c.top
    full = decompose(c.weight, c.groups, top, c.transposed)
    init = pack(full.pointwise, c.bias, c.groups)
    judge = hold if hold is not None and hold.rows else fit
    cin_g = fit.inputs // top
    svd: list[float] = []
    after: list[float] = []
    after_fit: list[float] = []
    kept: list[bool] = []
    for rank in ranks:
        cols = rank_columns(cin_g, top, rank)
        sub = (fit.select(cols), None if judge is fit else judge.select(cols))
        start = init[:, np.append(cols, fit.inputs)]
        result = refit(c.name, rank, sub, start, ridge)
        rec = result.record
        before, kept_error = rec.holdout_error_before, rec.holdout_error_after
        svd.append(before if sub[1] is not None and before is not None else rec.fit_error_before)
        after.append(kept_error if sub[1] is not None and kept_error is not None else rec.fit_error_after)
        after_fit.append(result.record.fit_error_after)
        kept.append(not result.record.fell_back)
    found = spectrum(c.weight, c.groups, c.transposed)
    return LayerCurve(
        name=c.name, ranks=tuple(ranks), error_svd=tuple(svd), error_refit=tuple(after),
        error_refit_fit=tuple(after_fit), refit_kept=tuple(kept),
        energy=tuple(found.energy(r) for r in ranks), weight_error=tuple(found.relative_error(r) for r in ranks),
        samples_fit=samples[0], samples_holdout=samples[1], on="fit" if judge is fit else "holdout", rows=fit.rows)


def blocks(events: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """``(position, kind, layer)`` events, sorted, cut where no layer is open (its ``Z`` taken, its ``Y`` not
    yet): the walk goes layer block by layer block, every chunk through one block before the next."""
    out: list[list[tuple[int, int, int]]] = []
    open_layers: set[int] = set()
    for event in sorted(events):
        if not open_layers:
            out.append([])
        out[-1].append(event)
        (open_layers.add if event[1] == 0 else open_layers.discard)(event[2])
    return out


def collect_curves(candidates: Sequence[CurveCandidate], chunks: Chunks,
                   pairs: Iterable[tuple[int, str, np.ndarray, np.ndarray]], options: CalibOptions
                   ) -> dict[str, LayerCurve]:
    """Curves of every candidate from the backend's ``(chunk index, layer name, Z, Y)`` items (produced on
    a worker thread while the normal equations accumulate here). A layer is solved, and its statistics
    dropped, as soon as every chunk has reached it. ``options.sample_progress(name, done, total)`` follows
    the samples of each layer, ``options.progress(name, i, n)`` the layers solved."""
    stats = CurveStats(candidates)
    for held, indices in zip(chunks.held, chunks.indices):
        stats.count(held, len(indices))
    total = sum(len(i) for i in chunks.indices)
    seen: dict[str, int] = {c.name: 0 for c in candidates}
    curves: dict[str, LayerCurve] = {}
    for index, name, z, y in prefetched(pairs):
        stats.add(name, chunks.held[index], z, y)
        seen[name] += len(chunks.indices[index])
        if options.sample_progress is not None:
            options.sample_progress(name, seen[name], total)
        if seen[name] == total:
            curves[name] = stats.pop(name, options.ridge)
            if options.progress is not None:
                options.progress(name, len(curves), len(candidates))
    return {c.name: curves[c.name] for c in candidates}
