"""The contracts every backend fulfils: load options, the loaded-model pair, the rewrite options and the
``Backend`` / ``Runner`` protocols.

Arrays crossing this boundary are numpy; inputs and outputs of a model are ``{name: ndarray}``. Weights
reach planners through ``core.weights.ModelHandle``, so records never hold a live model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sepconv_cli.core.plans import Plan
from sepconv_cli.core.records import Report, Shape
from sepconv_cli.core.weights import ModelHandle


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

    input_shapes: tuple[tuple[str | None, Shape], ...] = ()
    kwargs_json: str = ""
    arch: str | None = None
    trust_pickle: bool = False
    engine: str = "sepconv"
    device: str = "meta"
    dynamic_dims: bool = False


@dataclass(frozen=True)
class LoadedModel:
    """A report plus the backend object (``handle``) rewriters need; ``native`` is the live model
    (``onnx.ModelProto``, ``nn.Module``, ``ExportedProgram``) and never enters a record."""

    report: Report
    handle: ModelHandle
    native: Any = None


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
    progress: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

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
    ``folded_bn`` names the BatchNorm layers folded away; ``forms`` names the equivalent structure
    (``core.latency.Form`` value) each layer with rank T > 1 was given, when it is not the default."""

    native: Any
    plan: Plan
    folded_bn: tuple[str, ...] = ()
    forms: dict[str, str] = field(default_factory=dict)


Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class Backend(Protocol):
    """What `convert` needs from a backend. ``suffixes``: the output file suffixes ``save`` can write."""

    suffixes: tuple[str, ...]

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> Converted:
        """Build the converted model (pure with respect to ``loaded``: never mutates it)."""
        ...

    def source(self, loaded: LoadedModel) -> Any:
        """What ``runner`` should run for the loaded (original) model."""
        ...

    def output_source(self, converted: Converted, path: str) -> Any:
        """What ``runner`` should run for ``converted`` once written to ``path``."""
        ...

    def runner(self, model: Any, threads: int | None = None) -> Runner:
        """A reusable callable running ``model`` (the loaded native, a converted native or a written file
        the backend runs by path) on numpy inputs; ``threads``: runtime threads (None = default)."""
        ...

    def run(self, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``model`` once on numpy inputs (``runner(model)(inputs)``)."""
        ...

    def save(self, converted: Converted, path: str, input_shapes: dict | None = None) -> None:
        """Write ``converted`` to ``path`` (format chosen by suffix). The caller handles atomicity."""
        ...
