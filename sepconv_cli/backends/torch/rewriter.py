"""PyTorch rewrite backends: swap planned convolutions for depthwise + pointwise pairs.

``MODULE_BACKEND`` serves ``nn.Module`` sources (entry point, trusted pickle, state_dict + arch): it
deep-copies the loaded module and puts a :class:`~sepconv_cli.backends.torch.modules.SeparableConv` at
each planned conv's qualified name (a folded BatchNorm becomes ``nn.Identity``). ``PT2_BACKEND`` serves
``.pt2`` sources by rewriting the exported graph (see ``pt2``). Both build each layer's factors with
``factors`` (float64, cast to the model dtype), run models with ``runtime`` and save with ``export``.
torch is imported only inside functions, so the registry can name these backends for free.

TorchScript sources are refused (``registry.REFUSED``): a scripted graph has no module tree to swap
and no supported graph-rewrite API; the message names the supported route (export the model with
``torch.onnx.export`` or ``torch.export`` and convert that file).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np

from sepconv_cli.backends.base import Converted, ConvertOptions, LoadedModel, Runner
from sepconv_cli.backends.torch.export import SAVERS, save_native
from sepconv_cli.backends.torch.factors import fill_separable, module_job, param_count, realise, realised_plan
from sepconv_cli.backends.torch.modules import SeparableShape, build_separable, set_module
from sepconv_cli.backends.torch.pt2 import rewrite_program
from sepconv_cli.backends.torch.runtime import run_native
from sepconv_cli.core.plans import Plan


class ModuleBackend:
    """Backend for ``nn.Module`` sources: module swap on a deep copy. ``suffixes`` are the formats
    ``export.SAVERS`` writes."""

    suffixes = tuple(SAVERS)

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> Converted:
        """Deep-copy ``loaded.native`` and swap every planned conv (the loaded model is never mutated)."""
        model = copy.deepcopy(loaded.native)
        layers, folded = [], []
        for index, planned in enumerate(plan.layers):
            job, conv = module_job(model, planned, options, options.seed + index)
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

    def source(self, loaded: LoadedModel) -> Any:
        """The live module (or program) the loader built."""
        return loaded.native

    def output_source(self, converted: Converted, path: str) -> Any:
        """The converted module in memory (a state_dict file cannot run by itself)."""
        return converted.native

    def runner(self, model: Any, threads: int | None = None) -> Runner:
        """A callable running a module or ExportedProgram on numpy inputs (see ``runtime.run_native``);
        ``threads`` is accepted for the protocol and left to torch's own setting."""
        return lambda inputs: run_native(model, inputs)

    def run(self, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a module or ExportedProgram once on numpy inputs (see ``runtime.run_native``)."""
        return run_native(model, inputs)

    def save(self, converted: Converted, path: str, input_shapes: dict | None = None) -> None:
        """Write by suffix (``.pt2``, ``.onnx``, ``.pt``/``.pth``): see ``export``."""
        save_native(converted.native, path, input_shapes)


class Pt2Backend(ModuleBackend):
    """Backend for ``.pt2`` sources: graph rewrite of the ExportedProgram, then a fresh export."""

    def rewrite(self, loaded: LoadedModel, plan: Plan, options: ConvertOptions) -> Converted:
        """Rewrite the exported graph (the loaded program is never mutated); the graph is rewritten in one
        pass, so ``options.progress`` hears of every layer at its end."""
        converted = rewrite_program(loaded.native, plan, options)
        for planned in converted.plan.layers:
            options.layer_done(planned.name)
        return converted


def _identity() -> Any:
    from torch import nn

    return nn.Identity()


MODULE_BACKEND = ModuleBackend()
PT2_BACKEND = Pt2Backend()

__all__ = ["MODULE_BACKEND", "PT2_BACKEND", "ModuleBackend", "Pt2Backend"]
