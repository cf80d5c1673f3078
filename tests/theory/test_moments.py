"""The Gaussian moment identities of docs/theory/notation.md#task-family, derived from the MGF and
verified symbolically."""

from __future__ import annotations

import pytest
import sympy as sp

from maml_depth.theory.moments import (
    GaussianMoments,
    RegressionMoments,
    isserlis_moment,
    noise_identity,
    sample_covariance_identity,
    symbolic_matrix,
    task_identity,
    verify_moment_identities,
)


def test_mgf_moments_match_isserlis_up_to_order_six():
    S = symbolic_matrix("s", 2, symmetric=True)
    mgf = GaussianMoments(S)
    for idx in [(0, 0), (0, 1), (0, 0, 0, 0), (0, 0, 1, 1), (0, 1, 1, 1), (0, 0, 0, 1, 1, 1),
                (0, 1, 0, 1, 0, 1), (1, 1, 1, 1, 1, 1)]:
        assert sp.expand(mgf(idx) - isserlis_moment(S, idx)) == 0, idx
    assert mgf((0, 1, 1)) == 0  # odd orders vanish


def test_known_scalar_moments():
    s = sp.Symbol("s", positive=True)
    mgf = GaussianMoments(sp.Matrix([[s]]))
    assert mgf((0, 0, 0, 0)) == 3 * s**2  # E x⁴ = 3σ⁴
    assert mgf((0,) * 6) == 15 * s**3


@pytest.mark.parametrize(("d", "m"), [(1, 1), (2, 2), (2, 1)])
def test_moment_identities_verified_symbolically(d, m):
    checks = verify_moment_identities(d, m)
    assert all(checks.values()), checks


@pytest.mark.slow
def test_moment_identities_verified_symbolically_d3():
    checks = verify_moment_identities(3, 2, max_order=6, explicit_n=(1, 2, 3))
    assert all(checks.values()), checks


def test_engine_rejects_wrong_identities():
    """The symbolic check can fail: dropping the 1/n terms or the noise variance is caught."""
    n, sigma = sp.symbols("n sigma", positive=True)
    S = symbolic_matrix("s", 2, symmetric=True)
    La = symbolic_matrix("l", 2, symmetric=True)
    M = symbolic_matrix("M", 2, symmetric=True)
    rm = RegressionMoments(S, La, sigma, n, 2)
    lhs = rm.expect(rm.S * M * rm.S)
    assert (lhs - sample_covariance_identity(S, M, n)).applyfunc(sp.expand) == sp.zeros(2, 2)
    wrong = S * M * S  # "1 + 1/n" replaced by 1, trace term dropped
    assert (lhs - wrong).applyfunc(sp.expand) != sp.zeros(2, 2)
    noise = rm.expect(rm.E * M * rm.E.T)
    assert (noise - noise_identity(S, M, n, sigma, 2)).applyfunc(sp.expand) == sp.zeros(2, 2)
    assert (noise - noise_identity(S, M, n, 1, 2)).applyfunc(sp.expand) != sp.zeros(2, 2)
    C = symbolic_matrix("C", 2)
    task = rm.expect(rm.Z * C * rm.Z.T)
    assert (task - task_identity(La, C, 2)).applyfunc(sp.expand) == sp.zeros(2, 2)
    assert (task - task_identity(La, C.T * C, 2)).applyfunc(sp.expand) != sp.zeros(2, 2)


def test_sample_moment_at_n_one_is_the_fourth_moment():
    """n = 1: E[x xᵀ M x xᵀ] = 2ΣMΣ + tr(MΣ)Σ (the Isserlis fourth moment)."""
    S = symbolic_matrix("s", 2, symmetric=True)
    M = symbolic_matrix("M", 2, symmetric=True)
    rm = RegressionMoments(S, sp.zeros(2, 2), 0, 1, 1)
    lhs = rm.expect(rm.S * M * rm.S)
    rhs = 2 * S * M * S + (M * S).trace() * S
    assert (lhs - rhs).applyfunc(sp.expand) == sp.zeros(2, 2)
