"""Types every loader shares: load options, the weights handle protocol, and the loaded-model pair.

A handle is how planners and rewriters reach weights without records ever holding a live model.
Arrays are numpy (float64 or the model dtype); shapes follow the framework layout
(Conv: ``(Cout, Cin/g, *k)``; ConvTranspose: ``(Cin, Cout/g, *k)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np

from sepconv_cli.records import Report, Shape


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model.

    ``input_shapes``: (input name or None for "the only input", shape) pairs from ``--input-shape``.
    ``kwargs_json``: JSON object passed to an entry-point factory. ``arch``: entry point building the
    module a state_dict belongs to. ``trust_pickle``: allow unpickling (runs arbitrary code).
    ``engine``: PyTorch counting engine (``"sepconv"`` or ``"fvcore"``). ``device``: where entry points
    are built (``"meta"`` allocates no weight memory; ``"cpu"``). ``dynamic_dims``: a PyTorch model accepts
    symbolic dims in ``input_shapes`` (counted at size 1; ``convert`` exports them as dynamic dims); otherwise
    they are a usage error, since a live module runs at concrete sizes.
    """

    input_shapes: tuple[tuple[Optional[str], Shape], ...] = ()
    kwargs_json: str = ""
    arch: Optional[str] = None
    trust_pickle: bool = False
    engine: str = "sepconv"
    device: str = "meta"
    dynamic_dims: bool = False


@dataclass(frozen=True)
class BatchNormParams:
    """An eval-mode BatchNorm's per-channel arrays (length Cout) and epsilon; ``name`` is its layer name."""

    name: str
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float


@dataclass(frozen=True)
class ConvWeights:
    """A convolution's kernel and bias as stored, plus the BatchNorm that directly follows it (if any)."""

    weight: np.ndarray
    bias: Optional[np.ndarray] = None
    bn: Optional[BatchNormParams] = None


class ModelHandle(Protocol):
    """Access to a loaded model's weights for planners and rewriters."""

    def conv_weights(self, name: str) -> Optional[ConvWeights]:
        """Weights of the conv row ``name``; None when the model has none (meta device) or they are
        not constants."""
        ...


@dataclass(frozen=True)
class LoadedModel:
    """A report plus the backend object (``handle``) rewriters need; ``native`` is the live model
    (``onnx.ModelProto``, ``nn.Module``, ``ExportedProgram``) and never enters a record."""

    report: Report
    handle: ModelHandle
    native: Any = None
