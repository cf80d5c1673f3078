"""The inner loop: k preconditioned gradient steps on a subset of layers, for one task.

For adapted parameters θ_S (the layers in ``adapt``) and support data ``(X, Y)``:

    θ_S ← θ_S − α · P_φ(∇_{θ_S} ℓ(θ; X, Y))      (``steps`` times, all layers in S from the
                                                    same point at each step)

Second order by default (gradients flow through ``∇ℓ``); ``first_order=True`` is FOMAML
(the inner gradient is detached, the preconditioner state φ still receives gradients).

Two implementations with one signature:

- :func:`inner_adapt` uses ``torch.func.grad`` and composes with ``torch.func.vmap`` (the
  batched engine);
- :func:`inner_adapt_autograd` uses ``torch.autograd.grad(create_graph=True)`` on one task —
  the way learn2learn and higher work; the reference the batched engine is tested against.

References: docs/theory/update-rules.md#one-step (one inner step on a subset S; k steps iterate);
Finn et al. (2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.losses import mse_loss
from maml_depth.numerics.networks import Params, adapted_names
from maml_depth.numerics.preconditioners import Preconditioner, get_preconditioner

LossFn = Callable[[Tensor, Tensor], Tensor]


def _check_data(model: nn.Module, X: Tensor, Y: Tensor) -> None:
    """Shapes of one task's support data: ``X (n, d_0)``, ``Y (n, d_L)``."""
    if X.ndim != 2 or Y.ndim != 2:
        raise ShapeError(
            f"X and Y must be (n, d_in) and (n, d_out) for one task (rows are samples), "
            f"got X {tuple(X.shape)}, Y {tuple(Y.shape)}; batch tasks with vmap or the engines"
        )
    if X.shape[0] != Y.shape[0]:
        raise ShapeError(f"X has {X.shape[0]} samples (rows) but Y has {Y.shape[0]}")
    dims = getattr(model, "dims", None)
    if dims is not None:
        if X.shape[1] != dims[0]:
            raise ShapeError(f"X has {X.shape[1]} features, the model expects d_0 = {dims[0]}")
        if Y.shape[1] != dims[-1]:
            raise ShapeError(f"Y has {Y.shape[1]} outputs, the model expects d_L = {dims[-1]}")


def _prepare(
    model: nn.Module,
    params: Params,
    X: Tensor,
    Y: Tensor,
    alpha: float | Tensor,
    adapt: _checks.AdaptSpec,
    steps: int,
    preconditioner: str | Preconditioner | None,
) -> tuple[Any, tuple[str, ...], int, Preconditioner]:
    if isinstance(alpha, Tensor):  # a scalar tensor α: differentiable in α (e.g. d/dα)
        if alpha.ndim != 0 or not bool(torch.isfinite(alpha)):
            raise InvalidArgumentError(f"alpha must be a finite scalar, got {alpha!r}")
    else:
        alpha = _checks.finite_float("alpha", alpha)
    steps = _checks.positive_int("steps", steps)
    names = adapted_names(model, adapt)
    _check_data(model, X, Y)
    missing = [n for n in names if n not in params]
    if missing:
        raise InvalidArgumentError(f"params lacks the adapted parameter(s) {missing}")
    return alpha, names, steps, get_preconditioner(preconditioner)


GradientFn = Callable[[Callable[[Params], Tensor], Params, bool], Params]


def _grad_func(loss: Callable[[Params], Tensor], fast: Params, create_graph: bool) -> Params:
    """``∇ loss(fast)`` with ``torch.func.grad`` (vmappable; always differentiable)."""
    return torch.func.grad(loss)(fast)  # type: ignore[no-any-return]


def _grad_autograd(loss: Callable[[Params], Tensor], fast: Params, create_graph: bool
                   ) -> Params:
    """``∇ loss(fast)`` with ``torch.autograd.grad`` (one task; the reference)."""
    leaves = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in fast.items()}
    grads = torch.autograd.grad(loss(leaves), list(leaves.values()), create_graph=create_graph)
    return dict(zip(leaves, grads, strict=True))


