"""The contract every rewrite backend (ONNX, PyTorch) fulfils, and the options it takes.

Arrays crossing this boundary are numpy; inputs and outputs of a model are ``{name: ndarray}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import numpy as np

from sepconv_cli.loaders.base import LoadedModel
from sepconv_cli.records import Plan


@dataclass(frozen=True)
class ConvertOptions:
    """How to build the separable layers.

    ``init``: ``"svd"`` (Network Decoupling, weights carried over) or ``"random"`` (fresh init, same
    structure). ``fold_bn``: fold an eval-mode BatchNorm that directly follows a conv before the SVD.
    ``depthwise_bias``: give the depthwise conv a (zero-initialised) bias too. ``seed``: for random init.
    ``progress(layer_name)``: called after each planned layer is rewritten (not an option of the result,
    so it is left out of comparisons and of ``record()``).
    """

    init: str = "svd"
    fold_bn: bool = True
    depthwise_bias: bool = False
    seed: int = 0
    progress: Optional[Callable[[str], None]] = field(default=None, compare=False, repr=False)

    def record(self) -> dict:
        """The options as plain JSON values (for the manifest)."""
        return {"init": self.init, "fold_bn": self.fold_bn, "depthwise_bias": self.depthwise_bias,
                "seed": self.seed}

    def layer_done(self, name: str) -> None:
        """Report that layer ``name`` has been rewritten (no-op without ``progress``)."""
        if self.progress is not None:
            self.progress(name)


@dataclass
class Converted:
    """A converted model. ``native`` is backend-specific (``onnx.ModelProto``, ``nn.Module``,
    ``ExportedProgram``); ``plan`` is the plan as realised (energies and errors filled in);
    ``folded_bn`` names the BatchNorm layers folded away."""

    native: Any
    plan: Plan
    folded_bn: tuple[str, ...] = ()


Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class Backend(Protocol):
    """What `convert` needs from a backend. ``suffixes``: the output file suffixes ``save`` can write."""

    suffixes: tuple[str, ...]

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> Converted:
        """Build the converted model (pure with respect to ``loaded``: never mutates it)."""
        ...

    def runner(self, model: Any, threads: Optional[int] = None) -> Runner:
        """A reusable callable running ``model`` (the loaded native, a converted native or a written file
        the backend runs by path) on numpy inputs; ``threads``: runtime threads (None = default)."""
        ...

    def run(self, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``model`` once on numpy inputs (``runner(model)(inputs)``)."""
        ...

    def save(self, converted: Converted, path: str, input_shapes: Optional[dict] = None) -> None:
        """Write ``converted`` to ``path`` (format chosen by suffix). The caller handles atomicity."""
        ...
