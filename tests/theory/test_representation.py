"""theory/representation.py against its autograd twin, and the derived late ratio against
the iterated closed-form step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maml_depth.errors import ShapeError
from maml_depth.numerics.representation import anil_population_step_autograd
from maml_depth.theory.representation import (
    anil_late_ratio,
    anil_population_step,
    subspace_distance,
)


def _problem(seed: int, d: int = 7, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Bs, _ = np.linalg.qr(rng.standard_normal((d, k)))
    A = rng.standard_normal((k, k))
    return Bs, A @ A.T + 0.1 * np.eye(k), rng.standard_normal((d, k))


def test_closed_form_step_equals_autograd_twin() -> None:
    Bs, Lam, B = _problem(0)
    th = anil_population_step(B, Bs, Lam, 0.3, 0.7)
    nu = anil_population_step_autograd(*(torch.from_numpy(a) for a in (B, Bs, Lam)), 0.3, 0.7)
    np.testing.assert_allclose(th, nu.numpy(), rtol=1e-12, atol=1e-12)


def test_iterated_step_reaches_the_derived_late_ratio() -> None:
    Bs, Lam, B = _problem(1)
    a, b = 0.5, 0.2
    # R = B*ᵀB converges at ≈ (1 − 2βαλ_min)^t, dist at (1 − βαλ_min)^t: when dist ≈ 1e-6 the
    # transient in R is ≈ 1e-12 and round-off in the ratio ≈ ε/1e-6 — both far below 1e-6
    ds = [subspace_distance(B, Bs)]
    while ds[-1] > 1e-6:
        B = anil_population_step(B, Bs, Lam, a, b)
        ds.append(subspace_distance(B, Bs))
    ratio = ds[-1] / ds[-2]
    assert 1 - ratio == pytest.approx(1 - anil_late_ratio(Lam, a, b), rel=1e-6)
    # the fixed point of R = B*ᵀB: RRᵀ = I/α
    R = Bs.T @ B
    np.testing.assert_allclose(R @ R.T, np.eye(2) / a, atol=1e-8)


def test_distance_is_the_sine_of_the_largest_principal_angle() -> None:
    from scipy.linalg import subspace_angles

    Bs, _, B = _problem(2)
    assert subspace_distance(B, Bs) == pytest.approx(np.sin(subspace_angles(B, Bs).max()))
    with pytest.raises(ShapeError):
        subspace_distance(np.ones((3, 2)), np.ones((4, 2)))
