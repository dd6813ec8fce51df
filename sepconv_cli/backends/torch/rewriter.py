"""PyTorch rewrite backends: swap planned convolutions for depthwise + pointwise pairs.

``MODULE_BACKEND`` serves ``nn.Module`` sources (entry point, trusted pickle, state_dict + arch): it
deep-copies the loaded module and puts a :class:`~sepconv_cli.backends.torch.modules.SeparableConv` at
each planned conv's qualified name (a folded BatchNorm becomes ``nn.Identity``). ``PT2_BACKEND`` serves
``.pt2`` sources by rewriting the exported graph (see ``torch_pt2``). Both compute the factors here, in
float64 (``decompose``), and cast them to the model dtype. torch is imported only by this backend.

TorchScript sources are refused (``rewriters.REFUSED``): a scripted graph has no module tree to swap
and no supported graph-rewrite API; the message names the supported route (export the model with
``torch.onnx.export`` or ``torch.export`` and convert that file).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sepconv_cli.backends.base import Converted, ConvertOptions, LoadedModel, Runner
from sepconv_cli.backends.torch.modules import (
    SeparableShape,
    build_separable,
    get_module,
    set_module,
    spec_of,
)
from sepconv_cli.core import decompose
from sepconv_cli.core.records import ConvSpec, Plan, PlannedLayer
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
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
    max_rank = min(spec.out_channels // spec.groups, spec.kernel_elems)
    if not 1 <= job.planned.rank <= max_rank:
        raise RewriteError(f"layer {job.planned.name!r}: rank {job.planned.rank} is outside 1..{max_rank} "
                           "(min(Cout/groups, kernel elements))")
    weight, bias = decompose.fold_batchnorm(job.weights, spec.groups, spec.transposed)
    return INITS[init](job, weight, bias)


def to_numpy(tensor: Any, what: str) -> np.ndarray:
    """A float64 numpy copy of a torch tensor (RewriteError for meta tensors, which hold no values)."""
    import torch

    if tensor.device.type == "meta":
        raise RewriteError(f"{what} has no values (meta device): load the model with real weights to convert it")
    return tensor.detach().to("cpu", torch.float64).numpy()


@dataclass(frozen=True)
class BatchNormTensors:
    """A BatchNorm's tensors as torch holds them (``gamma``/``beta`` None when it is not affine)."""

    mean: Any
    var: Any
    gamma: Any = None
    beta: Any = None
    eps: float = 1e-5


def bn_params(name: str, tensors: BatchNormTensors) -> BatchNormParams:
    """Float64 BatchNormParams for ``decompose.fold_batchnorm`` (identity affine when not affine)."""
    import torch

    gamma = tensors.gamma if tensors.gamma is not None else torch.ones_like(tensors.mean)
    beta = tensors.beta if tensors.beta is not None else torch.zeros_like(tensors.mean)
    return BatchNormParams(name=name, gamma=to_numpy(gamma, name), beta=to_numpy(beta, name),
                           mean=to_numpy(tensors.mean, name), var=to_numpy(tensors.var, name), eps=float(tensors.eps))


