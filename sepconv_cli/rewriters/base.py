"""The contract every rewrite backend (ONNX, PyTorch) fulfils, and the options it takes.

Arrays crossing this boundary are numpy; inputs and outputs of a model are ``{name: ndarray}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np

from sepconv_cli.loaders.base import LoadedModel
from sepconv_cli.records import Plan


@dataclass(frozen=True)
class ConvertOptions:
    """How to build the separable layers.

    ``init``: ``"svd"`` (Network Decoupling, weights carried over) or ``"random"`` (fresh init, same
    structure). ``fold_bn``: fold an eval-mode BatchNorm that directly follows a conv before the SVD.
    ``depthwise_bias``: give the depthwise conv a (zero-initialised) bias too. ``seed``: for random init.
    """

    init: str = "svd"
    fold_bn: bool = True
    depthwise_bias: bool = False
    seed: int = 0


@dataclass
class Converted:
    """A converted model. ``native`` is backend-specific (``onnx.ModelProto``, ``nn.Module``,
    ``ExportedProgram``); ``plan`` is the plan as realised (energies and errors filled in);
    ``folded_bn`` names the BatchNorm layers folded away."""

    native: Any
    plan: Plan
    folded_bn: tuple[str, ...] = ()


class Backend(Protocol):
    """What `convert` needs from a backend."""

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> Converted:
        """Build the converted model (pure with respect to ``loaded``: never mutates it)."""
        ...

    def run(self, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``model`` (the loaded native or a converted native) on numpy inputs."""
        ...

    def save(self, converted: Converted, path: str, input_shapes: Optional[dict] = None) -> None:
        """Write ``converted`` to ``path`` (format chosen by suffix). The caller handles atomicity."""
        ...
