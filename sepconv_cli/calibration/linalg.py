"""Solving the symmetric positive (semi-)definite systems of calibration (pure numpy, scipy when present).

Normal equations with a ridge are symmetric positive definite: a Cholesky factorisation (scipy's
``cho_factor``, half the work of LU) solves them; without scipy, or when the matrix is only semidefinite
(no ridge, dependent columns), LU and then least squares take over. BLAS runs single-threaded: the
runtime is usually computing the next chunk on the other core meanwhile, and on a busy two-core machine
a two-thread factorisation was measured several times slower than one thread.
"""

from __future__ import annotations

import numpy as np

from sepconv_cli.calibration.moments import single_threaded_blas


def _cholesky(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    try:
        from scipy.linalg import LinAlgError, cho_factor, cho_solve
    except ImportError:  # optional: numpy's LU below
        return None
    try:
        return cho_solve(cho_factor(a, check_finite=False), b, check_finite=False)
    except (LinAlgError, ValueError):
        return None


def _one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    found = _cholesky(a, b)
    if found is not None and np.all(np.isfinite(found)):
        return found
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, b, rcond=None)[0]


def spd_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x`` with ``a[i] @ x[i] = b[i]`` for each stacked symmetric system ``a`` (n, m, m), ``b`` (n, m, ...)."""
    with single_threaded_blas():
        return np.stack([_one(a[i], b[i]) for i in range(a.shape[0])])
