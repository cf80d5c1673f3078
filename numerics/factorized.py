"""Factorized fast-weight MAML: adapt linear layers without forming per-task weights.

For a linear layer ``z = h Wᵀ + b`` (rows are samples) the support-set gradient is a sum of
n outer products, ``∇_W ℓ = δᵀ h`` with ``δ = ∂ℓ/∂z`` (n × d_out) and ``h`` the layer's input
(n × d_in); ``∇_b ℓ = 1ᵀ δ``. A Kronecker-factored preconditioner keeps that structure:
``L (δᵀ h) R = (δ Lᵀ)ᵀ (h R)``. After k inner steps the fast weight is therefore

    W'_t = W − α U_tᵀ V_t,    U_t = [δ_1 Lᵀ; …; δ_k Lᵀ]  (kn × d_out),
                              V_t = [h_1 R; …; h_k R]    (kn × d_in)

(δ_s, h_s of task t at inner step s) and on any inputs ``x`` of task t (support or query)

    x W'ᵀ_t = x Wᵀ − α (x V_tᵀ) U_t          (docs/theory/update-rules.md#factorized)

The shared product ``x Wᵀ`` of every task is *one* matrix product over the stacked tasks;
the per-task work is the small kernel ``x V_tᵀ`` (n_x × kn). Back-propagation to the layer
below goes through the same factors: ``δ W'_t = δ W − α (δ U_tᵀ) V_t``. Elementwise
activations only change δ (by their derivative). The inner backward pass is written out by
hand in batched form with ordinary tensor operations, so the meta-gradient (second order)
is ordinary autograd through matrix products; first order (FOMAML) detaches the gradient
factors ``δ`` and ``h`` (the preconditioner's factors still receive gradients). Per-task
memory is O(kn (d_in + d_out)) per layer instead of O(d_in d_out).

Applies to :class:`~maml_depth.numerics.networks.DeepLinear`,
:class:`~maml_depth.numerics.networks.MLP` and plain ``nn.Sequential`` chains of
``nn.Linear`` and parameter-free elementwise activations, with a preconditioner whose
Kronecker factors are declared on the optimizer object (``Preconditioner.kronecker``; MAML's
identity, Meta-Curvature and KFO). Elsewhere (Meta-SGD, convolutions, arbitrary modules) the engines
fall back to ``torch.func.vmap`` (:func:`factorized_support` says why).

The population query loss (``n_query=None``, deep linear nets) needs each task's adapted
end-to-end map: it is the factorized forward pass of the identity matrix (``I W'ᵀ``), so it
is computed in factorized form too.

References: docs/theory/update-rules.md#factorized (and §1 for the update); Finn et al. (2017);
Park & Oliva (2019,
Meta-Curvature); Arnold et al. (2021, KFO).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.losses import mse_loss
from maml_depth.numerics.networks import MLP, DeepLinear, Params, layer_groups
from maml_depth.numerics.preconditioners import (
    PRECONDITIONERS,
    FactorFn,
    Preconditioner,
    register,
)
from maml_depth.numerics.tasks import LinearRegressionTasks

__all__ = [
    "ELEMENTWISE_ACTIVATIONS",
    "FactorFn",
    "FactorizedPlan",
    "factorized_plan",
    "factorized_post_adaptation_losses",
    "factorized_support",
    "kronecker_factors",
    "register_kronecker",
]

#: Parameter-free activation modules that act elementwise (the factorized engine
#: back-propagates through them with their derivative).
ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Softplus, nn.LeakyReLU, nn.ELU,
    nn.CELU, nn.SELU, nn.SiLU, nn.Mish, nn.Softsign, nn.Tanhshrink, nn.Hardtanh, nn.ReLU6,
    nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid,
)

# -- preconditioners with Kronecker structure ---------------------------------------------


def register_kronecker(pre: Preconditioner, fn: FactorFn) -> Preconditioner:
    """``pre`` with Kronecker factors ``fn`` (:meth:`Preconditioner.with_kronecker`): its
    ``apply`` maps the gradient ``G`` of each parameter to ``left @ G @ right`` with
    ``(left, right) = fn(state, name, param)``, so the factorized engine can run it. ``fn``
    must be a pure, differentiable torch function of the state. Where ``pre`` is the
    registered object of its name, the registry gets the new one."""
    out = pre.with_kronecker(fn)
    if PRECONDITIONERS.get(pre.name) is pre:
        register(out, replace=True)
    return out


def kronecker_factors(pre: Preconditioner) -> FactorFn | None:
    """The optimizer's own factor function (None: not Kronecker-factored)."""
    return pre.kronecker


