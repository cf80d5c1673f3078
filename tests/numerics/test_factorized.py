"""The factorized fast-weight engine (docs/theory/update-rules.md#factorized) against the per-task
autograd loop.

The reference is ``engine="loop"``: a Python loop over tasks with
``torch.autograd.grad(create_graph=True)`` on materialised fast weights
(:func:`maml_depth.numerics.inner_adapt_autograd`), which shares no code with the
factorized engine's hand-written batched backward pass.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics import (
    MLP,
    PRECONDITIONERS,
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    OuterConfig,
    Preconditioner,
    TaskBatch,
    meta_train,
    post_adaptation_losses,
    select_engine,
)
from maml_depth.numerics import factorized as factorized_module
from maml_depth.numerics.factorized import (
    _Kernel,
    factorized_support,
    kronecker_factors,
    register_kronecker,
)
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close, assume_not_diverged

F64 = torch.float64


# -- a Kronecker preconditioner built by hand in the documented KFO format -----------------
# D = AᵀA G BᵀB for a weight, AᵀA g for a bias; state keys "<param>#A", "<param>#B".
def _kron_init(params: dict[str, Tensor], names: tuple[str, ...]) -> dict[str, Tensor]:
    state = {}
    for n in names:
        p = params[n]
        state[f"{n}#A"] = torch.eye(p.shape[0], dtype=p.dtype)
        if p.ndim == 2:
            state[f"{n}#B"] = torch.eye(p.shape[1], dtype=p.dtype)
    return state


def _kron_apply(state: dict[str, Tensor], grads: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for n, g in grads.items():
        A = state[f"{n}#A"]
        if g.ndim == 1:
            out[n] = A.mT @ A @ g
        else:
            B = state[f"{n}#B"]
            out[n] = A.mT @ A @ g @ B.mT @ B
    return out


def _kron_factors(state, name, param):
    A = state[f"{name}#A"]
    if param.ndim == 1:
        return A.mT @ A, None
    B = state[f"{name}#B"]
    return A.mT @ A, B.mT @ B


HAND_KRON = register_kronecker(Preconditioner("test-kron", _kron_init, _kron_apply), _kron_factors)
#: Meta-SGD-like, elementwise: not Kronecker-factored (never registered with the engine).
ELEMENTWISE = Preconditioner(
    "test-elementwise",
    lambda params, names: {n: torch.ones_like(params[n]) for n in names},
    lambda state, grads: {n: state[n] * g for n, g in grads.items()},
)
PRECONDS: list[str | Preconditioner] = ["maml", HAND_KRON] + [
    p for p in ("meta-curvature", "kfo") if p in PRECONDITIONERS
]


@st.composite
def factorized_problems(draw):
    dims = draw(mst.layer_dims(min_depth=1, max_depth=4, min_width=1, max_width=5))
    kind = draw(st.sampled_from(["linear", "mlp"]))
    return dict(
        dims=dims,
        kind=kind,
        activation=draw(mst.activations()),
        bias=draw(st.booleans()),
        adapt=draw(mst.adapt_subsets(len(dims) - 1)),
        steps=draw(st.integers(1, 3)),
        alpha=draw(st.floats(0.01, 0.3)),
        first_order=draw(st.booleans()),
        precond=draw(st.sampled_from(PRECONDS)),
        population=kind == "linear" and draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _setup(p, T=3, n=4, nq=5):
    g = torch.Generator().manual_seed(p["seed"])
    dims = p["dims"]
    model: nn.Module
    if p["kind"] == "linear":
        model = DeepLinear(dims, generator=g)
    else:
        model = MLP(dims, p["activation"], bias=p["bias"], generator=g)
    fam = LinearRegressionTasks.isotropic(dims[0], dims[-1], sigma=0.1, n_support=n,
                                          n_query=None if p["population"] else nq)
    batch = fam.sample(T, g)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    inner = InnerConfig(alpha=p["alpha"], adapt=p["adapt"], steps=p["steps"],
                        first_order=p["first_order"], preconditioner=p["precond"])
    # a generic (non-identity) preconditioner state, so that its factors matter
    state = {k: (v + 0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype)).requires_grad_()
             for k, v in inner.init_state(model, params).items()}
    return model, fam, batch, params, inner, state


def _compare(model, fam, batch, params, inner, state):
    kw = dict(precond_state=state)
    ours = post_adaptation_losses(model, params, batch, fam, inner, engine="factorized", **kw)
    ref = post_adaptation_losses(model, params, batch, fam, inner, engine="loop", **kw)
    assume_not_diverged(ref)
    assert_close(ours, ref, what="per-task post-adaptation losses")
    leaves = {**params, **state}
    g_ours = torch.autograd.grad(ours.mean(), list(leaves.values()))
    g_ref = torch.autograd.grad(ref.mean(), list(leaves.values()))
    for name, a, b in zip(leaves, g_ours, g_ref, strict=True):
        assert_close(a, b, what=f"meta-gradient w.r.t. {name}")


@given(problem=factorized_problems())
def test_factorized_equals_per_task_autograd_loop(problem):
    """Meta-loss and meta-gradients (θ and φ) equal the loop to relative 1e-10 (float64)."""
    model, fam, batch, params, inner, state = _setup(problem)
    assert select_engine("auto", model, inner).name == "factorized"
    _compare(model, fam, batch, params, inner, state)


def test_layout_kernel_first_and_second_derivatives():
    """The custom ``a bᵀ`` kernel (used on large batches) has the right gradients and
    Hessian-vector products (torch's finite-difference gradcheck / gradgradcheck)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert_close(_Kernel.apply(a, b), a @ b.mT, what="kernel value")
    assert torch.autograd.gradcheck(_Kernel.apply, (a, b))
    assert torch.autograd.gradgradcheck(_Kernel.apply, (a, b))


@pytest.mark.parametrize("p", [
    dict(dims=(3, 5, 4, 2), kind="mlp", activation="tanh", bias=True, adapt="all", steps=2,
         alpha=0.2, first_order=False, precond="maml", population=False, seed=11),
    dict(dims=(4, 6, 5, 1), kind="linear", activation="relu", bias=False, adapt=(2, 3),
         steps=2, alpha=0.1, first_order=True, precond=PRECONDS[-1], population=False,
         seed=12),
], ids=["mlp-second-order", "linear-first-order-precond"])
def test_factorized_with_the_layout_kernel_equals_loop(p, monkeypatch):
    """Small problems take plain ``bmm``; force the custom kernel there and compare again."""
    monkeypatch.setattr(factorized_module, "_KERNEL_MIN_NUMEL", 0)
    calls = []
    real = _Kernel.apply
    monkeypatch.setattr(_Kernel, "apply", lambda *xs: calls.append(1) or real(*xs))
    _compare(*_setup(p, T=4, n=6, nq=7))
    assert calls, "the custom kernel was not used"


@pytest.mark.slow
@pytest.mark.parametrize("precond", PRECONDS, ids=str)
@pytest.mark.parametrize("activation", mst.ELEMENTWISE_ACTIVATIONS)
def test_factorized_equals_loop_every_activation_and_preconditioner(activation, precond):
    p = dict(dims=(3, 5, 4, 2), kind="mlp", activation=activation, bias=True,
             adapt=(1, 2, 3), steps=3, alpha=0.2, first_order=False, precond=precond,
             population=False, seed=7)
    _compare(*_setup(p, T=4, n=6, nq=7))


def test_factorized_first_order_is_fomaml():
    """First order detaches the inner gradient: the meta-gradient differs from second order
    (and each equals the loop's, by the property test); the forward values agree."""
    p = dict(dims=(3, 4, 4, 2), kind="mlp", activation="tanh", bias=True, adapt="all",
             steps=2, alpha=0.3, first_order=False, precond="maml", population=False, seed=1)
    model, fam, batch, params, inner, _ = _setup(p)
    fo = InnerConfig(alpha=0.3, steps=2, first_order=True)
    a = post_adaptation_losses(model, params, batch, fam, inner, engine="factorized").mean()
    b = post_adaptation_losses(model, params, batch, fam, fo, engine="factorized").mean()
    assert_close(a, b)
    ga = torch.autograd.grad(a, list(params.values()))
    gb = torch.autograd.grad(b, list(params.values()))
    assert max(float((x - y).norm() / y.norm()) for x, y in zip(ga, gb, strict=True)) > 1e-3


# -- a task family with another loss: the generic paths (loss gradient, query loss) --------
def _log_cosh(pred: Tensor, target: Tensor) -> Tensor:
    return torch.log(torch.cosh(pred - target)).sum() / pred.shape[-2]


class _LogCoshTasks:
    def __init__(self, base: LinearRegressionTasks) -> None:
        self.base = base

    @property
    def loss_fn(self):
        return _log_cosh

    def sample(self, num_tasks, generator):
        return self.base.sample(num_tasks, generator)

    def query_loss(self, model, params, Xq, Yq, W_t):
        return _log_cosh(functional_call(model, params, (Xq,)), Yq)


@given(dims=mst.layer_dims(min_depth=1, max_depth=3, max_width=4),
       activation=mst.activations(), seed=st.integers(0, 2**31 - 1))
def test_factorized_with_a_generic_loss_and_query_loss(dims, activation, seed):
    p = dict(dims=dims, kind="mlp", activation=activation, bias=True, adapt="all", steps=2,
             alpha=0.2, first_order=False, precond="maml", population=False, seed=seed)
    model, fam, batch, params, inner, state = _setup(p)
    _compare(model, _LogCoshTasks(fam), batch, params, inner, state)


#: activation modules a hand-built chain draws from: those with an in-place form in the
#: engine (ReLU, Tanh, Sigmoid) and others
_CHAIN_ACTS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Identity, nn.SiLU)
#: modules built with ``inplace=True``, drawn only right after a linear layer (later in a
#: chain they may overwrite an output another activation's backward reads, which plain
#: autograd rejects too); the engine must not let them overwrite a value it reads again
_IN_PLACE_ACTS = (lambda: nn.ReLU(inplace=True), lambda: nn.LeakyReLU(0.1, inplace=True),
                  lambda: nn.ELU(inplace=True), lambda: nn.Hardtanh(-2.0, 2.0, inplace=True))


