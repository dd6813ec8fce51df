"""The numpy side of torch: run a model on numpy inputs, read tensors as numpy, keep torch quiet.

Every tensor that leaves the torch backend goes through :func:`to_numpy` (a detached CPU copy; bfloat16
widened to float32, which numpy lacks) or :func:`float64_of` (the float64 values the SVD and the BatchNorm
folding work on; meta tensors refused). :func:`batchnorm_params` and :func:`bn_params` are the one reading
of a BatchNorm's eval-mode statistics, for analysis, rewrite and calibration alike. torch is imported
inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sepconv_cli.core.weights import BatchNormParams
from sepconv_cli.errors import RewriteError


@contextlib.contextmanager
def logger_level(name: str, level: int) -> Iterator[None]:
    """Raise the logger ``name`` to ``level`` for the duration of the block, then restore it."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence torch's export warnings and log lines (optional torchvision ops, deprecations): the CLI
    owns stderr, and these say nothing about the user's model."""
    with logger_level("torch", logging.ERROR), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def quiet_fake_logs() -> contextlib.AbstractContextManager[None]:
    """Silence the fake-tensor logger: a shape error is reported once, as one line, by the caller."""
    return logger_level("torch._subclasses.fake_tensor", logging.CRITICAL)


def to_numpy(tensor: Any) -> np.ndarray:
    """A detached CPU numpy copy of ``tensor`` in its own dtype (bfloat16 widened to float32)."""
    import torch

    data = tensor.detach().cpu()
    if data.dtype == torch.bfloat16:
        data = data.float()
    return np.array(data.numpy(), copy=True)


def float64_of(tensor: Any, what: str) -> np.ndarray:
    """A float64 numpy copy of ``tensor`` (RewriteError for meta tensors, which hold no values)."""
    if tensor.device.type == "meta":
        raise RewriteError(f"{what} has no values (meta device): load the model with real weights to convert it")
    return to_numpy(tensor).astype(np.float64, copy=False)


@dataclass(frozen=True)
class BatchNormTensors:
    """A BatchNorm's tensors as torch holds them (``gamma``/``beta`` None when it is not affine)."""

    mean: Any
    var: Any
    gamma: Any = None
    beta: Any = None
    eps: float = 1e-5

    @property
    def readable(self) -> bool:
        """Whether the running statistics exist and hold values (not on the meta device)."""
        return all(t is not None and t.device.type != "meta" for t in (self.mean, self.var))


def bn_params(name: str, tensors: BatchNormTensors) -> BatchNormParams:
    """Float64 BatchNormParams for ``decompose.fold_batchnorm`` (identity affine when not affine)."""
    mean, var = float64_of(tensors.mean, name), float64_of(tensors.var, name)
    gamma = np.ones_like(mean) if tensors.gamma is None else float64_of(tensors.gamma, name)
    beta = np.zeros_like(mean) if tensors.beta is None else float64_of(tensors.beta, name)
    return BatchNormParams(name=name, gamma=gamma, beta=beta, mean=mean, var=var, eps=float(tensors.eps))


def batchnorm_tensors(module: Any) -> BatchNormTensors | None:
    """The tensors of a torch BatchNorm module with running statistics; None for anything else."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if not isinstance(module, _BatchNorm) or module.running_mean is None:
        return None
    return BatchNormTensors(module.running_mean, module.running_var, module.weight, module.bias, module.eps)


def batchnorm_params(module: Any, name: str) -> BatchNormParams:
    """The eval-mode statistics of a torch BatchNorm module (RewriteError when it has none)."""
    tensors = batchnorm_tensors(module)
    if tensors is None:
        raise RewriteError(f"{name!r} is not a BatchNorm with running statistics: it cannot be folded")
    return bn_params(name, tensors)


def output_names(count: int) -> list[str]:
    """Output names used by ``run_native`` and the exports: ``output`` alone, else ``output_<i>``."""
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
    arrays = [to_numpy(t) for t in tree_leaves(result) if isinstance(t, torch.Tensor)]
    return dict(zip(output_names(len(arrays)), arrays))


__all__ = ["BatchNormTensors", "batchnorm_params", "batchnorm_tensors", "bn_params", "float64_of", "logger_level",
           "output_names", "quiet", "quiet_fake_logs", "run_native", "to_numpy"]