# -- the network as a chain of linear layers and elementwise functions ---------------------


@dataclass(frozen=True)
class _Layer:
    weight: str
    bias: str | None
    after: tuple[nn.Module, ...]  # elementwise functions applied after this layer, in order


@dataclass(frozen=True)
class FactorizedPlan:
    """The chain ``x → Linear_1 → acts → … → Linear_L → acts`` the engine evaluates."""

    layers: tuple[_Layer, ...]
    description: str = field(default="")


def _elementwise(m: nn.Module) -> bool:
    return (isinstance(m, ELEMENTWISE_ACTIVATIONS)
            and not any(True for _ in m.parameters())
            and not m._forward_hooks and not m._forward_pre_hooks)


def _forwards_net(model: nn.Module) -> bool:
    """Models whose forward is literally ``return self.net(x)`` (the code of
    :meth:`MLP.forward`; e.g. MLP and LinNetMLP) around an ``nn.Sequential`` ``net``: the
    model answers by its own code, no class is named here."""
    fwd = getattr(type(model).forward, "__code__", None)
    ref = MLP.forward.__code__
    return (fwd is not None and fwd.co_code == ref.co_code and fwd.co_names == ref.co_names
            and fwd.co_varnames == ref.co_varnames
            and isinstance(getattr(model, "net", None), nn.Sequential))


def _chain_modules(model: nn.Module) -> list[nn.Module] | str:
    """The modules ``model`` applies in order, or the reason they are not known."""
    if isinstance(model, DeepLinear) and type(model).forward is DeepLinear.forward:
        return list(model.layers)
    if _forwards_net(model):
        model = model.net  # type: ignore[assignment]
    if isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward:
        out: list[nn.Module] = []
        for m in model:
            sub = _chain_modules(m) if isinstance(m, nn.Sequential) else [m]
            if isinstance(sub, str):
                return sub
            out += sub
        return out
    return (f"{type(model).__name__} is not a DeepLinear, MLP or nn.Sequential "
            f"(its forward pass is not known to be a chain of linear layers)")


_PLANS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[object, ...], FactorizedPlan | str]] = (
    weakref.WeakKeyDictionary())


def _signature(model: nn.Module) -> tuple[object, ...]:
    """What a plan depends on: the modules, their parameters' names and their hooks
    (a direct walk of the module tree: called on every meta-step, so kept cheap)."""
    out: list[object] = []
    stack = [model]
    while stack:
        m = stack.pop()
        out.append((id(m), tuple(m._parameters), tuple(v is None for v in m._parameters.values()),
                    len(m._forward_hooks) + len(m._forward_pre_hooks)))
        stack.extend(m._modules.values())  # type: ignore[arg-type]
    return tuple(out)


def factorized_plan(model: nn.Module) -> FactorizedPlan | str:
    """The model as a chain of ``nn.Linear`` layers and elementwise activations, or a
    sentence saying why it is not one (cached per model while its structure is unchanged)."""
    sig = _signature(model)
    hit = _PLANS.get(model)
    if hit is not None and hit[0] == sig:
        return hit[1]
    plan = _make_plan(model)
    _PLANS[model] = (sig, plan)
    return plan


def _make_plan(model: nn.Module) -> FactorizedPlan | str:
    mods = _chain_modules(model)
    if isinstance(mods, str):
        return mods
    prefix = {id(m): name for name, m in model.named_modules()}
    layers: list[_Layer] = []
    acts: list[nn.Module] = []
    pending: tuple[str, str | None] | None = None
    for m in mods:
        if isinstance(m, nn.Linear):
            if type(m).forward is not nn.Linear.forward or m._forward_hooks \
                    or m._forward_pre_hooks:
                return f"{type(m).__name__} layer has a custom forward or hooks"
            if pending is not None:
                layers.append(_Layer(*pending, tuple(acts)))
            elif acts:
                return "the network must start with an nn.Linear layer"
            p = prefix[id(m)]
            dot = f"{p}." if p else ""
            pending = (f"{dot}weight", f"{dot}bias" if m.bias is not None else None)
            acts = []
        elif _elementwise(m):
            acts.append(m)
        else:
            return (f"module {type(m).__name__} is neither nn.Linear nor a known elementwise "
                    f"activation")
    if pending is None:
        return "the network has no nn.Linear layer"
    layers.append(_Layer(*pending, tuple(acts)))
    names = [[ly.weight] + ([ly.bias] if ly.bias else []) for ly in layers]
    if layer_groups(model) != names:
        return "the network has parameters outside its nn.Linear layers"
    act_names = sorted({type(a).__name__ for ly in layers for a in ly.after})
    desc = (f"{len(layers)} linear layer(s)"
            f"{', biases' if any(ly.bias for ly in layers) else ''}"
            f"{', activations ' + '/'.join(act_names) if act_names else ''}")
    return FactorizedPlan(tuple(layers), desc)


