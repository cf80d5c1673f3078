"""theory/empirical_maml.py against its numeric twin (autograd on the objectives) and the
derived expectations against their ingredients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.empirical_maml import (
    maml_estimator_autograd,
    pooled_estimator_autograd,
)
from maml_depth.theory.empirical_maml import (
    BernacchiaSetting,
    adaptation_factor,
    bernacchia_estimator_error,
    maml_estimator,
    pooled_estimator,
)


@pytest.mark.parametrize(("m", "nt", "nv", "p", "alpha"),
                         [(3, 4, 2, 9, -0.7), (4, 5, 3, 3, 0.3), (2, 3, 1, 6, 1.1)])
def test_maml_estimator_matches_autograd_twin(m: int, nt: int, nv: int, p: int,
                                              alpha: float) -> None:
    rng = np.random.default_rng(m * 100 + p)
    Xt, Xv = rng.standard_normal((m, nt, p)), rng.standard_normal((m, nv, p))
    yt, yv = rng.standard_normal((m, nt)), rng.standard_normal((m, nv))
    w0 = rng.standard_normal(p)
    th = maml_estimator(Xt, yt, Xv, yv, alpha, omega0=w0)
    nu = maml_estimator_autograd(*(torch.from_numpy(a) for a in (Xt, yt, Xv, yv)), alpha,
                                 omega0=torch.from_numpy(w0)).numpy()
    np.testing.assert_allclose(th, nu, rtol=1e-8, atol=1e-8)


def test_pooled_estimator_matches_autograd_twin() -> None:
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(
        pooled_estimator(X, y),
        pooled_estimator_autograd(torch.from_numpy(X), torch.from_numpy(y)).numpy(), rtol=1e-9)


def test_adaptation_factor_is_the_second_moment() -> None:
    # h(α) = E‖(I − αΣ̂)v‖²/‖v‖², Monte Carlo with 20,000 draws; 5 standard errors
    rng = np.random.default_rng(6)
    p, n, a = 5, 4, 0.3
    X = rng.standard_normal((20_000, n, p))
    v = np.zeros(p)
    v[0] = 1.0
    u = v - a * np.einsum("tnp,tnq,q->tp", X, X, v) / n
    vals = np.sum(u ** 2, axis=1)
    se = vals.std(ddof=1) / np.sqrt(vals.size)
    assert abs(vals.mean() - adaptation_factor(a, p, n)) < 5 * se


def test_naive_variant_is_off_by_the_wishart_factor() -> None:
    s = BernacchiaSetting()
    ratio = bernacchia_estimator_error(s, -1.0, inverse="naive") / bernacchia_estimator_error(
        s, -1.0)
    assert ratio == pytest.approx((s.p - s.k - 1) / s.p, rel=1e-12)


def test_bad_input() -> None:
    with pytest.raises(InvalidArgumentError):
        BernacchiaSetting(p=6, m=3, n_v=2)  # not overparameterised
    with pytest.raises(ShapeError):
        maml_design_shapes()


def maml_design_shapes() -> None:
    maml_estimator(np.ones((2, 3)), np.ones(2), np.ones((2, 3)), np.ones(2), 0.1)


def test_gao_sener_optima_and_post_adaptation_loss_by_monte_carlo() -> None:
    from maml_depth.theory.empirical_maml import GaoSenerSetting

    s = GaoSenerSetting()
    assert s.pooled_optimum() == pytest.approx(2 * s.beta / 3, rel=1e-12)
    w_star = s.maml_optimum()
    # the exact loss is a quadratic minimised at the MAML optimum
    h = 1e-4
    d = (s.post_adaptation_loss(w_star + h) - s.post_adaptation_loss(w_star - h)) / (2 * h)
    assert abs(float(d)) < 1e-8
    # Monte Carlo of one real inner step and the exact query loss ½[q(w' − c)² + s²],
    # 200,000 tasks, within 5 standard errors
    rng = np.random.default_rng(9)
    T, w = 200_000, 0.7
    q, s2 = rng.uniform(0, s.beta, T), rng.uniform(0, s.beta, T)
    x = rng.standard_normal((T, s.N)) * np.sqrt(q)[:, None]
    y = q[:, None] * x + rng.standard_normal((T, s.N)) * np.sqrt(s2)[:, None]
    w1 = w - s.alpha * np.mean(x * (w * x - y), axis=1)
    vals = 0.5 * (q * (w1 - q) ** 2 + s2)
    se = vals.std(ddof=1) / np.sqrt(T)
    assert abs(vals.mean() - float(s.post_adaptation_loss(w))) < 5 * se
