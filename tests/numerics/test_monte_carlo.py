"""The Monte Carlo estimators: reproducible, chunked, unbiased with calibrated standard
errors, and adapting exactly as the reference inner loop does (several layers, k steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics import inner_adapt, inner_adapt_autograd
from maml_depth.numerics.monte_carlo import (
    MonteCarloEstimate,
    _Accumulator,
    deep_linear_adapted_maps,
    monte_carlo_deep_loss,
    monte_carlo_loss,
    preconditioned_adapted_maps,
)
from maml_depth.numerics.networks import DeepLinear, get_params
from maml_depth.numerics.tasks import LinearRegressionTasks
from maml_depth.theory import expected_loss
from tests.helpers import assert_close


def _family(d=3, m=2, n=4, sigma=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return LinearRegressionTasks.from_spectrum(
        np.linspace(0.5, 2.0, d), np.linspace(1.0, 0.2, d), m=m, sigma=sigma, n_support=n,
        generator=g, W_bar=torch.randn(m, d, generator=g, dtype=torch.float64))


def test_reproducible_with_fixed_seeds():
    fam = _family()
    W = torch.zeros(2, 3, dtype=torch.float64)
    a = monte_carlo_loss(fam, W, alpha=0.2, num_tasks=5000, chunk_size=1000, seed=3)
    b = monte_carlo_loss(fam, W, alpha=0.2, num_tasks=5000, chunk_size=1000,
                         generator=torch.Generator().manual_seed(3))
    c = monte_carlo_loss(fam, W, alpha=0.2, num_tasks=5000, chunk_size=1000, seed=4)
    assert a == b
    assert a != c
    assert a.num_tasks == 5000


def test_chunked_accumulation_equals_direct_statistics():
    """Chan's streaming update over uneven chunks = mean and SE of all values at once."""
    x = torch.randn(10_007, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    acc = _Accumulator()
    for chunk in torch.split(x, [1, 5000, 2, 3000, 2004]):
        acc.add(chunk)
    est = acc.result()
    assert est.num_tasks == x.numel()
    assert_close(est.mean, float(x.mean()))
    assert_close(est.stderr, float(x.std() / math.sqrt(x.numel())))


def test_uneven_last_chunk_counts_every_task():
    est = monte_carlo_loss(_family(), torch.zeros(2, 3, dtype=torch.float64), alpha=0.1,
                           num_tasks=2501, chunk_size=1000)
    assert est.num_tasks == 2501


def test_standard_error_is_calibrated():
    """200 independent 1000-task estimates: their z-scores against the closed form are
    standard normal. Checks: |mean z| ≤ 4/√200 (99.994 %), and the fraction within ±2 SE
    in [0.88, 0.995] (binomial(200, 0.954): ≥ 4.5 standard deviations from each bound)."""
    fam = _family(d=2, m=1, n=3)
    W = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    closed = expected_loss(W, W_bar=fam.W_bar, Sigma=fam.Sigma, Lam=fam.Lam, sigma=fam.sigma,
                           n=fam.n_support, alpha=0.4)
    g = torch.Generator().manual_seed(123)
    zs = np.array([monte_carlo_loss(fam, W, alpha=0.4, num_tasks=1000, generator=g)
                   .z_score(float(closed)) for _ in range(200)])
    assert abs(zs.mean()) <= 4 / math.sqrt(200), zs.mean()
    inside = float(np.mean(np.abs(zs) <= 2))
    assert 0.88 <= inside <= 0.995, inside


def test_preconditioned_maps_k_steps_match_a_loop():
    g = torch.Generator().manual_seed(1)
    T, n, d, m = 5, 4, 3, 2
    X = torch.randn(T, n, d, generator=g, dtype=torch.float64)
    Y = torch.randn(T, n, m, generator=g, dtype=torch.float64)
    W = torch.randn(m, d, generator=g, dtype=torch.float64)
    L = torch.randn(m, m, generator=g, dtype=torch.float64)
    R = torch.randn(d, d, generator=g, dtype=torch.float64)
    out = preconditioned_adapted_maps(W, X, Y, alpha=0.1, L=L, R=R, steps=3)
    for t in range(T):
        Xc, Yc = X[t].T.numpy(), Y[t].T.numpy()  # theory's convention: columns are samples
        Wk = W.numpy()
        for _ in range(3):
            G = (Wk @ Xc - Yc) @ Xc.T / n
            Wk = Wk - 0.1 * L.numpy() @ G @ R.numpy()
        assert_close(out[t], Wk)


@pytest.mark.parametrize(("dims", "adapt", "steps"), [((3, 4, 2), "all", 2),
                                                      ((2, 3, 3, 1), [1, 3], 3),
                                                      ((3, 2, 4, 2), 2, 1)])
def test_deep_maps_equal_the_reference_inner_loop(dims, adapt, steps):
    """The batched autograd adaptation equals numerics' inner_adapt (torch.func) and
    inner_adapt_autograd, task by task, for several adapted layers and k steps."""
    g = torch.Generator().manual_seed(2)
    net = DeepLinear(dims, generator=g)
    T, n = 4, 5
    X = torch.randn(T, n, dims[0], generator=g, dtype=torch.float64)
    Y = torch.randn(T, n, dims[-1], generator=g, dtype=torch.float64)
    out = deep_linear_adapted_maps(net, X, Y, alpha=0.05, adapt=adapt, steps=steps)
    params = get_params(net)
    for t in range(T):
        for fn in (inner_adapt, inner_adapt_autograd):
            adapted = fn(net, params, X[t], Y[t], alpha=0.05, adapt=adapt, steps=steps)
            assert_close(out[t], net.end_to_end(adapted).detach())


def test_depth_one_deep_equals_shallow_estimate():
    """A one-layer 'deep' net adapting its layer is shallow MAML: same seed, same samples, so
    the two estimators agree exactly, for k = 1 and k = 3 steps."""
    fam = _family()
    W = torch.randn(2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for steps in (1, 3):
        a = monte_carlo_loss(fam, W, alpha=0.15, steps=steps, num_tasks=3000, seed=9)
        b = monte_carlo_deep_loss(fam, [W], alpha=0.15, adapt=1, steps=steps, num_tasks=3000,
                                  seed=9)
        assert_close(a.mean, b.mean)
        assert_close(a.stderr, b.stderr, rtol=1e-8)


def test_k_step_zero_variance_case_is_exact():
    """Λ = 0, σ = 0, W = W̄: the gradient is zero on every task, for any number of steps."""
    fam = LinearRegressionTasks(torch.eye(2, dtype=torch.float64),
                                torch.tensor([[1.0, -2.0]], dtype=torch.float64),
                                torch.zeros(2, 2, dtype=torch.float64), 0.0, 3)
    est = monte_carlo_loss(fam, fam.W_bar, alpha=0.3, steps=4, num_tasks=500)
    assert est.mean == 0.0 and est.stderr == 0.0
    net = [torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64), fam.W_bar.clone()]
    est = monte_carlo_deep_loss(fam, net, alpha=0.3, adapt="all", steps=3, num_tasks=500)
    assert_close(est.mean, 0.0)


def test_estimate_is_labelled():
    est = MonteCarloEstimate(1.0, 0.01, 1000)
    mean, se, T = est
    assert (mean, se, T) == (1.0, 0.01, 1000)
    assert est.method == "Monte Carlo estimate"
    assert "Monte Carlo estimate" in str(est)
    lo, hi = est.interval(0.95)
    assert_close(hi - lo, 2 * 1.959963984540054 * 0.01)
    assert est.z_score(1.02) == pytest.approx(2.0)
    with pytest.raises(InvalidArgumentError, match="level"):
        est.interval(1.5)


def test_bad_input_names_the_field():
    fam = _family()
    W = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ShapeError, match="W"):
        monte_carlo_loss(fam, torch.zeros(3, 2), alpha=0.1)
    with pytest.raises(ShapeError, match="L"):
        monte_carlo_loss(fam, W, alpha=0.1, L=torch.eye(3))
    with pytest.raises(ShapeError, match="R"):
        monte_carlo_loss(fam, W, alpha=0.1, R=torch.eye(2))
    with pytest.raises(InvalidArgumentError, match="alpha"):
        monte_carlo_loss(fam, W, alpha=float("nan"))
    with pytest.raises(InvalidArgumentError, match="num_tasks"):
        monte_carlo_loss(fam, W, alpha=0.1, num_tasks=1)
    with pytest.raises(InvalidArgumentError, match="steps"):
        monte_carlo_loss(fam, W, alpha=0.1, steps=0)
    with pytest.raises(InvalidArgumentError, match="generator"):
        monte_carlo_loss(fam, W, alpha=0.1, generator=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="tasks"):
        monte_carlo_loss("tasks", W, alpha=0.1)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="network"):
        monte_carlo_deep_loss(fam, [torch.zeros(4, 2), torch.zeros(2, 4)], alpha=0.1, adapt=1)
    with pytest.raises(InvalidArgumentError, match="adapt"):
        monte_carlo_deep_loss(fam, [torch.zeros(4, 3), torch.zeros(2, 4)], alpha=0.1, adapt=5)
    with pytest.raises(ShapeError, match=r"weights\[1\]"):
        monte_carlo_deep_loss(fam, [torch.zeros(4, 3), torch.zeros(2, 5)], alpha=0.1, adapt=1)