def factorized_support(model: nn.Module, pre: Preconditioner,
                       plan: FactorizedPlan | str | None = None) -> str | None:
    """None when the factorized engine applies to ``model`` with ``pre``, else the reason
    (``plan``: :func:`factorized_plan` of ``model``, when the caller has it already)."""
    if plan is None:
        plan = factorized_plan(model)
    if isinstance(plan, str):
        return plan
    if pre.kronecker is None:
        return f"preconditioner {pre.name!r} has no Kronecker factors: {pre.no_kronecker}"
    return None


# -- elementwise derivatives ----------------------------------------------------------------


#: activations whose backward needs only their output: applied in place on the
#: pre-activation (a fresh tensor of the engine's), which saves one (T, n, d) copy per layer
_IN_PLACE: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_,
}


def _out_of_place(act: nn.Module) -> nn.Module:
    """``act`` itself, or for a module built with ``inplace=True`` (``nn.ReLU(inplace=True)``
    and the like) a shallow copy that leaves its input alone: the engine decides itself what
    it may overwrite (the module is copied at each call, so later changes to it count)."""
    if not getattr(act, "inplace", False):
        return act
    out = copy.copy(act)
    setattr(out, "inplace", False)  # noqa: B010 (nn.Module attribute typing)
    return out


def _act_forward(act: nn.Module, z: Tensor, in_place: bool) -> Tensor:
    """``a(z)``, in place on ``z`` where ``in_place`` allows it and ``a`` has an in-place
    form whose backward needs only its output; never in place otherwise, whatever the
    module's own ``inplace`` flag says."""
    if isinstance(act, nn.Identity):
        return z
    inplace = _IN_PLACE.get(type(act)) if in_place else None
    return inplace(z) if inplace is not None else _out_of_place(act)(z)


def _act_backward(act: nn.Module, z: Tensor, out: Tensor, cot: Tensor) -> Tensor:
    """``cot ⊙ a'(z)`` (differentiable, so second-order gradients flow). For the in-place
    activations ``z`` has been overwritten by ``out``: only ``out`` is used."""
    if isinstance(act, nn.Identity):
        return cot
    # the same (twice differentiable) backward kernels autograd uses for these modules
    if type(act) is nn.ReLU:  # relu'' = 0: the mask needs no gradient (saves a zero tensor)
        return torch.ops.aten.threshold_backward(cot, out.detach(), 0.0)
    if type(act) is nn.Tanh:
        return torch.ops.aten.tanh_backward(cot, out)
    if type(act) is nn.Sigmoid:
        return torch.ops.aten.sigmoid_backward(cot, out)
    vjp = torch.func.vjp(_out_of_place(act), z)[1]
    return vjp(cot)[0]  # type: ignore[no-any-return]


# -- the engine -----------------------------------------------------------------------------


class _Fast:
    """Per-task fast-weight corrections of the adapted layers, ``−α`` folded in:
    ``W'_j = W_j + Ũ_jᵀ V_j`` and ``b'_j = b_j + Δb̃_j`` with ``Ũ = −α U``.

    When the bias and the weight share the identity left factor (MAML), ``Δb̃ = 1ᵀ Ũ``, so
    the bias correction is the kernel's ``+1`` (``x W'ᵀ + b' = x Wᵀ + b + (x Vᵀ + 1) Ũ``,
    the bias as a weight on a constant input): ``ones[j]``, and no ``db``."""

    def __init__(self, L: int) -> None:
        self.U: list[Tensor | None] = [None] * L
        self.V: list[Tensor | None] = [None] * L
        self.db: list[Tensor | None] = [None] * L  # (T, 1, d_out)
        self.ones = [False] * L

    def add(self, j: int, u: Tensor, v: Tensor, db: Tensor | None) -> None:
        Uj, Vj = self.U[j], self.V[j]
        self.U[j] = u if Uj is None else torch.cat([Uj, u], dim=1)
        self.V[j] = v if Vj is None else torch.cat([Vj, v], dim=1)
        if db is not None:
            old = self.db[j]
            self.db[j] = db if old is None else old + db


