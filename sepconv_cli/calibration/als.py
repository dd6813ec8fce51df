"""Refit the depthwise factor too: alternating least squares on the layer's input patches (pure numpy).

The separable layer computes, per pointwise group, ``Y = sum_{i,t,k} patch_{i,k} V[i,t,k] W[(i,t), :] + b``
(``patch_{i,k}``: input channel ``i`` seen through kernel tap ``k``, ``V`` the depthwise kernels, ``W`` the
pointwise weights). It is linear in ``W, b`` for a fixed ``V`` and linear in ``V, b`` for a fixed ``W``, and
both problems need only the moments of ``[patches, 1]`` against ``Y`` (``NormalEquations`` over the
patches: the im2col Gram ``G`` and ``C = patches^T Y``):

- the pointwise problem is the usual one with ``Z^T Z = B^T G B`` and ``Z^T Y = B^T C``, ``B`` the
  block-diagonal map from patch columns to depthwise outputs (``pointwise_equations``);
- the depthwise problem has the normal matrix ``(W W^T) (x) G`` (a Hadamard product over matching
  channel pairs) and right-hand side ``W`` contracted with ``C`` (``solve_depthwise``).

``alternate`` takes a few steps of each. Patch columns are ordered ``li*K + k`` within a group (the
depthwise conv with ``identity_kernel``), depthwise outputs ``li*T + t`` (as ``decompose`` lays them out).
"""

from __future__ import annotations

import numpy as np

from sepconv_cli.calibration.linalg import spd_solve
from sepconv_cli.calibration.solve import NormalEquations

# Dense normal matrices of the depthwise problem are (Cin_g*T*K)^2 per group: above this many entries
# (about 320 MB of float64) the depthwise refit is not attempted.
MAX_ENTRIES = 40_000_000


def identity_kernel(channels: int, kernel: tuple[int, ...]) -> np.ndarray:
    """Depthwise kernel ``(channels*K, 1, *kernel)`` whose output ``i*K + k`` is input channel ``i`` at tap
    ``k``: the layer's depthwise conv with it gives the im2col patches, padding mode and stride included."""
    k = int(np.prod(kernel))
    eye = np.tile(np.eye(k), (channels, 1))
    return eye.reshape(channels * k, 1, *kernel)


def unknowns(cin_g: int, rank: int, kernel_elems: int) -> int:
    """Depthwise unknowns per group: ``Cin_g * T * K``."""
    return cin_g * rank * kernel_elems


def fits_in_memory(groups: int, cin_g: int, rank: int, kernel_elems: int) -> bool:
    """True when the dense depthwise normal matrices stay under ``MAX_ENTRIES``."""
    return groups * unknowns(cin_g, rank, kernel_elems) ** 2 <= MAX_ENTRIES


def relative_cost(cin_g: int, rank: int, kernel_elems: int, rows: int, sampled: int) -> float:
    """Work of the patch moments on ``sampled`` rows (``(Cin_g K)^2`` per row) and of the dense depthwise
    solve (``(Cin_g T K)^3``), over the work of the pointwise moments on all ``rows`` (``(Cin_g T)^2``)."""
    patch, depth, point = cin_g * kernel_elems, unknowns(cin_g, rank, kernel_elems), cin_g * rank
    return (sampled * patch ** 2 + depth ** 3) / max(1, rows * point ** 2)


