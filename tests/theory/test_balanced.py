"""theory/balanced.py: the fractional-power form against the exact two-layer product and
the Kronecker identity vec(A G B) = (Bᵀ ⊗ A) vec G."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics import balanced_factors
from maml_depth.theory.balanced import (
    ach_end_to_end_step,
    ach_kronecker_preconditioner,
    ach_two_layer_exact_step,
    psd_power,
)


def test_two_layer_exact_step_is_the_product_of_stepped_layers() -> None:
    g = torch.Generator().manual_seed(3)
    W1, W2 = (w.numpy() for w in balanced_factors((3, 4, 2), 1.0, g))
    W = W2 @ W1
    G = np.random.default_rng(0).standard_normal(W.shape)
    eta = 0.37  # any step: the two-layer rule is exact
    direct = (W2 - eta * G @ W1.T) @ (W1 - eta * W2.T @ G)
    np.testing.assert_allclose(ach_two_layer_exact_step(W, G, eta), direct, atol=1e-12)


def test_kronecker_form_matches_the_matrix_form() -> None:
    rng = np.random.default_rng(1)
    W, G = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    for N in (1, 2, 3):
        P = ach_kronecker_preconditioner(W, N)
        step = (W - ach_end_to_end_step(W, G, 1.0, N)).reshape(-1, order="F")
        np.testing.assert_allclose(P @ G.reshape(-1, order="F"), step, atol=1e-12)


def test_psd_power_roots_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(2)
    A = rng.standard_normal((4, 2))
    S = A @ A.T  # rank 2
    R = psd_power(S, 0.5)
    np.testing.assert_allclose(R @ R, S, atol=1e-12)
    np.testing.assert_allclose(psd_power(S, 0.0), np.eye(4))
    with pytest.raises(InvalidArgumentError):
        psd_power(S, -1.0)
    with pytest.raises(ShapeError):
        psd_power(np.ones((2, 3)), 0.5)
    with pytest.raises(InvalidArgumentError, match="variant"):
        ach_end_to_end_step(np.eye(2), np.eye(2), 0.1, 2, variant="nope")
    with pytest.raises(ShapeError, match="square"):
        ach_end_to_end_step(np.ones((2, 3)), np.ones((2, 3)), 0.1, 2, variant="swapped")
