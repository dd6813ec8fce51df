"""Pure planning: which convolutions become depthwise-separable, at which rank, and why others do not.

``find_candidates`` fills a Report's ``candidates`` (ranked by savings) and ``excluded`` (one reason per conv
row left out); ``make_plan`` turns user selection and rank rules into a Plan for the rewriters.
Units: params are tensor elements, MACs multiply-accumulates; energy is the share of the squared Frobenius
norm of the (BN-folded when asked) kernel kept at rank T (DESIGN §4). No torch, no onnx.

Risk words read the energy kept at T=1: ``low`` when >= 0.9, ``medium`` when >= 0.6, ``high`` below
(see ``RISK_THRESHOLDS``); None without weights.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from sepconv_cli.core import costs
from sepconv_cli.core.decompose import NonFiniteWeights, Spectrum, fold_batchnorm, spectrum
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.core.records import Candidate, ConvSpec, Excluded, Layer, Report, is_static
from sepconv_cli.core.weights import ModelHandle
from sepconv_cli.cpu import usable_cores
from sepconv_cli.errors import ShapeError, UsageError
from sepconv_cli.planner.options import CandidateOptions, Init, PlanOptions, RankBy
from sepconv_cli.planner.rules import DEFAULT_ENERGY, RankRefused, RankRule, choose_rank, rank_rule
from sepconv_cli.planner.select import keep_top, selected_rows

RISK_THRESHOLDS: tuple[tuple[float, str], ...] = ((0.9, "low"), (0.6, "medium"))
"""(minimum energy kept at T=1, risk word), checked in order; anything lower is ``"high"``."""

NO_WEIGHTS = "energy needs weights (none loaded)"
NOT_CONSTANT = "weight is not a constant (fed at run time): not convertible"


_SORT_KEYS: dict[RankBy, Callable[[Candidate], tuple]] = {
    RankBy.MACS: lambda c: (-c.macs_saved, -c.params_saved),
    RankBy.PARAMS: lambda c: (-c.params_saved, -c.macs_saved),
    RankBy.ENERGY: lambda c: (c.energy_t1 is None, -(c.energy_t1 or 0.0), -c.macs_saved),
}


@dataclass(frozen=True)
class _Assessment:
    """One conv row: its candidate or exclusion, its spectrum (None without weights) and whether it can be
    factored at all (False for 1x1, depthwise and non-constant kernels)."""

    layer: Layer
    candidate: Candidate | None
    excluded: Excluded | None
    spectrum: Spectrum | None
    factorable: bool


def _conv(layer: Layer) -> ConvSpec:
    """The geometry of a conv row (the planner only ever sees conv rows; anything else is a caller bug)."""
    if layer.conv is None:
        raise TypeError(f"{layer.name!r} is not a convolution row")
    return layer.conv


def _grids(layer: Layer) -> tuple[int, tuple[int, ...], tuple[int, ...]] | None:
    """(batch, input spatial dims, output spatial dims) of a conv row, None when a shape is unknown."""
    dims = len(_conv(layer).kernel)
    found = []
    for shapes in (layer.input_shapes, layer.output_shapes):
        shape = shapes[0] if shapes else None
        if not is_static(shape) or len(shape) not in (dims + 1, dims + 2):
            return None
        found.append((shape[0] if len(shape) == dims + 2 else 1, tuple(shape[-dims:])))
    return found[0][0], found[0][1], found[1][1]


def _macs(layer: Layer, rank: int | None) -> int | None:
    """MACs of the conv row (``rank`` None) or of its separable form at ``rank``; None when shapes unknown."""
    grids = _grids(layer)
    if grids is None:
        return layer.macs if rank is None else None
    if rank is None:
        return costs.spec_macs(_conv(layer), *grids)
    return costs.separable_macs(_conv(layer), rank, *grids)


def _risk(energy_t1: float | None) -> str | None:
    if energy_t1 is None:
        return None
    return next((word for floor, word in RISK_THRESHOLDS if energy_t1 >= floor), "high")


def _layer_spectrum(layer: Layer, handle: ModelHandle | None, fold_bn: bool) -> Spectrum | None:
    """Spectrum of the stored (or BN-folded) kernel; None without constant weights."""
    weights = handle.conv_weights(layer.name) if handle is not None and layer.weight_constant else None
    if weights is None:
        return None
    spec = _conv(layer)
    kernel = weights.weight
    if fold_bn and layer.bn_follows and weights.bn is not None:
        kernel = fold_batchnorm(weights, spec.groups, spec.transposed)[0]
    return spectrum(kernel, spec.groups, spec.transposed)


def _structural_reason(spec: ConvSpec) -> str | None:
    if spec.kernel_elems == 1:
        return "1x1 kernel: nothing to separate"
    if spec.is_depthwise:
        return "already depthwise"
    return None


def _bn_folded(layer: Layer, fold_bn: bool) -> str | None:
    return layer.bn_follows if fold_bn else None


def _candidate(layer: Layer, found: Spectrum | None, options: CandidateOptions) -> Candidate:
    spec = _conv(layer)
    t_star = costs.break_even_rank(spec)
    bn = _bn_folded(layer, options.fold_bn)
    sep_spec = spec if bn is None else replace(spec, has_bias=True)  # a folded BN leaves a bias behind
    base = Candidate(name=layer.name, op=layer.op, params=costs.conv_params(spec), macs=_macs(layer, None),
                     params_separable=costs.separable_params(sep_spec, 1, options.depthwise_bias),
                     macs_separable=_macs(layer, 1), break_even=t_star, max_rank=costs.max_rank(spec),
                     bn_folded=bn)
    if not layer.weight_constant:
        return replace(base, convertible=False, reason=NOT_CONSTANT)
    if found is None:
        return replace(base, reason=NO_WEIGHTS)
    energy_t1 = found.energy(1)
    rank = found.rank_for_energy(options.energy)
    weighed = replace(base, energies=tuple(float(e) for e in found.energies()), energy_t1=energy_t1,
                      risk=_risk(energy_t1))
    if rank >= t_star:
        reason = f"T={rank} needed for {options.energy:.0%} energy is not below break-even T*={t_star:.3g}"
        return replace(weighed, reason=reason)
    return replace(weighed, rank=rank, params_at_rank=costs.separable_params(sep_spec, rank, options.depthwise_bias),
                   macs_at_rank=_macs(layer, rank), energy_at_rank=found.energy(rank))


def _assess(layer: Layer, handle: ModelHandle | None, options: CandidateOptions) -> _Assessment:
    """Classify one conv row; the SVD runs only for rows that can be factored."""
    spec = _conv(layer)
    structural = _structural_reason(spec)
    if structural is not None:
        return _Assessment(layer, None, Excluded(layer.name, structural), None, False)
    try:
        found = _layer_spectrum(layer, handle, options.fold_bn)
    except (NonFiniteWeights, ShapeError) as refused:  # checked before any SVD: never decomposed
        return _Assessment(layer, None, Excluded(layer.name, str(refused)), None, False)
    t_star = costs.break_even_rank(spec)
    if t_star <= 1.0:
        excluded = Excluded(layer.name, f"T=1 not below break-even T*={t_star:.3g}")
        return _Assessment(layer, None, excluded, found, layer.weight_constant)
    return _Assessment(layer, _candidate(layer, found, options), None, found, layer.weight_constant)


def find_candidates(report: Report, handle: ModelHandle | None, options: CandidateOptions) -> Report:
    """``report`` with its separable candidates (ranked by ``options.rank_by``) and every other conv row
    in ``excluded`` with a reason."""
    if not 0.0 <= options.energy <= 1.0:
        raise UsageError(f"--energy must be within [0, 1], got {options.energy}")
    assessed = _assess_all([layer for layer in report.layers if layer.conv is not None], handle, options)
    found = [_with_bn_params(a.candidate, report) for a in assessed if a.candidate is not None]
    candidates = sorted(found, key=_SORT_KEYS[RankBy(options.rank_by)])
    excluded = tuple(a.excluded for a in assessed if a.excluded is not None)
    return report.with_candidates(tuple(candidates), excluded, options.energy)


def _assess_all(layers: list[Layer], handle: ModelHandle | None, options: CandidateOptions) -> list[_Assessment]:
    """``_assess`` of every layer, in order; on threads when there are several cores (the spectra are numpy
    work that releases the GIL, one layer per task)."""
    workers = min(len(layers), usable_cores())
    if workers < 2:
        return [_assess(layer, handle, options) for layer in layers]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda layer: _assess(layer, handle, options), layers))


def _with_bn_params(candidate: Candidate, report: Report) -> Candidate:
    """A candidate whose following BatchNorm is folded replaces the conv and the BN: its ``params`` count
    both, as ``convert`` does, so the whole-model figures match what conversion gives."""
    if candidate.bn_folded is None:
        return candidate
    return replace(candidate, params=candidate.params + _bn_params(report, candidate.bn_folded))


def _bn_params(report: Report, bn: str | None) -> int:
    """Params of the BatchNorm row ``bn`` that folding removes (0 when none is folded)."""
    return report.layer(bn).params if bn else 0


def _planned(item: _Assessment, rank: int, report: Report, options: PlanOptions) -> PlannedLayer:
    """Costs and kept energy of one layer at ``rank``; a folded BN's own params leave with it."""
    layer, spec = item.layer, _conv(item.layer)
    bn = _bn_folded(layer, options.fold_bn)
    bn_params = _bn_params(report, bn)
    after_spec = spec if bn is None else replace(spec, has_bias=True)
    kept = item.spectrum if options.init == Init.SVD.value else None  # random init keeps no energy
    return PlannedLayer(
        name=layer.name, rank=rank,
        params_before=costs.conv_params(spec) + bn_params,
        params_after=costs.separable_params(after_spec, rank, options.depthwise_bias),
        macs_before=_macs(layer, None), macs_after=_macs(layer, rank),
        energy=kept.energy(rank) if kept is not None else None,
        weight_error=kept.relative_error(rank) if kept is not None else None,
        bn_folded=bn,
    )