@st.composite
def activation_chains(draw):
    """An ``nn.Sequential`` of linear layers, each followed by 0–3 activation modules (weights
    drawn from a seeded generator)."""
    dims = draw(mst.layer_dims(min_depth=1, max_depth=3, min_width=1, max_width=4))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        lin = nn.Linear(dims[i], dims[i + 1], bias=bias, dtype=F64)
        with torch.no_grad():
            for p in lin.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=F64) / dims[i] ** 0.5)
        mods.append(lin)
        for k in range(draw(st.integers(0, 3))):
            mods.append(draw(st.sampled_from(_CHAIN_ACTS + (_IN_PLACE_ACTS if k == 0 else ())))())
    return dims, nn.Sequential(*mods), seed


@given(chain=activation_chains(), steps=st.integers(1, 3), first_order=st.booleans())
def test_factorized_equals_loop_with_chains_of_activations(chain, steps, first_order):
    """Several activations after one layer (e.g. ReLU then Tanh), some built with
    ``inplace=True``: none may overwrite a value that is read again (regressions: two
    in-place activations in a row; ``nn.ReLU(inplace=True)`` overwriting the first layer's
    product, which later inner steps reuse)."""
    dims, model, seed = chain
    g = torch.Generator().manual_seed(seed)
    fam = LinearRegressionTasks.isotropic(dims[0], dims[-1], sigma=0.1, n_support=4,
                                          n_query=5)
    batch = fam.sample(3, g)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    inner = InnerConfig(alpha=0.2, steps=steps, first_order=first_order)
    assert select_engine("auto", model, inner).name == "factorized"
    _compare(model, fam, batch, params, inner, {})


