"""What calibration did to each converted layer: fit and held-back errors before and after, and the
refinements kept or skipped. Plain data; errors are relative (``||Y - Y_hat|| / ||Y||``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CalibratedLayer:
    """The calibrated refit of one converted layer's pointwise factor (weights and bias).

    Errors are relative L2 errors ``||Y - Y_hat|| / ||Y||`` of the layer's output (dimensionless) against
    the original layer's output (BN-folded original when a BN was folded): ``fit_*`` on the samples the
    fit used, ``holdout_*`` on held-back calibration samples (None when none were held back);
    ``*_before`` with the SVD weights, ``*_after`` with the weights kept. ``rows`` are the equations
    (samples x output positions) and ``unknowns`` the solved coefficients per pointwise group.
    ``fell_back`` says why the SVD weights were kept ("" when the refit was accepted); ``note`` explains a
    rank choice (``--max-output-error``).

    Refinements beyond the pointwise refit, each kept only when it lowered the held-back error:
    ``depthwise_refit`` (the depthwise factor refit too, by alternating least squares; the ``*_after``
    errors include it) and ``relu_fit`` (fit to the output after the ReLU that alone reads it, which
    trades pre-ReLU error for post-ReLU error). ``relu_error_before``/``after`` are the held-back
    relative errors after that ReLU (fit samples when none were held back) before and after that fit;
    ``refine_note`` says why a refinement was not tried or not kept.
    """

    name: str
    rank: int
    fit_error_before: float
    fit_error_after: float
    holdout_error_before: float | None = None
    holdout_error_after: float | None = None
    rows: int = 0
    unknowns: int = 0
    fell_back: str = ""
    note: str = ""
    depthwise_refit: bool = False
    relu_fit: bool = False
    relu_error_before: float | None = None
    relu_error_after: float | None = None
    refine_note: str = ""


@dataclass(frozen=True)
class CalibrationReport:
    """What the calibrated refit did: per layer, and end to end.

    ``output_error_before``/``after`` are the relative L2 errors of the whole model's outputs against the
    original, SVD-only vs calibrated, measured on the held-back samples (on the fit samples when none
    were held back: ``end_to_end_on`` says which). ``seconds`` is the wall time of the calibration.
    """

    layers: tuple[CalibratedLayer, ...]
    samples_fit: int
    samples_holdout: int
    output_error_before: float | None = None
    output_error_after: float | None = None
    end_to_end_on: str = "holdout"
    seconds: float = 0.0
    max_output_error: float | None = None
