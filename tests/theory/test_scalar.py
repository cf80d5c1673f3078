"""The scalar case (all widths 1): explicit polynomials for the update and the objective."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.errors import InvalidArgumentError
from maml_depth.theory import (
    exact_update,
    scalar_layer_updates,
    scalar_maml_objective,
    scalar_objective_function,
    scalar_symbols,
    scalar_task_objective,
    scalar_update,
    scalar_update_function,
    update_rule,
)
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close


@given(
    st.integers(1, 4).flatmap(
        lambda L: st.tuples(
            st.just(L), mst.adapt_subsets(L), st.integers(1, 2), mst.rngs(),
            st.floats(0.01, 0.3),
        )
    )
)
def test_scalar_update_equals_matrix_rule_with_unit_widths(args):
    L, S, k, rng, alpha = args
    w = rng.uniform(0.5, 1.2, L) * rng.choice([-1, 1], L)
    X, Y = rng.standard_normal((1, 5)), rng.standard_normal((1, 5))
    sxx, sxy = float((X @ X.T)[0, 0]) / 5, float((X @ Y.T)[0, 0]) / 5
    want = exact_update([np.array([[v]]) for v in w], X, Y, alpha, S, k)[0, 0]
    f = scalar_update_function(L, S, k)
    assert_close(f(*w, alpha, sxx, sxy), want, what="compiled scalar update")
    sy = scalar_symbols(L)
    expr = scalar_update(L, S, k)
    vals = {**dict(zip(sy.w, w, strict=True)), sy.alpha: alpha, sy.s_xx: sxx, sy.s_xy: sxy}
    assert_close(float(expr.xreplace(vals)), want, what="sympy scalar update")


@pytest.mark.parametrize(
    ("L", "S", "k"), [(1, (1,), 1), (1, (1,), 3), (2, (1, 2), 1), (2, (1, 2), 2),
                      (2, (2,), 3), (3, (1, 3), 2), (3, (1, 2, 3), 1)],
)
def test_scalar_polynomials_and_degree(L, S, k):
    sy = scalar_symbols(L)
    layers = scalar_layer_updates(L, S, k)
    w = scalar_update(L, S, k)
    assert sp.expand(sp.Mul(*layers) - w) == 0
    for j in range(1, L + 1):  # layers outside S are untouched
        if j not in S:
            assert layers[j - 1] == sy.w[j - 1]
    # the matrix rule's degree in α is attained already with unit widths
    assert sp.Poly(w, sy.alpha).degree() == update_rule(L, S, k).degree


def test_scalar_update_depth_two_closed_form():
    sy = scalar_symbols(2)
    w1, w2 = sy.w
    g = w2 * w1 * sy.s_xx - sy.s_xy
    want = (w2 - sy.alpha * w1 * g) * (w1 - sy.alpha * w2 * g)
    assert sp.expand(scalar_update(2, "all") - want) == 0
    assert sp.expand(scalar_update(2, 2) - (w2 - sy.alpha * w1 * g) * w1) == 0


def test_scalar_objective_depth_one_is_math_section_3():
    """L = 1, k = 1: docs/theory/expected-loss.md#closed-form with m = d = 1, L = R = 1 (an
    independent derivation)."""
    sy = scalar_symbols(1)
    (w,), a, s, tau, sig, n = sy.w, sy.alpha, sy.s, sy.tau, sy.sigma, sy.n
    D, K = w - sy.wbar, (1 + 1 / n) * s**3 + (1 / n) * s**3
    ref = sp.Rational(1, 2) * (
        s * D**2 + tau**2 * s - 2 * a * (s**2 * D**2 + tau**2 * s**2)
        + a**2 * (D**2 * K + tau**2 * K + sig**2 / n * s * s)
    ) + sig**2 / 2
    assert sp.expand(scalar_maml_objective(1) - ref) == 0
    # a wrong closed form (the 1/n correction of K dropped) is told apart
    assert sp.expand(scalar_maml_objective(1) - ref.subs(K, s**3)) != 0


def _monte_carlo(L, S, k, alpha, w, *, s, wbar, tau, sigma, n, tasks, seed):
    """Per-task post-adaptation population loss, by direct simulation (numpy)."""
    rng = np.random.default_rng(seed)
    wt = wbar + tau * rng.standard_normal(tasks)
    x = np.sqrt(s) * rng.standard_normal((tasks, n))
    y = wt[:, None] * x + sigma * rng.standard_normal((tasks, n))
    sxx, sxy = (x * x).mean(1), (x * y).mean(1)
    ws = [np.full(tasks, v) for v in w]
    for _ in range(k):
        g = np.prod(ws, axis=0) * sxx - sxy
        ws = [ws[j - 1] - alpha * np.prod([ws[i] for i in range(L) if i != j - 1], axis=0) * g
              if j in S else ws[j - 1] for j in range(1, L + 1)]
    return 0.5 * s * (np.prod(ws, axis=0) - wt) ** 2 + 0.5 * sigma**2


@pytest.mark.parametrize(
    ("L", "S", "k"), [(2, (1, 2), 1), (2, (2,), 2), (3, (1, 3), 1), (1, (1,), 3)]
)
def test_scalar_objective_matches_monte_carlo(L, S, k):
    # in the compiled function's argument order: wbar, tau, sigma, s, n
    params = {"wbar": 0.8, "tau": 0.5, "sigma": 0.3, "s": 1.5, "n": 4}
    w, alpha = [1.1, 0.7, 0.9][:L], 0.15
    loss = _monte_carlo(L, S, k, alpha, w, **params, tasks=200_000, seed=L + 10 * k)
    mean, se = loss.mean(), loss.std(ddof=1) / np.sqrt(loss.size)
    exact = scalar_objective_function(L, S, k)(*w, alpha, *params.values())
    assert exact == scalar_objective_function(L, S, k)(*w, alpha, **params)
    assert abs(mean - exact) < 4.5 * se, (mean, exact, se)
    # with numbers substituted first the expression is a polynomial in w_j, α only
    sy = scalar_symbols(L)
    expr = scalar_maml_objective(L, S, k, **params)
    assert expr.free_symbols <= {*sy.w, sy.alpha}
    vals = {**dict(zip(sy.w, w, strict=True)), sy.alpha: alpha}
    assert_close(float(expr.xreplace(vals)), exact, what="numeric-parameter objective")
    # the Monte Carlo test can fail: one step fewer is far outside the interval
    if k > 1:
        wrong = scalar_objective_function(L, S, k - 1)(*w, alpha, *params.values())
        assert abs(mean - wrong) > 4.5 * se


def test_scalar_objective_symbolic_equals_compiled_and_is_differentiable():
    sy = scalar_symbols(2)
    obj = scalar_maml_objective(2, "all", 1)
    point = {sy.w[0]: 0.9, sy.w[1]: 1.2, sy.alpha: 0.2, sy.wbar: 0.5, sy.tau: 0.4,
             sy.sigma: 0.3, sy.s: 1.3, sy.n: 5}
    f = scalar_objective_function(2, "all", 1, backend="torch")
    t = {k: torch.tensor(float(v), dtype=torch.float64, requires_grad=True)
         for k, v in point.items()}
    args = [t[sy.w[0]], t[sy.w[1]], t[sy.alpha], t[sy.wbar], t[sy.tau], t[sy.sigma],
            t[sy.s], 5]
    val = f(*args)
    assert_close(val, float(obj.xreplace(point)))
    g1, ga = torch.autograd.grad(val, [t[sy.w[0]], t[sy.alpha]])
    assert_close(g1, float(sp.diff(obj, sy.w[0]).xreplace(point)))
    assert_close(ga, float(sp.diff(obj, sy.alpha).xreplace(point)))
    # a loss surface: broadcasting over a grid
    grid = np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 1, 5))
    surf = scalar_objective_function(2, "all", 1)(*grid, 0.2, 0.5, 0.4, 0.3, 1.3, 5)
    assert surf.shape == (5, 7) and np.all(surf > 0)


def test_scalar_task_objective():
    sy = scalar_symbols(2)
    rng = np.random.default_rng(5)
    xs, ys = rng.standard_normal(6), rng.standard_normal(6)
    xq, yq = rng.standard_normal(9), rng.standard_normal(9)
    w1, w2, a = 0.7, -1.1, 0.2
    g = w2 * w1 * (xs @ xs) / 6 - (xs @ ys) / 6
    w = (w2 - a * w1 * g) * (w1 - a * w2 * g)
    want = 0.5 * np.mean((w * xq - yq) ** 2)
    vals = {sy.w[0]: w1, sy.w[1]: w2, sy.alpha: a, sy.s_xx: xs @ xs / 6,
            sy.s_xy: xs @ ys / 6, sy.q_xx: xq @ xq / 9, sy.q_xy: xq @ yq / 9,
            sy.q_yy: yq @ yq / 9}
    assert_close(float(scalar_task_objective(2, "all").xreplace(vals)), want)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: scalar_update(0), "depth"),
        (lambda: scalar_update(2, 3), "adapt names layer 3"),
        (lambda: scalar_update(2, "all", 0), "steps"),
        (lambda: scalar_maml_objective(1, s=-1.0), "s must be > 0"),
        (lambda: scalar_maml_objective(1, sigma=float("nan")), "sigma must be finite"),
        (lambda: scalar_maml_objective(1, n=0), "n must be a positive integer"),
        (lambda: scalar_objective_function(1)(1.0, 0.1), "takes 7 arguments"),
        (lambda: scalar_objective_function(1)(1.0, 0.1, s=1.0), "keywords"),
        (lambda: scalar_update_function(1, backend="jax"), "backend"),
    ],
)
def test_scalar_bad_input(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call()
