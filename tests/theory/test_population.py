"""The population MAML objective of a deep linear net adapting one layer: equal to §3 with
factors built from the frozen layers, and to a Monte Carlo estimate of adapting the actual
network (autograd on its forward pass).

Statistical criterion: ``|closed − mean| ≤ 4·SE + 2·10⁻³·|closed|`` — 99.994 % two-sided
normal-approximation confidence — over 10⁵ tasks per estimate, fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.monte_carlo import monte_carlo_deep_loss
from maml_depth.numerics.networks import DeepLinear
from maml_depth.numerics.tasks import LinearRegressionTasks
from maml_depth.theory import (
    expected_loss,
    layer_factors,
    population_maml_loss,
    preconditioned_loss,
)
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close

Z, RTOL, NUM_TASKS = 4.0, 2e-3, 100_000


@st.composite
def _nets(draw):
    dims = draw(mst.layer_dims(min_depth=1, max_depth=4, max_width=5))
    weights = draw(mst.deep_linear_weights(dims))
    d, m = dims[0], dims[-1]
    rng = draw(mst.rngs())
    return dict(
        weights=weights, adapt=draw(st.integers(1, len(dims) - 1)),
        W_bar=rng.standard_normal((m, d)), Sigma=draw(mst.spd_matrices(d, max_condition=10.0)),
        Lam=draw(mst.psd_matrices(d)), sigma=draw(st.floats(0, 1)), n=draw(st.integers(1, 20)),
        alpha=draw(st.floats(-0.5, 0.5)),
    )


def _chain(mats, size):
    out = np.eye(size)
    for M in mats:  # mats listed in application order (first applied first)
        out = M @ out
    return out


@given(_nets())
def test_equals_expected_loss_with_factors_from_the_frozen_layers(p):
    """``W = A_j W_j B_j``, ``L = A_jA_jᵀ``, ``R = B_jᵀB_j`` built here independently."""
    ws, j = p["weights"], p["adapt"]
    d, m = ws[0].shape[1], ws[-1].shape[0]
    A = _chain(ws[j:], ws[j - 1].shape[0])
    B = _chain(ws[: j - 1], d)
    assert A.shape == (m, ws[j - 1].shape[0]) and B.shape == (ws[j - 1].shape[1], d)
    W = _chain(ws, d)
    assert_close(A @ ws[j - 1] @ B, W)
    kw = {k: p[k] for k in ("W_bar", "Sigma", "Lam", "sigma", "n", "alpha")}
    expect = expected_loss(W, L=A @ A.T, R=B.T @ B, **kw)
    got = population_maml_loss(ws, adapt=j, **kw)
    assert isinstance(got, float)
    assert_close(got, expect)
    got_t = population_maml_loss([torch.from_numpy(w) for w in ws], adapt=j, **kw)
    assert isinstance(got_t, torch.Tensor)
    assert_close(got_t, expect)
    At, Bt = layer_factors(ws, j)
    assert_close(At, A)
    assert_close(Bt, B)


@pytest.mark.parametrize(("dims", "adapt", "seed"), [
    ((3, 4, 2), 2, 0),     # top layer, m = 2
    ((3, 4, 2), 1, 1),     # bottom layer
    ((2, 3, 3, 1), 2, 2),  # middle layer of a depth-3 net, m = 1
    ((3, 5, 1), "top", 3),  # S = {L}, m = 1: P = α B_LᵀB_L
])
def test_equals_monte_carlo_of_adapting_the_network(dims, adapt, seed):
    """Closed form vs a 10⁵-task estimate in which each task adapts the real network (layer
    gradient by autograd): within 4 SE + 0.2 % (99.994 % confidence)."""
    g = torch.Generator().manual_seed(seed)
    net = DeepLinear(dims, generator=g)
    d, m = dims[0], dims[-1]
    fam = LinearRegressionTasks.from_spectrum(
        [0.5, 1.0, 2.0][:d], [1.0, 0.4, 0.0][:d], m=m, sigma=0.5, n_support=3, generator=g,
        W_bar=torch.randn(m, d, generator=g, dtype=torch.float64))
    alpha = 0.3
    closed = population_maml_loss([w.detach() for w in net.weights], adapt=adapt, W_bar=fam.W_bar,
                                  Sigma=fam.Sigma, Lam=fam.Lam, sigma=fam.sigma,
                                  n=fam.n_support, alpha=alpha)
    est = monte_carlo_deep_loss(fam, net, alpha=alpha, adapt=adapt, num_tasks=NUM_TASKS,
                                seed=seed)
    value = float(closed)
    assert abs(value - est.mean) <= Z * est.stderr + RTOL * abs(value), (
        f"population objective {value:.6g} vs {est} (z = {est.z_score(value):.2f}; criterion "
        f"4 SE + 0.2 %, 99.994 % confidence, {est.num_tasks} tasks)")


def test_top_layer_at_the_task_mean_is_the_preconditioner_loss():
    """S = {L}, m = 1, W = W̄: the population loss is E ℒ(P) with P = α B_LᵀB_L
    (docs/theory/expected-loss.md#optimal-preconditioner)."""
    rng = np.random.default_rng(4)
    ws = [rng.standard_normal((4, 3)), rng.standard_normal((4, 4)), rng.standard_normal((1, 4))]
    B = ws[1] @ ws[0]
    W = ws[2] @ B
    Sigma, Lam, alpha = np.diag([0.5, 1.0, 2.0]), np.diag([1.0, 0.3, 0.1]), 0.05
    got = population_maml_loss(ws, adapt=3, W_bar=W, Sigma=Sigma, Lam=Lam, sigma=0.2, n=4,
                               alpha=alpha)
    # the top layer's left factor is 1 (m = 1): the step is G (α BᵀB)
    assert_close(got, preconditioned_loss(alpha * B.T @ B, Sigma, Lam, 0.2, 4))


def test_differentiable_in_the_weights_and_batched():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
          torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)]
    kw = dict(W_bar=torch.zeros(2, 2, dtype=torch.float64), Sigma=torch.eye(2, dtype=torch.float64),
              Lam=0.5 * torch.eye(2, dtype=torch.float64), sigma=0.1, n=3, alpha=0.2)

    def f(w1, w2):
        return population_maml_loss([w1, w2], adapt=2, **kw)

    assert torch.autograd.gradcheck(f, tuple(ws))
    # a batch of 4 networks in one call
    batch = [torch.stack([w.detach() * s for s in (0.5, 1.0, 1.5, 2.0)]) for w in ws]
    vals = population_maml_loss(batch, adapt=1, **kw)
    assert vals.shape == (4,)
    for i in range(4):
        assert_close(vals[i], population_maml_loss([b[i] for b in batch], adapt=1, **kw))


def test_bad_input_names_the_field():
    ws = [np.ones((3, 2)), np.ones((1, 3))]
    kw = dict(W_bar=np.zeros((1, 2)), Sigma=np.eye(2), Lam=np.eye(2), sigma=0.1, n=3, alpha=0.1)
    with pytest.raises(InvalidArgumentError, match="adapt"):
        population_maml_loss(ws, adapt="all", **kw)
    with pytest.raises(InvalidArgumentError, match="adapt"):
        population_maml_loss(ws, adapt=3, **kw)
    with pytest.raises(ShapeError, match=r"weights\[1\]"):
        population_maml_loss([np.ones((3, 2)), np.ones((1, 4))], adapt=1, **kw)
    with pytest.raises(ShapeError, match="W_bar"):
        population_maml_loss(ws, adapt=1, **{**kw, "W_bar": np.zeros((2, 2))})
    with pytest.raises(InvalidArgumentError, match="weights"):
        population_maml_loss(np.ones((3, 3)), adapt=1, **kw)
    with pytest.raises(InvalidArgumentError, match="n"):
        population_maml_loss(ws, adapt=1, **{**kw, "n": 0})