def _plan_one(item: _Assessment, rule: RankRule, report: Report, options: PlanOptions) -> PlannedLayer | Excluded:
    """Rank and cost one selected conv, or the reason it is left alone."""
    layer = item.layer
    if not item.factorable:
        reason = item.excluded.reason if item.excluded else NOT_CONSTANT
        return Excluded(layer.name, reason)
    if item.excluded is not None and not options.full_rank:
        return Excluded(layer.name, item.excluded.reason)
    if item.spectrum is None and options.init == Init.SVD.value:
        return Excluded(layer.name, "no weights to decompose (use --init random)")
    try:
        chosen = choose_rank(rule, _conv(layer), item.spectrum)
    except RankRefused as refused:
        return Excluded(layer.name, str(refused))
    planned = _planned(item, chosen, report, options)
    saved = _saved_fraction(planned)
    if not options.full_rank and saved < options.min_saving:
        return Excluded(layer.name, f"saves {saved:.0%} of its MACs, below --min-saving {options.min_saving:.0%}")
    return planned


def _saved_fraction(p: PlannedLayer) -> float:
    """Fraction of the layer's MACs saved (params when MACs are unknown)."""
    if p.macs_before and p.macs_after is not None:
        return 1.0 - p.macs_after / p.macs_before
    return 1.0 - p.params_after / p.params_before if p.params_before else 0.0


