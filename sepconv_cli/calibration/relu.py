"""Fit a layer to its output after the ReLU that follows it (pure numpy).

When only ``relu(Y)`` is ever read, an output that is negative in the original only has to stay
non-positive. Per pass over the data the loss ``||relu(Y) - relu(Z P)||^2`` is majorised by a least-squares
problem with clipped targets: ``T = Y`` where ``Y > 0``, else ``min(Z P, 0)`` (rows where both are
non-positive pull nowhere; a prediction that turned positive is pulled back to 0). Its solution needs only
``Z^T Z`` (unchanged while the depthwise factor is fixed) and ``Z^T T``, which ``ReluPass`` accumulates
while it also measures the post-ReLU error of the current coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sepconv_cli.calibration.moments import single_threaded_blas
from sepconv_cli.calibration.solve import NormalEquations


def _blocks(a: np.ndarray, groups: int) -> np.ndarray:
    return np.asarray(a).reshape(a.shape[0], groups, a.shape[1] // groups, -1)


@dataclass
class ReluPass:
    """One pass with coefficients ``p`` ``(g, D + 1, C)``: post-ReLU squared error and reference norm on fit
    and held-back rows (index ``held``), and ``Z^T T`` / ``sum T`` of the clipped targets on fit rows."""

    p: np.ndarray
    sse: list[float] = field(default_factory=lambda: [0.0, 0.0])
    ref: list[float] = field(default_factory=lambda: [0.0, 0.0])
    zt: np.ndarray | None = None
    tsum: np.ndarray | None = None

    def add(self, z: np.ndarray, y: np.ndarray, held: bool) -> None:
        """One chunk: ``z`` (N, g*D, ...) depthwise output, ``y`` (N, g*C, ...) pre-ReLU target."""
        g = self.p.shape[0]
        w, b = self.p[:, :-1, :].transpose(0, 2, 1), self.p[:, -1, :]
        with single_threaded_blas():
            for zs, ys in zip(_blocks(z, g), _blocks(y, g)):  # one sample at a time: (g, D, P), (g, C, P)
                z64, y64 = zs.astype(np.float64), ys.astype(np.float64)
                pred = w @ z64 + b[:, :, None]
                target = np.maximum(y64, 0.0)
                self.sse[held] += float(np.sum((target - np.maximum(pred, 0.0)) ** 2))
                self.ref[held] += float(np.sum(target ** 2))
                if not held:
                    clipped = np.where(y64 > 0, y64, np.minimum(pred, 0.0))
                    part = z64 @ clipped.transpose(0, 2, 1)
                    self.zt = part if self.zt is None else self.zt + part
                    sums = clipped.sum(axis=2)
                    self.tsum = sums if self.tsum is None else self.tsum + sums

    def error(self, held: bool) -> float:
        """Relative post-ReLU error ``||relu(Y) - relu(Z P)|| / ||relu(Y)||`` on fit or held-back rows."""
        return float(np.sqrt(self.sse[held] / self.ref[held])) if self.ref[held] > 0 else float(np.sqrt(self.sse[held]))

    def next_coefficients(self, fit: NormalEquations, ridge: float) -> np.ndarray:
        """The least-squares coefficients for the clipped targets (``fit`` gives ``Z^T Z``)."""
        if self.zt is None or self.tsum is None:
            return self.p
        step = NormalEquations(fit.groups, fit.inputs, fit.outputs)
        step.zz, step.rows = fit.zz, fit.rows
        step.zy = np.concatenate([self.zt, self.tsum[:, None, :]], axis=1)
        return step.solve(ridge)