def batchnorm_params(bn: Any, name: str) -> BatchNormParams:
    """The eval-mode statistics of a torch BatchNorm module (RewriteError when it has none)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if not isinstance(bn, _BatchNorm) or bn.running_mean is None:
        raise RewriteError(f"{name!r} is not a BatchNorm with running statistics: it cannot be folded")
    return bn_params(name, BatchNormTensors(bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps))


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


def _module_job(model: Any, planned: PlannedLayer, options: ConvertOptions, seed: int) -> tuple[LayerJob, Any]:
    conv = get_module(model, planned.name)
    spec = spec_of(conv)
    bn_name = planned.bn_folded if options.fold_bn else None
    bn = batchnorm_params(get_module(model, bn_name, "BatchNorm"), bn_name) if bn_name else None
    bias = None if conv.bias is None else to_numpy(conv.bias, planned.name)
    weights = ConvWeights(weight=to_numpy(conv.weight, planned.name), bias=bias, bn=bn)
    return LayerJob(replace(planned, bn_folded=bn_name), spec, weights, seed), conv


class ModuleBackend:
    """Backend for ``nn.Module`` sources: module swap on a deep copy. ``suffixes`` are the formats
    ``torch_export.SAVERS`` writes (not imported from there: it imports this module)."""

    suffixes = (".pt2", ".onnx", ".pt", ".pth")

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> Converted:
        """Deep-copy ``loaded.native`` and swap every planned conv (the loaded model is never mutated)."""
        model = copy.deepcopy(loaded.native)
        layers, folded = [], []
        for index, planned in enumerate(plan.layers):
            job, conv = _module_job(model, planned, options, options.seed + index)
            result = realise(job, options.init)
            shape = SeparableShape(rank=planned.rank, pointwise_bias=result.bias is not None,
                                   depthwise_bias=options.depthwise_bias)
            sep = build_separable(conv, shape)
            fill_separable(sep, result)
            model = set_module(model, planned.name, sep)
            if job.planned.bn_folded:
                model = set_module(model, job.planned.bn_folded, _identity())
                folded.append(job.planned.bn_folded)
            layers.append(replace(result.planned, params_after=param_count(sep)))
            options.layer_done(planned.name)
        model.eval()
        return Converted(native=model, plan=realised_plan(plan, layers, options), folded_bn=tuple(folded))

    def runner(self, model: Any, threads: int | None = None) -> Runner:
        """A callable running a module or ExportedProgram on numpy inputs (see :func:`run_native`);
        ``threads`` is accepted for the protocol and left to torch's own setting."""
        return lambda inputs: run_native(model, inputs)

    def run(self, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a module or ExportedProgram once on numpy inputs (see :func:`run_native`)."""
        return run_native(model, inputs)

    def save(self, converted: Converted, path: str, input_shapes: dict | None = None) -> None:
        """Write by suffix (``.pt2``, ``.onnx``, ``.pt``/``.pth``): see ``torch_export``."""
        from sepconv_cli.backends.torch.export import save_native

        save_native(converted.native, path, input_shapes)


class Pt2Backend(ModuleBackend):
    """Backend for ``.pt2`` sources: graph rewrite of the ExportedProgram, then a fresh export."""

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> Converted:
        """Rewrite the exported graph (the loaded program is never mutated); the graph is rewritten in one
        pass, so ``options.progress`` hears of every layer at its end."""
        from sepconv_cli.backends.torch.pt2 import rewrite_program

        converted = rewrite_program(loaded.native, plan, options)
        for planned in converted.plan.layers:
            options.layer_done(planned.name)
        return converted


def _identity() -> Any:
    from torch import nn

    return nn.Identity()


@contextlib.contextmanager
def quiet():
    """Silence torch's export warnings and log lines (optional torchvision ops, deprecations): the CLI
    owns stderr, and these say nothing about the user's model."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def output_names(count: int) -> list[str]:
    """Output names used by ``run`` and the exports: ``output`` alone, else ``output_<i>``."""
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def run_native(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a module / ExportedProgram under ``torch.no_grad`` on numpy inputs (passed positionally in
    dict order); returns numpy outputs keyed ``output`` or ``output_<i>`` (flattened output pytree)."""
    import torch
    from torch.utils._pytree import tree_leaves

    with quiet():
        module = model.module() if isinstance(model, torch.export.ExportedProgram) else model
    args = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs.values()]
    with torch.no_grad():
        result = module(*args)
    tensors = [t for t in tree_leaves(result) if isinstance(t, torch.Tensor)]
    arrays = [t.detach().cpu().numpy() if t.dtype != torch.bfloat16 else t.detach().float().cpu().numpy()
              for t in tensors]
    return dict(zip(output_names(len(arrays)), arrays))


MODULE_BACKEND = ModuleBackend()
PT2_BACKEND = Pt2Backend()

__all__ = ["INITS", "MODULE_BACKEND", "PT2_BACKEND", "LayerJob", "LayerResult", "ModuleBackend", "Pt2Backend",
           "BatchNormTensors", "batchnorm_params", "bn_params", "fill_separable", "output_names", "param_count", "quiet",
           "realise", "run_native",
           "to_numpy"]