def test_factorized_in_no_grad_evaluation():
    p = dict(dims=(3, 4, 2), kind="mlp", activation="gelu", bias=True, adapt="all", steps=2,
             alpha=0.2, first_order=False, precond="maml", population=False, seed=2)
    model, fam, batch, params, inner, _ = _setup(p)
    with torch.no_grad():
        a = post_adaptation_losses(model, params, batch, fam, inner, engine="factorized")
    b = post_adaptation_losses(model, params, batch, fam, inner, engine="vmap")
    assert_close(a, b)


class _MaxTensorSize(TorchDispatchMode):
    """Records the largest tensor any operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_factorized_never_materialises_per_task_weights():
    """With T tasks and hidden width h ≫ n, no tensor of T·h² entries (a per-task weight
    copy) is formed, forward or backward; the vmap engine does form them."""
    T, n, h = 16, 3, 40
    g = torch.Generator().manual_seed(0)
    model = DeepLinear((4, h, h, 1), generator=g)
    fam = LinearRegressionTasks.isotropic(4, 1, n_support=n, n_query=n)
    batch = fam.sample(T, g)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    inner = InnerConfig(alpha=0.1, steps=2)
    sizes = {}
    for engine in ("factorized", "vmap"):
        with _MaxTensorSize() as mode:
            loss = post_adaptation_losses(model, params, batch, fam, inner, engine=engine)
            loss.mean().backward()
        sizes[engine] = mode.largest
    assert sizes["factorized"] < T * h * h / 4 <= sizes["vmap"], sizes


# -- engine selection ------------------------------------------------------------------------
class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3, padding=1, dtype=F64)
        self.head = nn.Linear(8, 1, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.conv(x[:, None, :])).reshape(x.shape[0], -1))


def test_auto_selects_factorized_where_it_applies_and_says_why():
    inner = InnerConfig(alpha=0.1)
    c = select_engine("auto", DeepLinear((3, 4, 1)), inner)
    assert (c.name, c.reason.startswith("auto: factorized")) == ("factorized", True)
    c = select_engine("auto", MLP((3, 4, 1), "softplus"), inner)
    assert c.name == "factorized" and "Softplus" in c.reason
    seq = nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.Tanh(), nn.Linear(4, 1, dtype=F64))
    assert select_engine("auto", seq, inner).name == "factorized"
    for p in ("meta-curvature", "kfo"):
        if p in PRECONDITIONERS:
            assert select_engine("auto", MLP((3, 4, 1)), InnerConfig(alpha=0.1,
                                 preconditioner=p)).name == "factorized"


@pytest.mark.parametrize(("model", "inner", "why"), [
    (_Conv(), InnerConfig(alpha=0.1), "_Conv"),
    (DeepLinear((3, 4, 1)), InnerConfig(alpha=0.1, preconditioner=ELEMENTWISE),
     "test-elementwise"),
    (nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.Softmax(-1), nn.Linear(4, 1, dtype=F64)),
     InnerConfig(alpha=0.1), "Softmax"),
    (nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.PReLU(dtype=F64), nn.Linear(4, 1, dtype=F64)),
     InnerConfig(alpha=0.1), "PReLU"),
])
def test_auto_falls_back_to_vmap_and_forcing_factorized_raises(model, inner, why):
    c = select_engine("auto", model, inner)
    assert c.name == "vmap" and why in c.reason
    with pytest.raises(InvalidArgumentError, match=f"engine='factorized' does not apply.*{why}"):
        select_engine("factorized", model, inner)
    assert select_engine("vmap", model, inner).name == "vmap"
    assert select_engine("loop", model, inner).name == "loop"
    assert factorized_support(model, inner.precond) is not None


def test_meta_sgd_is_not_kronecker_factored():
    if "meta-sgd" in PRECONDITIONERS:
        assert kronecker_factors(PRECONDITIONERS["meta-sgd"]) is None
        c = select_engine("auto", MLP((3, 4, 1)), InnerConfig(alpha=0.1,
                                                            preconditioner="meta-sgd"))
        assert c.name == "vmap" and "meta-sgd" in c.reason


def test_bad_engine_and_population_loss_of_an_mlp():
    model = MLP((3, 4, 1), "relu")
    with pytest.raises(InvalidArgumentError, match="engine must be one of"):
        select_engine("fast", model, InnerConfig(alpha=0.1))
    fam = LinearRegressionTasks.isotropic(3, 1, n_support=4, n_query=None)
    batch = fam.sample(2, torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    with pytest.raises(InvalidArgumentError, match="n_query=None"):
        post_adaptation_losses(model, params, batch, fam, InnerConfig(alpha=0.1))


def test_factorized_rejects_query_inputs_of_the_wrong_shape():
    model = MLP((3, 4, 1), "relu")
    fam = LinearRegressionTasks.isotropic(3, 1, n_support=4, n_query=5)
    b = fam.sample(2, torch.Generator().manual_seed(0))
    bad = TaskBatch(b.X, b.Y, b.Xq[..., :2], b.Yq, b.W_t)
    with pytest.raises(ShapeError, match=r"query inputs Xq must be \(T, n_q, d\)"):
        post_adaptation_losses(model, dict(model.named_parameters()), bad, fam,
                               InnerConfig(alpha=0.1), engine="factorized")


def test_meta_train_reports_the_engine():
    fam = LinearRegressionTasks.isotropic(3, 1, n_support=4, n_query=4)
    outer = OuterConfig(meta_steps=2, meta_batch=4)
    res = meta_train(DeepLinear((3, 4, 1)), fam, InnerConfig(alpha=0.1), outer)
    assert res.engine == "factorized"
    res = meta_train(DeepLinear((3, 4, 1)), fam,
                     InnerConfig(alpha=0.1, preconditioner=ELEMENTWISE), outer)
    assert res.engine == "vmap"


def test_models_forwarding_to_a_sequential_net_are_recognised_by_their_code():
    """Any module whose forward is ``return self.net(x)`` around an nn.Sequential runs
    factorized (LinNetMLP is not named by the engine); a changed forward falls back."""
    from torch import nn

    from maml_depth.numerics import LinNetMLP, select_engine

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))

        def forward(self, x):
            return self.net(x)

    class Doubled(Wrapper):
        def forward(self, x):
            return 2 * self.net(x)

    inner = InnerConfig(alpha=0.1)
    lin = LinNetMLP((2, 4, 1), "relu", extra_linear=1, generator=torch.Generator().manual_seed(0))
    assert select_engine("auto", lin, inner).name == "factorized"
    assert select_engine("auto", Wrapper(), inner).name == "factorized"
    assert select_engine("auto", Doubled(), inner).name == "vmap"
