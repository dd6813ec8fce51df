"""spd_solve: stacked symmetric systems, definite or only semidefinite."""

import numpy as np

from sepconv_cli.calibration.linalg import spd_solve


def test_definite_systems_match_a_direct_solve():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, 40, 6))
    a = np.einsum("gri,grj->gij", z, z) + 1e-3 * np.eye(6)
    b = rng.standard_normal((3, 6, 4))
    x = spd_solve(a, b)
    assert x.shape == (3, 6, 4)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-8, atol=1e-10)


def test_a_singular_system_falls_back_to_least_squares():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((30, 3))
    z = np.concatenate([z, z[:, :1]], axis=1)  # a repeated column: rank 3 of 4
    a = (z.T @ z)[None]
    b = (z.T @ rng.standard_normal((30, 2)))[None]
    x = spd_solve(a, b)
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(a[0] @ x[0], b[0], atol=1e-8)
