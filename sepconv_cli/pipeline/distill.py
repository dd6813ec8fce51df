"""``--distill-steps N``: label-free distillation after calibration, as one step of the `convert` pipeline.

``DistillingHook`` wraps the calibration hook: it calibrates, then fine-tunes the converted model toward the
original's outputs on the same unlabeled inputs (calibration's fit/held-back split), keeping the result
only when the held-back error drops. The trainer comes from ``DISTILLERS`` by source format (a PyTorch
module is needed; ONNX and ``.pt2`` sources are refused with the route that works).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sepconv_cli.backends.base import Backend, Converted, LoadedModel
from sepconv_cli.errors import UsageError
from sepconv_cli.lazy import resolve
from sepconv_cli.pipeline.calibrate import CalibrationHook

# source format -> "module:function" (original module, converted module, inputs, steps, options) -> report
DISTILLERS: dict[str, str] = {
    "state_dict": "sepconv_cli.backends.torch.distill:distill",
    "pickle": "sepconv_cli.backends.torch.distill:distill",
    "entrypoint": "sepconv_cli.backends.torch.distill:distill",
    "onnx": "sepconv_cli.backends.torch.from_onnx:distill_onnx",
}

REFUSAL = ("--distill-steps trains a PyTorch module or a torch rebuild of an ONNX graph: convert the model's "
           "source (a state_dict with --arch, or package.module:factory) instead of {fmt!r}")


def check_distillable(fmt: str) -> None:
    """UsageError when models of format ``fmt`` cannot be distilled."""
    if fmt not in DISTILLERS:
        raise UsageError(REFUSAL.format(fmt=fmt))


@dataclass
class DistillingHook:
    """Calibrate with ``calibration``, then distill for ``steps`` steps; ``distillation`` holds the
    trainer's report after a run (the calibration's ``report`` and ``notes`` pass through)."""

    calibration: CalibrationHook
    steps: int
    threads: int = 1
    distillation: Any = None
    extra_notes: list = field(default_factory=list)

    @property
    def report(self) -> Any:
        """The calibration report."""
        return self.calibration.report

    @property
    def notes(self) -> list:
        """Notes of calibration, then of distillation."""
        return list(self.calibration.notes) + self.extra_notes

    @property
    def path(self) -> str:
        """The calibration inputs' path."""
        return self.calibration.path

    @property
    def options(self) -> Any:
        """The calibration options (samples, hold-out share, seed)."""
        return self.calibration.options

    def __call__(self, loaded: LoadedModel, converted: Converted, backend: Backend) -> Converted:
        fmt = loaded.report.model.format
        check_distillable(fmt)
        refit = self.calibration(loaded, converted, backend)
        from sepconv_cli.backends.torch.distill import DistillOptions
        from sepconv_cli.pipeline.verify import output_error

        options = DistillOptions(holdout=self.calibration.options.holdout, seed=self.calibration.options.seed,
                                 threads=self.threads, error=output_error)
        self.distillation = resolve(DISTILLERS[fmt])(backend.source(loaded), refit.native, self.calibration.inputs,
                                                     self.steps, options)
        return refit

    def verification_feed(self) -> tuple[dict, str, str]:
        """The calibration's held-back inputs."""
        return self.calibration.verification_feed()
