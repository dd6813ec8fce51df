"""Weight handles for PyTorch sources: conv row name -> numpy kernel, bias and the BatchNorm after it.

``ModuleHandle`` reads a live ``nn.Module`` (None on the meta device: there are no weights);
``GraphHandle`` reads an ``ExportedProgram``'s state dict by the parameter names its graph uses.
"""

from __future__ import annotations

import numpy as np
import torch

from sepconv_cli.backends.torch.runtime import BatchNormTensors, batchnorm_tensors, bn_params, to_numpy
from sepconv_cli.core.records import Report
from sepconv_cli.core.weights import BatchNormParams, ConvWeights


def _array(tensor: torch.Tensor | None) -> np.ndarray | None:
    """A detached numpy copy (None for None or meta tensors)."""
    return None if tensor is None or tensor.is_meta else to_numpy(tensor)


def _bn_params(name: str, tensors: BatchNormTensors | None) -> BatchNormParams | None:
    """Float64 statistics of a BatchNorm, or None when it has none to read (absent, or on meta)."""
    return bn_params(name, tensors) if tensors is not None and tensors.readable else None


class ModuleHandle:
    """Weights of conv rows of a live module; ``sources`` maps functional conv rows to parameter names."""

    def __init__(self, model: torch.nn.Module, report: Report, sources: dict[str, tuple]):
        self.model, self.report, self.sources = model, report, sources
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())

    def _tensors(self, name: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        module = self.modules.get(name)
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return module.weight, module.bias
        weight, bias = self.sources.get(name, (None, None))
        return self.params.get(weight), self.params.get(bias)

    def conv_weights(self, name: str) -> ConvWeights | None:
        """Kernel/bias as stored plus the following eval-mode BatchNorm; None on meta or non-constant."""
        try:
            layer = self.report.layer(name)
        except KeyError:
            return None
        weight, bias = self._tensors(name)
        if layer.conv is None or weight is None or weight.is_meta:
            return None
        bn = None
        if layer.bn_follows:
            bn = _bn_params(layer.bn_follows, batchnorm_tensors(self.modules.get(layer.bn_follows)))
        return ConvWeights(to_numpy(weight), _array(bias), bn)


class GraphHandle:
    """Weights of conv rows of an ``ExportedProgram``: row -> (weight fqn, bias fqn, bn (name, fqns, eps))."""

    def __init__(self, program, sources: dict[str, tuple]):
        self.state = {**program.state_dict, **getattr(program, "constants", {})}
        self.sources = sources

    def conv_weights(self, name: str) -> ConvWeights | None:
        """Kernel/bias from the program's state dict, with the BatchNorm the graph feeds them to."""
        if name not in self.sources:
            return None
        weight_fqn, bias_fqn, bn_info = self.sources[name]
        weight = self.state.get(weight_fqn) if weight_fqn else None
        if weight is None:
            return None  # the kernel is computed in the graph, not a constant
        bn = None
        if bn_info is not None:
            bn_name, fqns, eps = bn_info
            gamma, beta, mean, var = (self.state.get(f) if f else None for f in fqns)
            bn = _bn_params(bn_name, BatchNormTensors(mean, var, gamma, beta, eps))
        bias = self.state.get(bias_fqn) if bias_fqn else None
        return ConvWeights(_array(weight), _array(bias), bn)
