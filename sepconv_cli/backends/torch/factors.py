"""One planned layer of a torch model: read its weights, build its factors, fill its separable modules.

Both torch rewrite routes (module swap in ``rewriter``, graph rewrite in ``pt2``) build a
:class:`LayerJob` per planned layer, turn it into a :class:`LayerResult` with :func:`realise` (BatchNorm
folded, factors in float64 by ``decompose``), and write the factors back in the model dtype. torch is
imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sepconv_cli.backends.base import ConvertOptions
from sepconv_cli.backends.torch.modules import get_module, spec_of
from sepconv_cli.backends.torch.runtime import batchnorm_params, float64_of
from sepconv_cli.core import costs, decompose
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.core.records import ConvSpec
from sepconv_cli.core.weights import ConvWeights
from sepconv_cli.errors import RewriteError, UsageError
from sepconv_cli.planner import Init


@dataclass(frozen=True)
class LayerJob:
    """Everything one replacement needs: the planned layer, its geometry, its weights (with the BN to
    fold, if any) and the seed for ``--init random``."""

    planned: PlannedLayer
    spec: ConvSpec
    weights: ConvWeights
    seed: int


@dataclass(frozen=True)
class LayerResult:
    """Float64 factors and pointwise bias of one replacement, and the planned layer as realised."""

    factors: decompose.Factors
    bias: np.ndarray | None
    planned: PlannedLayer


def _svd_init(job: LayerJob, weight: np.ndarray, bias: np.ndarray | None) -> LayerResult:
    spec, rank = job.spec, job.planned.rank
    factors = decompose.decompose(weight, spec.groups, rank, spec.transposed)
    spec_values = decompose.spectrum(weight, spec.groups, spec.transposed)
    planned = replace(job.planned, energy=spec_values.energy(rank), weight_error=spec_values.relative_error(rank))
    return LayerResult(factors, bias, planned)


def _random_init(job: LayerJob, weight: np.ndarray, bias: np.ndarray | None) -> LayerResult:
    # A fresh start for retraining: new kernels, and a zero bias where the structure has one.
    factors = decompose.random_factors(job.spec, job.planned.rank, job.seed)
    fresh_bias = None if bias is None else np.zeros_like(bias)
    return LayerResult(factors, fresh_bias, replace(job.planned, energy=None, weight_error=None))


INITS: dict[str, Callable[[LayerJob, np.ndarray, np.ndarray | None], LayerResult]] = {
    Init.SVD.value: _svd_init,
    Init.RANDOM.value: _random_init,
}


def realise(job: LayerJob, init: str) -> LayerResult:
    """Fold the BN (if any) and build the factors of one layer at its planned rank, in float64."""
    if init not in INITS:
        raise UsageError(f"unknown --init {init!r}; choose one of {', '.join(INITS)}")
    spec = job.spec
    top = costs.max_rank(spec)
    if not 1 <= job.planned.rank <= top:
        raise RewriteError(f"layer {job.planned.name!r}: rank {job.planned.rank} is outside 1..{top} "
                           "(min(Cout/groups, kernel elements))")
    weight, bias = decompose.fold_batchnorm(job.weights, spec.groups, spec.transposed)
    return INITS[init](job, weight, bias)


def module_job(model: Any, planned: PlannedLayer, options: ConvertOptions, seed: int) -> tuple[LayerJob, Any]:
    """The job for the conv module of ``planned`` in ``model`` (with the BatchNorm to fold), and the conv."""
    conv = get_module(model, planned.name)
    spec = spec_of(conv)  # refuses a module that is not a convolution
    bn_name = planned.bn_folded if options.fold_bn else None
    bn = batchnorm_params(get_module(model, bn_name, "BatchNorm"), bn_name) if bn_name else None
    bias = None if conv.bias is None else float64_of(conv.bias, planned.name)
    weights = ConvWeights(weight=float64_of(conv.weight, planned.name), bias=bias, bn=bn)
    return LayerJob(replace(planned, bn_folded=bn_name), spec, weights, seed), conv


def fill_separable(sep: Any, result: LayerResult) -> None:
    """Copy float64 factors (and bias) into a SeparableConv, casting to its dtype; zero depthwise bias."""
    import torch

    with torch.no_grad():
        sep.depthwise.weight.copy_(torch.from_numpy(result.factors.depthwise))
        sep.pointwise.weight.copy_(torch.from_numpy(result.factors.pointwise))
        if sep.depthwise.bias is not None:
            sep.depthwise.bias.zero_()
        if result.bias is not None:
            sep.pointwise.bias.copy_(torch.from_numpy(result.bias))


def param_count(module: Any) -> int:
    """Trainable weight elements of a module (each shared tensor once)."""
    return sum(p.numel() for p in module.parameters())


def realised_plan(plan: Plan, layers: list[PlannedLayer], options: ConvertOptions) -> Plan:
    """``plan`` with each layer as built (energy, error, actual params after, folded BN)."""
    return replace(plan, layers=tuple(layers), init=options.init, depthwise_bias=options.depthwise_bias)


__all__ = ["INITS", "LayerJob", "LayerResult", "fill_separable", "module_job", "param_count", "realise",
           "realised_plan"]
