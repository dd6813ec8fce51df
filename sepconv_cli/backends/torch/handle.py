"""Weight handles for PyTorch sources: conv row name -> numpy kernel, bias and the BatchNorm after it.

``ModuleHandle`` reads a live ``nn.Module`` (None on the meta device: there are no weights);
``GraphHandle`` reads an ``ExportedProgram``'s state dict by the parameter names its graph uses.
"""

from __future__ import annotations

import numpy as np
import torch

from sepconv_cli.core.records import Report
from sepconv_cli.core.weights import BatchNormParams, ConvWeights


def to_numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    """A detached numpy copy (None for None or meta tensors)."""
    if tensor is None or tensor.is_meta:
        return None
    return tensor.detach().cpu().float().numpy().copy() if tensor.dtype == torch.bfloat16 else \
        tensor.detach().cpu().numpy().copy()


def _bn_params(name: str, tensors: tuple, eps: float) -> BatchNormParams | None:
    arrays = [to_numpy(t) for t in tensors]
    if any(a is None for a in arrays[2:]):
        return None
    channels = arrays[2].shape[0]
    gamma = arrays[0] if arrays[0] is not None else np.ones(channels, arrays[2].dtype)
    beta = arrays[1] if arrays[1] is not None else np.zeros(channels, arrays[2].dtype)
    return BatchNormParams(name, gamma, beta, arrays[2], arrays[3], float(eps))


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
        module = self.modules.get(layer.bn_follows or "")
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            bn = _bn_params(layer.bn_follows, (module.weight, module.bias, module.running_mean,
                                               module.running_var), module.eps)
        return ConvWeights(to_numpy(weight), to_numpy(bias), bn)


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
            bn = _bn_params(bn_name, tuple(self.state.get(f) if f else None for f in fqns), eps)
        bias = self.state.get(bias_fqn) if bias_fqn else None
        return ConvWeights(to_numpy(weight), to_numpy(bias), bn)
