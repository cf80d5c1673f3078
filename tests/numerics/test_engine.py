"""The batched MAML engine against a straightforward per-task autograd loop.

The reference below is written from docs/theory/update-rules.md#one-step with plain weight
matrices (no
functional_call, no torch.func): ``f(x) = W_L ⋯ W_1 x``, ``ℓ = ‖WX − Y‖²/(2n)``, inner step
``W_j ← W_j − α ∂ℓ/∂W_j`` on the layers in S, k times, then the query loss.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.numerics import (
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    inner_adapt,
    post_adaptation_losses,
)
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close, assume_not_diverged


def reference_meta_loss(weights, X, Y, Xq, Yq, alpha, S, k, first_order):
    """Mean over tasks of the query loss after k inner steps; X (T, n, d) rows."""
    total = 0.0
    for t in range(X.shape[0]):
        fast = list(weights)
        for _ in range(k):
            out = X[t]
            for W in fast:
                out = out @ W.T
            loss = 0.5 * ((out - Y[t]) ** 2).sum() / X.shape[1]
            grads = torch.autograd.grad(loss, [fast[j - 1] for j in S],
                                        create_graph=not first_order)
            for j, g in zip(S, grads, strict=True):
                fast[j - 1] = fast[j - 1] - alpha * (g.detach() if first_order else g)
        out = Xq[t]
        for W in fast:
            out = out @ W.T
        total = total + 0.5 * ((out - Yq[t]) ** 2).sum() / Xq.shape[1]
    return total / X.shape[0]


@st.composite
def engine_problems(draw):
    dims = draw(mst.layer_dims(min_depth=1, max_depth=5, min_width=1, max_width=6))
    S = draw(mst.adapt_subsets(len(dims) - 1))
    k = draw(st.integers(1, 3))
    alpha = draw(st.floats(0.01, 0.3))
    seed = draw(st.integers(0, 2**31 - 1))
    return dims, S, k, alpha, seed


def _setup(dims, seed, T=3, n=4, nq=5):
    g = torch.Generator().manual_seed(seed)
    model = DeepLinear(dims, generator=g)
    d, m = dims[0], dims[-1]
    fam = LinearRegressionTasks.isotropic(d, m, sigma=0.1, n_support=n, n_query=nq)
    batch = fam.sample(T, g)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    return model, fam, batch, params


@pytest.mark.parametrize("first_order", [False, True])
@given(problem=engine_problems())
def test_vmap_meta_gradient_equals_per_task_autograd_loop(problem, first_order):
    dims, S, k, alpha, seed = problem
    model, fam, batch, params = _setup(dims, seed)
    inner = InnerConfig(alpha=alpha, adapt=S, steps=k, first_order=first_order)
    ours = post_adaptation_losses(model, params, batch, fam, inner, engine="vmap").mean()
    weights = [params[n] for n in model.weight_names]
    ref = reference_meta_loss(weights, batch.X, batch.Y, batch.Xq, batch.Yq, alpha, S, k,
                              first_order)
    assume_not_diverged(ref)
    assert_close(ours, ref, what="meta-loss")
    g_ours = torch.autograd.grad(ours, weights)
    g_ref = torch.autograd.grad(ref, weights)
    for j, (a, b) in enumerate(zip(g_ours, g_ref, strict=True), start=1):
        assert_close(a, b, what=f"meta-gradient of W_{j}")


@given(problem=engine_problems())
def test_loop_engine_equals_vmap_engine(problem):
    dims, S, k, alpha, seed = problem
    model, fam, batch, params = _setup(dims, seed)
    inner = InnerConfig(alpha=alpha, adapt=S, steps=k)
    a = post_adaptation_losses(model, params, batch, fam, inner, engine="vmap")
    b = post_adaptation_losses(model, params, batch, fam, inner, engine="loop")
    assume_not_diverged(b)
    assert_close(a, b)
    for x, y in zip(torch.autograd.grad(a.sum(), list(params.values())),
                    torch.autograd.grad(b.sum(), list(params.values())), strict=True):
        assert_close(x, y)


def test_first_order_differs_from_second_order():
    """FOMAML drops the Hessian term: on a depth-2 net the gradients must differ."""
    model, fam, batch, params = _setup((3, 4, 2), seed=1)
    so = post_adaptation_losses(model, params, batch, fam, InnerConfig(alpha=0.2)).mean()
    fo = post_adaptation_losses(model, params, batch, fam,
                                InnerConfig(alpha=0.2, first_order=True)).mean()
    assert_close(so, fo)  # same forward value
    gs = torch.autograd.grad(so, list(params.values()))
    gf = torch.autograd.grad(fo, list(params.values()))
    assert max(float((a - b).norm() / b.norm()) for a, b in zip(gs, gf, strict=True)) > 1e-3


@given(dims=mst.layer_dims(min_depth=1, max_depth=5, max_width=6),
       alpha=st.floats(-0.5, 0.5), seed=st.integers(0, 2**31 - 1))
def test_top_layer_step_changes_end_to_end_map_by_minus_alpha_G_BtB(dims, alpha, seed):
    """S = {L}: W' = W − α G B_LᵀB_L exactly (docs/theory/update-rules.md#one-step), G = (WX −
    Y)Xᵀ/n, X columns."""
    g = torch.Generator().manual_seed(seed)
    model = DeepLinear(dims, generator=g)
    n = 5
    X = torch.randn(n, dims[0], generator=g, dtype=torch.float64)
    Y = torch.randn(n, dims[-1], generator=g, dtype=torch.float64)
    params = dict(model.named_parameters())
    fast = inner_adapt(model, params, X, Y, alpha=alpha, adapt=[len(dims) - 1])
    W = model.end_to_end(params)
    B = torch.eye(dims[0], dtype=torch.float64)
    for Wj in model.weights[:-1]:
        B = Wj @ B
    G = (W @ X.T - Y.T) @ X / n
    assert_close(model.end_to_end(fast), W - alpha * G @ B.T @ B, what="W'")


def test_wrong_formula_is_caught():
    """Sanity of the check above: the input-side factor on the wrong side fails."""
    g = torch.Generator().manual_seed(3)
    model = DeepLinear((3, 4, 2), generator=g)
    X = torch.randn(6, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    params = dict(model.named_parameters())
    fast = inner_adapt(model, params, X, Y, alpha=0.3, adapt=[2])
    W = model.end_to_end(params)
    G = (W @ X.T - Y.T) @ X / 6
    B = model.weights[0]
    with pytest.raises(AssertionError):
        assert_close(model.end_to_end(fast), W - 0.3 * G @ B.T @ B + 0.3 * G, what="W'")
    with pytest.raises(AssertionError):
        assert_close(model.end_to_end(fast), W - 0.3 * G, what="W'")