class _Kernel(torch.autograd.Function):
    """``a bᵀ`` per task, ``(T, r, d) × (T, s, d) → (T, r, s)``, the support–query kernel.

    ``torch.bmm(a, b.mT)`` computes the same numbers, but its backward forms ``∂/∂b`` as the
    transpose of a ``(T, d, s)`` product, a strided layout that makes every later use of
    that gradient (accumulation, reshapes) copy it; here both gradients come out in their
    inputs' own layout: ``∂a = g b``, ``∂b = gᵀ a``. The backward is itself made of
    differentiable products, so higher derivatives flow."""

    @staticmethod
    def forward(a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        return torch.bmm(a, b.mT)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor, Tensor],
                      output: Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        ga = torch.bmm(g, b) if ctx.needs_input_grad[0] else None
        gb = torch.bmm(g.mT, a) if ctx.needs_input_grad[1] else None
        return ga, gb


#: below this many elements in ``a`` the per-call cost of a custom autograd function
#: outweighs the layout gain of :class:`_Kernel` (measured: small config 15 % slower with it,
#: large configs 5–10 % faster)
_KERNEL_MIN_NUMEL = 1 << 16


def _kernel(a: Tensor, b: Tensor) -> Tensor:
    """``a bᵀ`` per task (see :class:`_Kernel`)."""
    if a.numel() < _KERNEL_MIN_NUMEL:
        return torch.bmm(a, b.mT)
    return _Kernel.apply(a, b)  # type: ignore[no-any-return]


def _times(x: Tensor, M: Tensor) -> Tensor:
    """``x @ M`` for a batch ``x`` (T, r, p) and a shared ``M`` (p, q), as one product over
    the stacked tasks; an outer product (p = 1) as a broadcast multiply, which is several
    times faster than a rank-1 matrix product and has a cheaper backward."""
    if M.shape[0] == 1:
        return x * M
    return torch.matmul(x, M)


def _shared_product(h: Tensor, Wt: Tensor, b: Tensor | None) -> Tensor:
    """``h Wᵀ + b`` with the shared weight, a fresh tensor: one (T·r × d_in) @ (d_in × d_out)
    product over the stacked tasks."""
    z = _times(h, Wt)
    return z if b is None else z.add_(b)


def _linear(h: Tensor, Wt: Tensor, b: Tensor | None, fast: _Fast, j: int,
            shared: Tensor | None = None) -> tuple[Tensor, bool]:
    """``h W'ᵀ + b'`` per task (``Wt = Wᵀ``): one shared product over the stacked tasks,
    then the small per-task kernels. ``shared``: ``h Wᵀ + b``, computed already (read,
    never written). Also says whether the result is a fresh tensor of this call's, which
    may be overwritten in place."""
    z, fresh = (_shared_product(h, Wt, b), True) if shared is None else (shared, False)
    U, V, db = fast.U[j], fast.V[j], fast.db[j]
    # in place on a fresh z: matmul's backward does not need its output, so no extra
    # (T, n, d) copy
    if U is not None and V is not None:
        K = _kernel(h, V)
        if fast.ones[j]:
            K = K + 1
        if fresh:
            z.baddbmm_(K, U)
        else:
            z, fresh = torch.baddbmm(z, K, U), True
    if db is not None:
        if fresh:
            z.add_(db)
        else:
            z, fresh = z + db, True
    return z, fresh


def _forward(plan: FactorizedPlan, Wt: list[Tensor], b: list[Tensor | None], fast: _Fast,
             x: Tensor, first: Tensor | None = None
             ) -> tuple[Tensor, list[Tensor], list[list[tuple[Tensor, Tensor]]]]:
    """Output, each layer's input ``h_{j−1}``, and each activation's ``(in, out)``.
    ``first``: the first layer's shared product ``x W_1ᵀ + b_1``, when computed already."""
    hs: list[Tensor] = []
    acts: list[list[tuple[Tensor, Tensor]]] = []
    h = x
    for j, ly in enumerate(plan.layers):
        hs.append(h)
        h, fresh = _linear(h, Wt[j], b[j], fast, j, first if j == 0 else None)
        rec = []
        for i, a in enumerate(ly.after):
            # only the first activation may overwrite its input, and only a fresh one: an
            # in-place activation's backward reads its output, which a second in-place
            # activation would overwrite
            out = _act_forward(a, h, in_place=fresh and i == 0)
            rec.append((h, out))
            h = out
        acts.append(rec)
    return h, hs, acts