def _adapt(
    gradient: GradientFn,
    model: nn.Module,
    params: Params,
    X: Tensor,
    Y: Tensor,
    alpha: float | Tensor,
    adapt: _checks.AdaptSpec,
    steps: int,
    first_order: bool,
    loss_fn: LossFn,
    preconditioner: str | Preconditioner | None,
    precond_state: Params | None,
) -> Params:
    """The inner loop shared by both implementations; ``gradient`` computes ``∇θ_S ℓ``."""
    alpha, names, steps, pre = _prepare(model, params, X, Y, alpha, adapt, steps, preconditioner)
    state = precond_state or {}
    frozen = {k: v for k, v in params.items() if k not in names}
    fast = {k: params[k] for k in names}

    def support_loss(sub: Params) -> Tensor:
        return loss_fn(functional_call(model, {**frozen, **sub}, (X,)), Y)

    for _ in range(steps):
        g = gradient(support_loss, fast, not first_order)
        if first_order:
            g = {k: v.detach() for k, v in g.items()}
        d = pre.apply(state, g)
        fast = {k: fast[k] - alpha * d[k] for k in names}
    return {**frozen, **fast}


def inner_adapt(
    model: nn.Module,
    params: Params,
    X: Tensor,
    Y: Tensor,
    *,
    alpha: float | Tensor,
    adapt: _checks.AdaptSpec = "all",
    steps: int = 1,
    first_order: bool = False,
    loss_fn: LossFn = mse_loss,
    preconditioner: str | Preconditioner | None = None,
    precond_state: Params | None = None,
) -> Params:
    """Adapt ``params`` to one task: ``steps`` steps ``θ_S ← θ_S − α P_φ(∇_{θ_S} ℓ)``.

    Args:
        model: the network, evaluated with ``functional_call(model, params, (X,))``.
        params: all parameters (name → tensor), e.g. ``get_params(model)``.
        X, Y: support inputs ``(n, d_0)`` and targets ``(n, d_L)`` (rows are samples).
        alpha: inner step size α (finite; a scalar tensor makes the result differentiable
            in α).
        adapt: adapted layers, 1-based (``"all"``, an index, or a list).
        steps: number of inner steps k ≥ 1.
        first_order: FOMAML (detach the inner gradient).
        loss_fn: support loss ``ℓ(pred, Y)``; default :func:`mse_loss`.
        preconditioner: name or :class:`Preconditioner` (default MAML's identity).
        precond_state: its meta-learned state φ (default: empty).

    Returns:
        All parameters, the adapted ones replaced (the others are the same tensors).

    Works under ``torch.func.vmap`` (batched over tasks) and is differentiable
    (``torch.func.grad``).

    References: docs/theory/update-rules.md#one-step; Finn, Abbeel, Levine (2017), eq. (1).
    """
    return _adapt(_grad_func, model, params, X, Y, alpha, adapt, steps, first_order, loss_fn,
                  preconditioner, precond_state)


def inner_adapt_autograd(
    model: nn.Module,
    params: Params,
    X: Tensor,
    Y: Tensor,
    *,
    alpha: float | Tensor,
    adapt: _checks.AdaptSpec = "all",
    steps: int = 1,
    first_order: bool = False,
    loss_fn: LossFn = mse_loss,
    preconditioner: str | Preconditioner | None = None,
    precond_state: Params | None = None,
) -> Params:
    """:func:`inner_adapt` with ``torch.autograd.grad(create_graph=not first_order)`` on one
    task — the way learn2learn and higher work; the reference the batched engines are tested
    against. Same formula, arguments and result; not vmappable. Parameters that do not
    require grad are treated as leaves for the inner gradient.
    """
    return _adapt(_grad_autograd, model, params, X, Y, alpha, adapt, steps, first_order,
                  loss_fn, preconditioner, precond_state)