def _check_plan_options(options: PlanOptions) -> Init:
    """UsageError for out-of-range selection options; the Init the options name."""
    if options.top is not None and options.top < 1:
        raise UsageError(f"--top must be at least 1, got {options.top}")
    if not 0.0 <= options.min_saving < 1.0:
        raise UsageError(f"--min-saving must be within [0, 1), got {options.min_saving:g}")
    if options.init not in {i.value for i in Init}:
        raise UsageError(f"--init must be one of {', '.join(i.value for i in Init)}, got {options.init!r}")
    return Init(options.init)


def make_plan(report: Report, handle: ModelHandle | None, options: PlanOptions) -> Plan:
    """The layers ``convert`` rewrites (model order) and a reason for every selected conv left alone.

    With no ``--select`` every conv row is selected, so non-candidates appear in ``skipped`` with their
    reason (``--rank full`` still converts convs excluded only for break-even). ``params_before`` of a layer
    whose BatchNorm is folded includes that BN row's params, which leave the model with it.
    """
    rule = rank_rule(options)
    init = _check_plan_options(options)
    rows, skipped = selected_rows(report, options)
    assess_options = CandidateOptions(energy=options.energy or DEFAULT_ENERGY, fold_bn=options.fold_bn,
                                      depthwise_bias=options.depthwise_bias)
    planned: list[PlannedLayer] = []
    for layer in rows:
        outcome = _plan_one(_assess(layer, handle, assess_options), rule, report, options)
        if isinstance(outcome, PlannedLayer):
            planned.append(outcome)
        else:
            skipped.append(outcome)
    planned, dropped = keep_top(planned, options.top)
    return Plan(layers=tuple(planned), skipped=tuple(skipped + dropped), init=init.value,
                depthwise_bias=options.depthwise_bias)