def _first_products(X: Tensor, Xq: Tensor | None, W1t: Tensor, b1: Tensor | None
                    ) -> tuple[Tensor, Tensor | None]:
    """``X W_1ᵀ + b_1`` and ``Xq W_1ᵀ + b_1`` (None without query inputs), two products.
    (One product over the stacked rows of both was measured 4 % slower on the small bench
    config: the backward of the two slices of its result costs more than the product saved.)"""
    return (_shared_product(X, W1t, b1),
            None if Xq is None else _shared_product(Xq, W1t, b1))


def _output_grad(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, Y: Tensor,
                 scale: float) -> Tensor:
    """``scale · ∂ℓ_t/∂out_t`` for every task (T, n, m)."""
    if loss_fn is mse_loss:  # (out − Y)·c as one autograd node when Y is data
        c = scale / out.shape[-2]
        return torch.add(Y * -c, out, alpha=c)
    g = torch.func.vmap(torch.func.grad(loss_fn))(out, Y)
    return g if scale == 1.0 else g * scale  # type: ignore[no-any-return]


class _Predictions(nn.Module):
    """Stand-in model handed to a task family's ``query_loss``: it returns the factorized
    predictions it is given as input, and the adapted end-to-end map as ``end_to_end``."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def end_to_end(self, params: Params) -> Tensor:
        return params["end_to_end"]


def factorized_post_adaptation_losses(
    model: nn.Module,
    params: Params,
    batch: object,
    family: object,
    *,
    alpha: float | Tensor,
    adapt: _checks.AdaptSpec,
    steps: int,
    first_order: bool,
    preconditioner: Preconditioner,
    precond_state: Params | None = None,
    plan: FactorizedPlan | None = None,
) -> Tensor:
    """Per-task query losses after ``steps`` factorized inner steps, shape ``(T,)``.

    Same numbers and gradients as the vmap and loop engines; called by
    :func:`maml_depth.numerics.engines.post_adaptation_losses` with ``engine="factorized"``
    (or ``"auto"`` where it applies). ``adapt``: the adapted layers, 1-based (``"all"``,
    an index or a list), as in :func:`~maml_depth.numerics.inner_loop.inner_adapt`.
    ``plan``: :func:`factorized_plan` of ``model``, when the caller has it already.

    The first layer's shared product ``X W_1ᵀ + b_1`` does not change during adaptation
    (only the factors do): it is computed once and read by every inner step (and
    ``Xq W_1ᵀ + b_1`` once for the query set).
    """
    found = factorized_plan(model) if plan is None else plan
    if isinstance(found, str):
        raise InvalidArgumentError(f"engine='factorized' does not apply: {found}")
    plan = found
    factor_fn = preconditioner.kronecker
    if factor_fn is None:
        raise InvalidArgumentError(
            f"engine='factorized' does not apply: {factorized_support(model, preconditioner)}")
    X, Y = batch.X, batch.Y  # type: ignore[attr-defined]
    Xq, Yq, W_t = batch.Xq, batch.Yq, batch.W_t  # type: ignore[attr-defined]
    if X.ndim != 3 or Y.ndim != 3 or X.shape[:2] != Y.shape[:2]:
        raise ShapeError(f"a task batch needs X (T, n, d) and Y (T, n, m) with equal T and n, "
                         f"got X {tuple(X.shape)}, Y {tuple(Y.shape)}")
    if Xq is not None and (Xq.ndim != 3 or Xq.shape[0] != X.shape[0]
                           or Xq.shape[-1] != X.shape[-1]):
        raise ShapeError(f"query inputs Xq must be (T, n_q, d) like X {tuple(X.shape)}, got "
                         f"{tuple(Xq.shape)}")
    state = precond_state or {}
    layers = plan.layers
    Lnum = len(layers)
    missing = [n for ly in layers for n in (ly.weight, ly.bias) if n and n not in params]
    if missing:
        raise InvalidArgumentError(f"params lacks the parameter(s) {missing}")
    W = [params[ly.weight] for ly in layers]
    b = [params[ly.bias] if ly.bias is not None else None for ly in layers]
    if X.shape[-1] != W[0].shape[1] or Y.shape[-1] != W[-1].shape[0]:
        raise ShapeError(f"X has {X.shape[-1]} features and Y {Y.shape[-1]} outputs; the model "
                         f"maps {W[0].shape[1]} → {W[-1].shape[0]}")
    Wt = [w.mT for w in W]  # transposed once (one autograd node per layer, not per use)
    adapted = [j - 1 for j in _checks.resolve_adapt(adapt, Lnum)]
    lowest = adapted[0]
    # effective Kronecker factors of the adapted parameters (from the preconditioner state)
    wf: dict[int, tuple[Tensor | None, Tensor | None]] = {}
    bf: dict[int, Tensor | None] = {}
    for j in adapted:
        wf[j] = factor_fn(state, layers[j].weight, W[j])
        bias = layers[j].bias
        if bias is not None:
            left, right = factor_fn(state, bias, params[bias])
            if right is not None:
                raise InvalidArgumentError(
                    f"preconditioner {preconditioner.name!r}: a bias factor must act on the "
                    f"left only")
            bf[j] = left
    # −α is folded into the output gradient: back-propagation is linear in it, so every
    # δ_j comes out as −α δ_j and the fused products need no scaling. A tensor α (kept
    # differentiable, also through first order's detached δ) scales the factors instead.
    fold = not isinstance(alpha, Tensor)
    first, first_q = _first_products(X, Xq, Wt[0], b[0])
    fast = _Fast(Lnum)
    for _ in range(steps):
        out, hs, acts = _forward(plan, Wt, b, fast, X, first)
        cot = _output_grad(family.loss_fn, out, Y, -float(alpha) if fold else 1.0)  # type: ignore[attr-defined, arg-type]
        grads: dict[int, tuple[Tensor, Tensor]] = {}
        for j in range(Lnum - 1, lowest - 1, -1):
            for a, (zin, zout) in zip(reversed(layers[j].after), reversed(acts[j]),
                                      strict=True):
                cot = _act_backward(a, zin, zout, cot)
            if j in wf:
                grads[j] = (cot, hs[j])
            if j > lowest:
                U, V = fast.U[j], fast.V[j]
                nxt = _times(cot, W[j])
                if U is not None and V is not None:
                    nxt.baddbmm_(_kernel(cot, U), V)
                cot = nxt
        for j, (delta, h) in grads.items():
            if first_order:
                delta, h = delta.detach(), h.detach()
            left, right = wf[j]
            u = delta if left is None else delta @ left.mT
            if not fold:
                u = u * -alpha
            v = h if right is None else h @ right
            db = None
            if layers[j].bias is not None:
                lb = bf.get(j)
                if lb is None and left is None:
                    fast.ones[j] = True  # Δb̃ = 1ᵀ Ũ: carried by the kernel's +1
                else:
                    gb = delta.sum(dim=1, keepdim=True)
                    db = gb if lb is None else gb @ lb.mT
                    if not fold:
                        db = db * -alpha
            fast.add(j, u, v, db)
    # the query loss
    quick = getattr(type(family), "query_loss", None) is LinearRegressionTasks.query_loss
    if Xq is not None and Yq is not None:
        pred = _forward(plan, Wt, b, fast, Xq, first_q)[0]
        if quick:  # ‖pred − Yq‖² / (2 n_q) per task, the scale folded into the residual
            c = (0.5 / pred.shape[1]) ** 0.5
            return torch.add(Yq * -c, pred, alpha=c).square().sum(dim=(1, 2))
        proxy = _Predictions()
        return torch.func.vmap(  # type: ignore[no-any-return]
            lambda p, y, w: family.query_loss(proxy, {}, p, y, w))(pred, Yq, W_t)  # type: ignore[attr-defined]
    if not isinstance(model, DeepLinear):
        raise InvalidArgumentError(
            f"n_query=None (population query loss) needs a linear model with end_to_end(); "
            f"{type(model).__name__} has none: set n_query to a number of query samples")
    T, d = X.shape[0], X.shape[-1]
    eye = torch.eye(d, dtype=X.dtype, device=X.device).expand(T, d, d)
    W_end = _forward(plan, Wt, b, fast, eye)[0].mT  # rows e_iᵀ W'ᵀ, i.e. W'ᵀ
    if quick:
        return family.population_loss(W_end, W_t)  # type: ignore[attr-defined, no-any-return]
    proxy = _Predictions()
    return torch.func.vmap(  # type: ignore[no-any-return]
        lambda we, w: family.query_loss(proxy, {"end_to_end": we}, None, None, w))(W_end, W_t)  # type: ignore[attr-defined]
