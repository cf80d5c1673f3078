"""theory/interpolation.py against its numeric twin (plain gradient descent) and by Monte
Carlo of the expected error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.interpolation import gd_to_interpolation
from maml_depth.theory.interpolation import (
    expected_interpolation_error,
    min_norm_interpolant,
    one_step_line_error,
)


def test_gradient_descent_converges_to_the_interpolant_nearest_theta0() -> None:
    rng = np.random.default_rng(0)
    X, y, t0 = rng.standard_normal((6, 3, 8)), rng.standard_normal((6, 3)), rng.standard_normal(
        (6, 8))
    gd = gd_to_interpolation(*(torch.from_numpy(a) for a in (t0, X, y))).numpy()
    np.testing.assert_allclose(gd, min_norm_interpolant(t0, X, y), atol=1e-9)


def test_expected_error_by_monte_carlo() -> None:
    rng = np.random.default_rng(1)
    T, n, d = 20_000, 3, 12
    w = rng.standard_normal((T, d))  # E‖θ₀ − w‖² = ‖θ₀‖² + d
    t0 = np.full(d, 0.5)
    X = rng.standard_normal((T, n, d))
    err = np.sum((min_norm_interpolant(t0, X, np.einsum("tnd,td->tn", X, w)) - w) ** 2, axis=1)
    se = err.std(ddof=1) / np.sqrt(T)
    assert abs(err.mean() - expected_interpolation_error(float(t0 @ t0) + d, n, d)) < 5 * se


def test_one_step_line_error_by_monte_carlo() -> None:
    # θ' = P* Σ̂ w with P* = uuᵀ/(1 + 2/n), w = a u: error E a²·2/(n + 2)
    rng = np.random.default_rng(2)
    T, n, d = 40_000, 4, 6
    u = np.eye(d)[0]
    a = rng.standard_normal(T)
    X = rng.standard_normal((T, n, d))
    S_u = np.einsum("tnd,tn->td", X, X @ u) / n
    th = (S_u @ u)[:, None] * u[None, :] * a[:, None] / (1 + 2 / n)
    err = np.sum((th - a[:, None] * u) ** 2, axis=1)
    assert abs(err.mean() - one_step_line_error(n)) < 5 * err.std(ddof=1) / np.sqrt(T)


def test_bad_input() -> None:
    with pytest.raises(InvalidArgumentError, match="n must be <= d"):
        expected_interpolation_error(1.0, 5, 3)
    with pytest.raises(ShapeError):
        min_norm_interpolant(np.zeros(3), np.zeros((2, 4)), np.zeros(2))
