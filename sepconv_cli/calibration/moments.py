"""Float64 moments of float32 activations, per group (pure numpy).

For ``Y ~ Z P`` the least-squares statistics are ``Z^T Z``, ``Z^T Y``, the column sums of ``Z`` and
``Y`` and ``||Y||^2``. Activations arrive channels-first ``(N, C, *spatial)``; each sample's
``(C, positions)`` block is cast to float64 and multiplied as it lies (no transposed copy), groups batched
in one matmul. BLAS runs single-threaded while the runtime computes the next chunk on its own threads
(``stream.prefetched``): on a busy two-core machine OpenBLAS's own threads were measured ten times slower
on these tall products than one thread, and calls from two threads of ours were serialised by its lock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Sums over rows (samples x positions): ``zz`` (g, D, D), ``zy`` (g, D, C), ``zsum`` (g, D),
    ``ysum`` (g, C), ``yy`` (scalar) and ``rows``."""

    zz: np.ndarray
    zy: np.ndarray
    zsum: np.ndarray
    ysum: np.ndarray
    yy: float
    rows: int

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.zz + other.zz, self.zy + other.zy, self.zsum + other.zsum, self.ysum + other.ysum,
                       self.yy + other.yy, self.rows + other.rows)


def _blocks(a: np.ndarray, groups: int) -> np.ndarray:
    """``(N, C, *spatial)`` -> view ``(N, groups, C/groups, positions)``."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, -1)


def _part(z: np.ndarray, y: np.ndarray) -> Moments:
    """Moments of samples ``z`` (N, g, D, P) and ``y`` (N, g, C, P), one sample at a time."""
    n, g, d, p = z.shape
    c = y.shape[2]
    zz, zy = np.zeros((g, d, d)), np.zeros((g, d, c))
    zsum, ysum, yy = np.zeros((g, d)), np.zeros((g, c)), 0.0
    for i in range(n):
        a, b = z[i].astype(np.float64), y[i].astype(np.float64)
        if g == 1:  # a 2-D A @ A.T is one symmetric rank-k update (half the work of a general product)
            zz[0] += a[0] @ a[0].T
        else:
            zz += a @ a.transpose(0, 2, 1)
        zy += a @ b.transpose(0, 2, 1)
        zsum += a.sum(axis=2)
        ysum += b.sum(axis=2)
        yy += float(np.vdot(b, b))
    return Moments(zz, zy, zsum, ysum, yy, n * p)


def single_threaded_blas():
    """Limit BLAS to one thread (no-op without threadpoolctl): the runtime's threads use the other cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own threads
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def moments(z: np.ndarray, y: np.ndarray, groups: int) -> Moments:
    """Moments of depthwise outputs ``z`` (N, g*D, *spatial) against targets ``y`` (N, g*C, *spatial)."""
    if z.shape[0] != y.shape[0] or z[0].size // z.shape[1] != y[0].size // y.shape[1]:
        raise ValueError(f"depthwise output {z.shape} and target {y.shape} differ in samples or positions")
    zb, yb = _blocks(z, groups), _blocks(y, groups)
    if zb.shape[3] < 512:  # few positions per sample: samples side by side, one product per chunk
        zb = zb.transpose(1, 2, 0, 3).reshape(1, groups, zb.shape[2], -1)
        yb = yb.transpose(1, 2, 0, 3).reshape(1, groups, yb.shape[2], -1)
    with single_threaded_blas():
        return _part(zb, yb)