def _v_blocks(v: np.ndarray, groups: int, rank: int) -> np.ndarray:
    """Depthwise kernel ``(Cin*T, 1, *k)`` -> float64 ``(g, Cin_g, T, K)``."""
    k = int(np.prod(v.shape[2:]))
    return np.asarray(v, np.float64).reshape(groups, v.shape[0] // (groups * rank), rank, k)


def pointwise_equations(patches: NormalEquations, v: np.ndarray, rank: int) -> NormalEquations:
    """The pointwise problem's normal equations for depthwise kernel ``v`` (Conv layout ``(Cin*T, 1, *k)``)
    from the patch moments: ``Z^T Z = B^T G B``, ``Z^T Y = B^T C``, with ``B`` applied block by block
    (channel ``i``'s K taps feed its T outputs only)."""
    g = patches.groups
    vb = _v_blocks(v, g, rank)
    cin_g, k = vb.shape[1], vb.shape[3]
    d, dk = cin_g * rank, cin_g * k
    gram = patches.zz[:, :dk, :dk].reshape(g, cin_g, k, cin_g, k)
    sums = patches.zz[:, :dk, dk].reshape(g, cin_g, k)
    out = NormalEquations(g, d, patches.outputs)
    out.zz = np.empty((g, d + 1, d + 1))
    out.zz[:, :d, :d] = np.einsum("gitk,gikjl,gjsl->gitjs", vb, gram, vb, optimize=True).reshape(g, d, d)
    out.zz[:, :d, d] = np.einsum("gitk,gik->git", vb, sums).reshape(g, d)
    out.zz[:, d, :d] = out.zz[:, :d, d]
    out.zz[:, d, d] = patches.zz[:, dk, dk]
    out.zy = np.empty((g, d + 1, patches.outputs))
    out.zy[:, :d] = np.einsum("gitk,gikc->gitc", vb, patches.zy[:, :dk].reshape(g, cin_g, k, -1)).reshape(g, d, -1)
    out.zy[:, d] = patches.zy[:, dk]
    out.yy, out.rows = patches.yy, patches.rows
    return out


def solve_depthwise(patches: NormalEquations, p: np.ndarray, rank: int, kernel: tuple[int, ...], ridge: float
                    ) -> np.ndarray:
    """Least-squares depthwise kernel ``(Cin*T, 1, *kernel)`` (bias solved jointly, then dropped) for fixed
    pointwise coefficients ``p`` ``(g, Cin_g*T + 1, Cout_g)``; lambda = ``ridge`` x mean diagonal."""
    g, c = patches.groups, patches.outputs
    k = int(np.prod(kernel))
    cin_g = patches.inputs // k
    n, dk = cin_g * rank * k, cin_g * k
    w = p[:, :-1, :].reshape(g, cin_g, rank, c)
    gram = patches.zz[:, :dk, :dk].reshape(g, cin_g, k, cin_g, k)
    sums = patches.zz[:, :dk, dk].reshape(g, cin_g, k)
    cross = patches.zy[:, :dk, :].reshape(g, cin_g, k, c)
    a = np.zeros((g, n + c, n + c))
    a[:, :n, :n] = np.einsum("gitc,gjsc,gikjl->gitkjsl", w, w, gram, optimize=True).reshape(g, n, n)
    a[:, :n, n:] = np.einsum("gitc,gik->gitkc", w, sums).reshape(g, n, c)
    a[:, n:, :n] = a[:, :n, n:].transpose(0, 2, 1)
    a[:, n:, n:] = patches.rows * np.eye(c)
    rhs = np.concatenate([np.einsum("gitc,gikc->gitk", w, cross).reshape(g, n), patches.zy[:, dk, :]], axis=1)
    diag = np.einsum("gii->gi", a[:, :n, :n])
    a[:, np.arange(n), np.arange(n)] += (ridge * np.maximum(diag.mean(axis=1), 1e-30))[:, None]
    theta = spd_solve(a, rhs)
    return theta[:, :n].reshape(g * cin_g * rank, 1, *kernel)


def _balanced(v: np.ndarray) -> np.ndarray:
    """Each depthwise kernel scaled to unit norm (the pointwise solve absorbs the scale)."""
    norms = np.sqrt(np.sum(v.reshape(v.shape[0], -1) ** 2, axis=1))
    return v / np.where(norms > 0, norms, 1.0).reshape((-1,) + (1,) * (v.ndim - 1))


def alternate(patches: NormalEquations, v: np.ndarray, p: np.ndarray, rank: int, ridge: float, steps: int = 3
              ) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` rounds of (depthwise given pointwise, pointwise given depthwise) from ``v``, ``p``; returns
    the pair with the lowest error on ``patches`` (the start when no step improves it)."""
    kernel = tuple(v.shape[2:])
    best = (pointwise_equations(patches, v, rank).relative_error(p), v, p)
    for _ in range(steps):
        v = _balanced(solve_depthwise(patches, p, rank, kernel, ridge))
        equations = pointwise_equations(patches, v, rank)
        p = equations.solve(ridge)
        error = equations.relative_error(p)
        if not np.isfinite(error) or not np.all(np.isfinite(p)):
            break
        if error < best[0]:
            best = (error, v, p)
    return best[1], best[2]
