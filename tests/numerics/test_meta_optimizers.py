"""Meta-SGD, Meta-Curvature and KFO as preconditioners: formulas, known answers, MAML as the
identity-initialised special case, and the batched engine against the per-task loop.

The references here are written independently of the package, in numpy, from the
definitions (paper README, docs/theory/update-rules.md#one-step):

- Meta-SGD ``D = φ ⊙ G``;
- Meta-Curvature ``D = M_o G M_i`` (weights), ``M g`` (biases), kernels in tensor-product
  form ``vec D = (M_fᵀ ⊗ M_iᵀ ⊗ M_o) vec G`` (column-major vec of the (out, in, k) view);
- KFO ``D = LᵀL G RᵀR`` (weights), ``LᵀL g`` (biases), kernels
  ``vec D = (R_fᵀR_f ⊗ R_iᵀR_i ⊗ I_out) vec G``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics import (
    MLP,
    PRECONDITIONERS,
    ConvNet,
    DeepLinear,
    DigitsFewShot,
    InnerConfig,
    LinearRegressionTasks,
    cross_entropy_loss,
    get_preconditioner,
    inner_adapt,
    post_adaptation_losses,
    preconditioner_matrix,
    state_key,
    step_matrix,
)
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close

#: the optimizers with an independent numpy reference below (the formula tests); contract
#: tests draw from the registry itself (REGISTERED; test_meta_optimizer_contract.py)
REFERENCED = ("maml", "meta-sgd", "meta-curvature", "kfo")
REGISTERED = tuple(PRECONDITIONERS)
LEARNED = tuple(n for n in REGISTERED if n != "maml")
F64 = torch.float64


# -- independent numpy references ----------------------------------------------------------
def _np(t):
    return t.detach().cpu().numpy().astype(np.float64)


def _view(shape):
    shape = tuple(shape)
    if len(shape) <= 2:
        return shape
    return (shape[0], shape[1], math.prod(shape[2:]))


def reference_matrix(opt, state, name, shape):
    """E with vec D = E vec G (column-major vec of the matrix/tensor view)."""
    v = _view(shape)
    N = math.prod(v)
    s = {k.split("|", 1)[1]: _np(t) for k, t in state.items() if k.split("|", 1)[0] == name}
    if opt == "maml":
        return np.eye(N)
    if opt == "meta-sgd":
        return np.diag(s["lr"].reshape(v).reshape(-1, order="F"))
    if opt == "meta-curvature":
        if len(v) == 1:
            return s["M"]
        if len(v) == 2:
            return np.kron(s["M_in"].T, s["M_out"])
        return np.kron(s["M_f"].T, np.kron(s["M_in"].T, s["M_out"]))
    if opt == "kfo":
        if len(v) == 1:
            return s["L"].T @ s["L"]
        if len(v) == 2:
            return np.kron(s["R"].T @ s["R"], s["L"].T @ s["L"])
        Ri, Rf = s["R_in"].T @ s["R_in"], s["R_f"].T @ s["R_f"]
        return np.kron(Rf.T, np.kron(Ri, np.eye(v[0])))
    raise AssertionError(opt)


def reference_direction(opt, state, name, G):
    shape = tuple(G.shape)
    v = _view(shape)
    g = _np(G).reshape(v).reshape(-1, order="F")
    d = reference_matrix(opt, state, name, shape) @ g
    return d.reshape(v, order="F").reshape(shape)


def random_state(opt, params, names, generator, scale=0.3):
    """Initial state perturbed away from the identity (so no factor is trivial)."""
    st0 = get_preconditioner(opt).init(params, names)
    return {k: (v + scale * torch.randn(v.shape, generator=generator, dtype=v.dtype)
                / math.sqrt(max(1, v.shape[0]))).requires_grad_()
            for k, v in st0.items()}


def _leaf_params(model):
    return {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}


# -- registry and initialisation -----------------------------------------------------------
def test_registry_holds_the_four_optimizers_and_aliases_resolve():
    for name in REFERENCED:
        assert PRECONDITIONERS[name].name == name
    assert get_preconditioner("Meta-SGD").name == "meta-sgd"
    assert get_preconditioner("meta_curvature").name == "meta-curvature"
    assert get_preconditioner("KFO").name == "kfo"
    with pytest.raises(InvalidArgumentError, match="preconditioner must be one of"):
        get_preconditioner("adam")


@given(shape=mst.param_shapes(), opt=mst.preconditioner_names(), seed=st.integers(0, 2**31 - 1))
def test_initial_state_is_the_identity(shape, opt, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(shape, generator=g, dtype=F64)
    pre = get_preconditioner(opt)
    state = pre.init({"w": p, "other": p}, ("w",))
    assert all(k.startswith("w|") for k in state)  # only the adapted parameter gets a state
    G = torch.randn(shape, generator=g, dtype=F64)
    assert torch.equal(pre.apply(state, {"w": G})["w"], G)
    v = _view(shape)
    sizes = {k.split("|")[1]: tuple(t.shape) for k, t in state.items()}
    if opt == "meta-sgd":
        assert sizes == {"lr": tuple(shape)}
    elif opt == "meta-curvature":
        names = {1: ["M"], 2: ["M_out", "M_in"], 3: ["M_out", "M_in", "M_f"]}[len(v)]
        assert sizes == {n: (s, s) for n, s in zip(names, v, strict=True)}
    elif opt == "kfo":
        names = {1: ["L"], 2: ["L", "R"], 3: ["R_in", "R_f"]}[len(v)]
        sides = v if len(v) <= 2 else v[1:]  # kernels: shared across output channels
        assert sizes == {n: (s, s) for n, s in zip(names, sides, strict=True)}


# -- the formulas --------------------------------------------------------------------------
@given(shape=mst.param_shapes(), opt=mst.preconditioner_names(include_maml=False),
       seed=st.integers(0, 2**31 - 1))
def test_direction_and_matrix_equal_the_reference_formulas(shape, opt, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(shape, generator=g, dtype=F64)
    state = random_state(opt, {"w": p}, ("w",), g)
    G = torch.randn(shape, generator=g, dtype=F64)
    D = get_preconditioner(opt).apply(state, {"w": G})["w"]
    assert_close(D, reference_direction(opt, state, "w", G), what=f"{opt} direction")
    E = preconditioner_matrix(opt, state, "w", shape)
    assert_close(E, reference_matrix(opt, state, "w", shape), what=f"{opt} matrix")
    if len(shape) == 2:  # the literal matrix forms
        s = {k.split("|")[1]: v.detach() for k, v in state.items()}
        lit = {"meta-sgd": lambda: s["lr"] * G,
               "meta-curvature": lambda: s["M_out"] @ G @ s["M_in"],
               "kfo": lambda: s["L"].T @ s["L"] @ G @ s["R"].T @ s["R"]}[opt]()
        assert_close(D, lit, what=f"{opt} literal form")


def test_matrix_shape_is_inferred_where_the_state_determines_it():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(2, 3, dtype=F64, generator=g)
    for opt in ("meta-sgd", "meta-curvature", "kfo"):
        state = random_state(opt, {"w": p}, ("w",), g)
        assert_close(preconditioner_matrix(opt, state, "w"),
                     preconditioner_matrix(opt, state, "w", (2, 3)))
    assert_close(preconditioner_matrix("maml", {}, "w", (2, 3)), np.eye(6))
    with pytest.raises(InvalidArgumentError, match="shape"):
        preconditioner_matrix("maml", {}, "w")


@st.composite
def single_layer_problems(draw):
    d, m = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 7))
    bias = draw(st.booleans())
    opt = draw(mst.preconditioner_names())
    alpha = draw(st.floats(0.05, 0.8))
    return d, m, n, bias, opt, alpha, draw(st.integers(0, 2**31 - 1))


@given(problem=single_layer_problems())
def test_one_inner_step_of_a_linear_layer_is_the_closed_form_update(problem):
    """f(x) = W x + b, ℓ = ‖XWᵀ + b − Y‖²/(2n): G_W = Rᵀ X / n, g_b = Rᵀ 1 / n with
    R = XWᵀ + b − Y; one step is W' = W − α D(G_W), b' = b − α D(g_b)."""
    d, m, n, bias, opt, alpha, seed = problem
    g = torch.Generator().manual_seed(seed)
    model = MLP((d, m), "identity", bias=bias, generator=g)
    params = dict(model.named_parameters())
    X = torch.randn(n, d, generator=g, dtype=F64)
    Y = torch.randn(n, m, generator=g, dtype=F64)
    names = tuple(params)
    state = random_state(opt, params, names, g)
    fast = inner_adapt(model, params, X, Y, alpha=alpha, preconditioner=opt,
                       precond_state=state)
    W = params["net.0.weight"]
    b = params["net.0.bias"] if bias else torch.zeros(m, dtype=F64)
    R = X @ W.T + b - Y
    grads = {"net.0.weight": R.T @ X / n, "net.0.bias": R.sum(0) / n}
    for name in names:
        expected = _np(params[name]) - alpha * reference_direction(opt, state, name, grads[name])
        assert_close(fast[name], expected, what=f"{opt} {name}")


@given(d=st.integers(1, 5), m=st.integers(1, 3), extra=st.integers(0, 4),
       opt=mst.preconditioner_names(), seed=st.integers(0, 2**31 - 1))
def test_a_newton_preconditioner_solves_least_squares_in_one_step(d, m, extra, opt, seed):
    """Noiseless least squares ``ℓ(W) = ½ tr((W − W*) Σ̂ (W − W*)ᵀ)``, ``Σ̂ = XᵀX/n``: the
    gradient is ``(W − W*) Σ̂``, so the step with ``D = G Σ̂⁻¹`` (α = 1) lands on ``W*``.
    Each class realises that step on the design it can handle: MAML with ``Σ̂ = λI``
    (α = 1/λ); Meta-SGD with a diagonal ``Σ̂`` (φ = 1/diag Σ̂, broadcast over rows);
    Meta-Curvature with ``M_i = Σ̂⁻¹``; KFO with ``R = Σ̂^{-1/2}``."""
    g = torch.Generator().manual_seed(seed)
    n = d + extra
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    s = 0.5 + torch.rand(d, generator=g, dtype=F64)
    if opt == "maml":
        s = s[:1].expand(d)
    if opt in ("maml", "meta-sgd"):
        X = math.sqrt(n) * Q[:, :d] * s  # orthogonal columns: Σ̂ = diag(s²)
    else:
        X = torch.randn(n, d, generator=g, dtype=F64) + 2 * Q[:, :d]
    S_hat = X.T @ X / n
    W_star = torch.randn(m, d, generator=g, dtype=F64)
    model = DeepLinear((d, m), generator=g)
    params = dict(model.named_parameters())
    name = "layers.0.weight"
    alpha = 1.0
    state = get_preconditioner(opt).init(params, (name,))
    if opt == "maml":
        alpha = 1.0 / float(s[0] ** 2)
    elif opt == "meta-sgd":
        state[state_key(name, "lr")] = (1.0 / torch.diagonal(S_hat)).expand(m, d).clone()
    elif opt == "meta-curvature":
        state[state_key(name, "M_in")] = torch.linalg.inv(S_hat)
    else:
        ev, U = torch.linalg.eigh(S_hat)
        state[state_key(name, "R")] = (U * ev.rsqrt()) @ U.T
    fast = inner_adapt(model, params, X, X @ W_star.T, alpha=alpha, preconditioner=opt,
                       precond_state=state)
    assert_close(fast[name], W_star, rtol=1e-9, what=f"{opt}: W after one Newton step")


@pytest.mark.parametrize("opt", REFERENCED)
def test_conv_kernel_step_uses_the_tensor_product_forms(opt):
    """On a CNN, one inner step of each kernel is θ − α D(G) with G from autograd and D the
    reference (Meta-Curvature over out/in/kernel positions, KFO over in/kernel positions)."""
    g = torch.Generator().manual_seed(3)
    model = ConvNet(3, (2, 3), image=4, generator=g)
    params = dict(model.named_parameters())
    X = torch.rand(5, 16, generator=g, dtype=F64)
    Y = torch.eye(3, dtype=F64)[torch.tensor([0, 1, 2, 0, 1])]
    loss_fn = cross_entropy_loss
    names = tuple(params)
    state = random_state(opt, params, names, g)
    fast = inner_adapt(model, params, X, Y, alpha=0.3, preconditioner=opt,
                       precond_state=state, loss_fn=loss_fn)
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    loss = loss_fn(torch.func.functional_call(model, leaves, (X,)), Y)
    grads = dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names]), strict=True))
    for name in names:
        expected = _np(params[name]) - 0.3 * reference_direction(opt, state, name, grads[name])
        assert_close(fast[name], expected, what=f"{opt} {name}")


# -- MAML as the identity-initialised special case -----------------------------------------
@st.composite
def engine_problems(draw, max_depth=4):
    kind = draw(st.sampled_from(["linear", "mlp"]))
    dims = draw(mst.layer_dims(min_depth=1, max_depth=max_depth, min_width=1, max_width=5))
    S = draw(mst.adapt_subsets(len(dims) - 1))
    k = draw(st.integers(1, 3))
    alpha = draw(st.floats(0.01, 0.3))
    first_order = draw(st.booleans())
    return kind, dims, S, k, alpha, first_order, draw(st.integers(0, 2**31 - 1))


def _setup(kind, dims, seed, T=3, n=4, nq=5):
    g = torch.Generator().manual_seed(seed)
    model = (DeepLinear(dims, generator=g) if kind == "linear"
             else MLP(dims, "tanh", bias=True, generator=g))
    fam = LinearRegressionTasks.isotropic(dims[0], dims[-1], sigma=0.1, n_support=n,
                                          n_query=nq)
    return model, fam, fam.sample(T, g), _leaf_params(model), g


@given(problem=engine_problems(), opt=mst.preconditioner_names(include_maml=False))
def test_identity_initialised_optimizers_reproduce_maml_meta_gradient(problem, opt):
    kind, dims, S, k, alpha, first_order, seed = problem
    model, fam, batch, params, _ = _setup(kind, dims, seed)
    maml = InnerConfig(alpha=alpha, adapt=S, steps=k, first_order=first_order)
    ours = InnerConfig(alpha=alpha, adapt=S, steps=k, first_order=first_order,
                       preconditioner=opt)
    state = {k_: v.requires_grad_() for k_, v in ours.init_state(model, params).items()}
    a = post_adaptation_losses(model, params, batch, fam, maml, engine="vmap").mean()
    b = post_adaptation_losses(model, params, batch, fam, ours, precond_state=state,
                               engine="vmap").mean()
    assert_close(b, a, what="meta-loss")
    ga = torch.autograd.grad(a, list(params.values()))
    gb = torch.autograd.grad(b, list(params.values()))
    for name, x, y in zip(params, gb, ga, strict=True):
        assert_close(x, y, what=f"{opt}: meta-gradient of {name}")


@given(problem=engine_problems(), c=st.floats(0.2, 2.0))
def test_meta_sgd_with_equal_step_sizes_is_maml(problem, c):
    """φ ≡ c: every entry steps by α·c, which is MAML with step size α·c."""
    kind, dims, S, k, alpha, first_order, seed = problem
    model, fam, batch, params, _ = _setup(kind, dims, seed)
    inner = InnerConfig(alpha=alpha, adapt=S, steps=k, first_order=first_order,
                        preconditioner="meta-sgd")
    state = {k_: torch.full_like(v, c) for k_, v in inner.init_state(model, params).items()}
    a = post_adaptation_losses(
        model, params, batch, fam,
        InnerConfig(alpha=alpha * c, adapt=S, steps=k, first_order=first_order),
        engine="vmap").mean()
    b = post_adaptation_losses(model, params, batch, fam, inner, precond_state=state,
                               engine="vmap").mean()
    assert_close(b, a, what="meta-loss")
    for name, x, y in zip(params, torch.autograd.grad(b, list(params.values())),
                          torch.autograd.grad(a, list(params.values())), strict=True):
        assert_close(x, y, what=f"meta-gradient of {name}")


# -- batched engine against the per-task autograd loop -------------------------------------
def _compare_engines(model, params, state, batch, fam, inner):
    a = post_adaptation_losses(model, params, batch, fam, inner, precond_state=state,
                               engine="vmap")
    b = post_adaptation_losses(model, params, batch, fam, inner, precond_state=state,
                               engine="loop")
    assert_close(a, b, what="per-task losses")
    leaves = list(params.values()) + list(state.values())
    names = list(params) + list(state)
    ga = torch.autograd.grad(a.mean(), leaves)
    gb = torch.autograd.grad(b.mean(), leaves)
    for name, x, y in zip(names, ga, gb, strict=True):
        assert_close(x, y, what=f"meta-gradient w.r.t. {name}")


@given(problem=engine_problems(), opt=mst.preconditioner_names(include_maml=False))
def test_vmap_meta_gradients_equal_the_per_task_loop_including_the_state(problem, opt):
    kind, dims, S, k, alpha, first_order, seed = problem
    model, fam, batch, params, g = _setup(kind, dims, seed)
    inner = InnerConfig(alpha=alpha, adapt=S, steps=k, first_order=first_order,
                        preconditioner=opt)
    state = random_state(opt, params, inner.names(model), g)
    _compare_engines(model, params, state, batch, fam, inner)


@pytest.mark.parametrize("opt", LEARNED)
@pytest.mark.parametrize("adapt", ["all", (1,), (3,)])
def test_vmap_equals_loop_on_a_cnn(opt, adapt):
    g = torch.Generator().manual_seed(11)
    model = ConvNet(3, (2, 2), generator=g)
    fam = DigitsFewShot("train", n_way=3, k_shot=1, n_query=2)
    batch = fam.sample(2, g)
    params = _leaf_params(model)
    inner = InnerConfig(alpha=0.2, adapt=adapt, steps=2, preconditioner=opt)
    state = random_state(opt, params, inner.names(model), g)
    _compare_engines(model, params, state, batch, fam, inner)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("opt", REGISTERED)
def test_cuda_meta_gradients_equal_cpu(opt):
    g = torch.Generator().manual_seed(5)
    model = ConvNet(3, (2, 2), generator=g)
    fam = DigitsFewShot("train", n_way=3, k_shot=2, n_query=2)
    batch = fam.sample(4, g)
    params = _leaf_params(model)
    inner = InnerConfig(alpha=0.2, steps=2, preconditioner=opt)
    state = random_state(opt, params, inner.names(model), g)
    res = []
    for dev in ("cpu", "cuda"):
        p = {k: v.detach().to(dev).requires_grad_() for k, v in params.items()}
        s = {k: v.detach().to(dev).requires_grad_() for k, v in state.items()}
        b = type(batch)(*(None if t is None else t.to(dev) for t in
                          (batch.X, batch.Y, batch.Xq, batch.Yq, batch.W_t)))
        loss = post_adaptation_losses(model.to(dev), p, b, fam.to(dev), inner,
                                      precond_state=s, engine="vmap").mean()
        res.append([loss, *torch.autograd.grad(loss, [*p.values(), *s.values()])])
    for x, y in zip(*res, strict=True):
        assert_close(x.cpu(), y.cpu(), rtol=1e-9)


# -- read-out for the theory comparisons ---------------------------------------------------
@given(d=st.integers(1, 5), alpha=st.floats(0.05, 1.0), opt=mst.preconditioner_names(),
       seed=st.integers(0, 2**31 - 1))
def test_step_matrix_is_the_effective_P_of_the_update_W_minus_G_P(d, alpha, opt, seed):
    """Single output: one inner step is W' = W − G P with P = step_matrix(...)
    (docs/theory/expected-loss.md#optimal-preconditioner),
    and P has the class's closed form."""
    g = torch.Generator().manual_seed(seed)
    model = DeepLinear((d, 1), generator=g)
    params = dict(model.named_parameters())
    name = "layers.0.weight"
    state = random_state(opt, params, (name,), g)
    P = step_matrix(opt, state, name, alpha, d=d)
    s = {k.split("|")[1]: v.detach() for k, v in state.items()}
    closed = {"maml": lambda: alpha * torch.eye(d, dtype=F64),
              "meta-sgd": lambda: alpha * torch.diag(s["lr"][0]),
              "meta-curvature": lambda: alpha * s["M_out"][0, 0] * s["M_in"],
              "kfo": lambda: alpha * s["L"][0, 0] ** 2 * s["R"].T @ s["R"]}[opt]()
    assert_close(P, closed, what=f"{opt} P")
    X = torch.randn(6, d, generator=g, dtype=F64)
    Y = torch.randn(6, 1, generator=g, dtype=F64)
    fast = inner_adapt(model, params, X, Y, alpha=alpha, preconditioner=opt,
                       precond_state=state)
    W = params[name]
    G = (X @ W.T - Y).T @ X / 6
    assert_close(fast[name], W - G @ P, what="W − G P")


def test_step_matrix_rejects_a_multi_output_weight():
    p = {"w": torch.zeros(2, 3, dtype=F64)}
    with pytest.raises(ShapeError, match="single-output"):
        step_matrix("kfo", get_preconditioner("kfo").init(p, ("w",)), "w", 0.1)


@pytest.mark.parametrize("opt", LEARNED)
def test_a_state_for_other_parameters_is_rejected_by_name(opt):
    pre = get_preconditioner(opt)
    state = pre.init({"a": torch.zeros(2, 2, dtype=F64)}, ("a",))
    with pytest.raises(InvalidArgumentError, match=r"lacks 'b\|"):
        pre.apply(state, {"b": torch.zeros(2, 2, dtype=F64)})
