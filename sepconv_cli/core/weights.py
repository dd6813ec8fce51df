"""Weights crossing the backend boundary as numpy: a conv's kernel and bias, its BatchNorm, the handle protocol.

Arrays are numpy (float64 or the model dtype); shapes follow the framework layout
(Conv: ``(Cout, Cin/g, *k)``; ConvTranspose: ``(Cin, Cout/g, *k)``); BatchNorm arrays have length Cout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
    bias: np.ndarray | None = None
    bn: BatchNormParams | None = None


class ModelHandle(Protocol):
    """Access to a loaded model's weights for planners and rewriters."""

    def conv_weights(self, name: str) -> ConvWeights | None:
        """Weights of the conv row ``name``; None when the model has none (meta device) or they are
        not constants."""
        ...
