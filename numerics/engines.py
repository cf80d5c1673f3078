"""Batched meta-losses: the post-adaptation query loss of every task in a batch.

For a batch of T tasks ``(X_t, Y_t, Xq_t, Yq_t)`` the meta-loss of MAML is

    ℒ(θ, φ) = (1/T) Σ_t ℓ_q(θ'_t),   θ'_t = inner_adapt(θ, φ; X_t, Y_t)

Engines compute the per-task terms ``ℓ_q(θ'_t)``:

- ``"vmap"``: ``torch.func.vmap`` over tasks of :func:`inner_adapt` (``torch.func.grad``);
  one fast-weight copy per task, no Python loop over tasks.
- ``"loop"``: a Python loop over tasks with ``torch.autograd.grad(create_graph=True)``,
  the way learn2learn and higher work (reference and benchmark peer).
- ``"factorized"``: factorized fast weights (:mod:`maml_depth.numerics.factorized`): the
  inner update of a linear layer is a sum of rank-≤n outer products, so the adapted network
  is evaluated from the shared weights plus small per-task kernels, all tasks' shared
  products fused into one; no per-task weight copy. Deep linear nets, MLPs and
  ``nn.Sequential`` chains of ``nn.Linear`` and elementwise activations, with MAML's
  identity or a Kronecker-factored preconditioner (Meta-Curvature, KFO).

``engine="auto"`` picks ``"factorized"`` wherever it applies and ``"vmap"`` elsewhere
(Meta-SGD, convolutions, arbitrary modules); :func:`select_engine` says which and why.
All engines return the same numbers and gradients (tested to float64 round-off).

References: docs/theory/update-rules.md#one-step, docs/theory/update-rules.md#factorized; Finn et
al. (2017), eq. (2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError
from maml_depth.numerics.factorized import (
    FactorizedPlan,
    factorized_plan,
    factorized_post_adaptation_losses,
    factorized_support,
)
from maml_depth.numerics.inner_loop import LossFn, inner_adapt, inner_adapt_autograd
from maml_depth.numerics.networks import Params, adapted_names
from maml_depth.numerics.preconditioners import Preconditioner, get_preconditioner
from maml_depth.numerics.tasks import TaskBatch

EngineName = Literal["auto", "factorized", "vmap", "loop"]
ENGINES: tuple[str, ...] = ("factorized", "vmap", "loop")


class TaskFamily(Protocol):
    """What the engines need of a task family."""

    @property
    def loss_fn(self) -> LossFn:
        """The support and query loss ``ℓ(pred, target)`` of the family, e.g.
        ``‖pred − target‖²/(2n)``."""

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """A batch of ``num_tasks`` tasks with their support and query sets, drawn with
        ``generator``."""

    def query_loss(
        self, model: nn.Module, params: Params, Xq: Tensor | None, Yq: Tensor | None, W_t: Tensor
    ) -> Tensor:
        """The query loss of ``model`` with adapted ``params``: on the query set ``(Xq, Yq)``,
        or the population loss of task map ``W_t`` where the family has one (then ``Xq``,
        ``Yq`` may be None)."""


@dataclass(frozen=True)
class InnerConfig:
    """The inner loop: ``steps`` steps of size ``alpha`` on layers ``adapt`` (1-based),
    second order unless ``first_order``, with a preconditioner (default MAML)."""

    alpha: float
    adapt: _checks.AdaptSpec = "all"
    steps: int = 1
    first_order: bool = False
    preconditioner: str | Preconditioner | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _checks.finite_float("alpha", self.alpha))
        object.__setattr__(self, "steps", _checks.positive_int("steps", self.steps))
        object.__setattr__(self, "preconditioner", get_preconditioner(self.preconditioner))

    @property
    def precond(self) -> Preconditioner:
        """The preconditioner of the inner step ``θ ← θ − α·D(G)`` (MAML: ``D(G) = G``).

        References: docs/theory/update-rules.md#meta-optimizers."""
        p = self.preconditioner
        assert isinstance(p, Preconditioner)
        return p

    def names(self, model: nn.Module) -> tuple[str, ...]:
        """Names of ``model``'s parameters adapted in the inner loop (``adapt``: "all", "top" or
        indices)."""
        return adapted_names(model, self.adapt)

    def init_state(self, model: nn.Module, params: Params) -> Params:
        """Initial meta-learned preconditioner state φ (empty for MAML)."""
        return self.precond.init(params, self.names(model))


@dataclass
class EngineChoice:
    """The engine that runs (``name``) and why it was chosen (``reason``); for the
    factorized engine also the network's ``plan`` (its chain of linear layers)."""

    name: str
    reason: str = field(default="")
    plan: FactorizedPlan | None = field(default=None, repr=False, compare=False)


def select_engine(engine: str, model: nn.Module, inner: InnerConfig) -> EngineChoice:
    """Resolve ``"auto"`` to a concrete engine (and say why).

    ``"auto"`` chooses ``"factorized"`` where it applies (:func:`factorized_support`) and
    ``"vmap"`` elsewhere; a forced ``"factorized"`` that does not apply raises
    :class:`InvalidArgumentError` with the reason.
    """
    if engine not in ("auto", *ENGINES):
        raise InvalidArgumentError(f"engine must be one of {('auto', *ENGINES)}, got {engine!r}")
    if engine in ("auto", "factorized"):
        plan = factorized_plan(model)
        why_not = factorized_support(model, inner.precond, plan)
        if why_not is None and isinstance(plan, FactorizedPlan):
            return EngineChoice(
                "factorized",
                f"{'auto' if engine == 'auto' else 'forced'}: factorized fast weights "
                f"({type(model).__name__}: {plan.description}; preconditioner "
                f"{inner.precond.name!r})", plan)
        if engine == "factorized":
            raise InvalidArgumentError(
                f"engine='factorized' does not apply to this model/preconditioner: {why_not}; "
                f"use engine='vmap' or 'auto'")
        return EngineChoice(
            "vmap", f"auto: torch.func.vmap over tasks (factorized does not apply: {why_not})")
    return EngineChoice(engine, "forced")


def _batch_args(batch: TaskBatch) -> tuple[tuple[Tensor | None, ...], tuple[int | None, ...]]:
    args = (batch.X, batch.Y, batch.Xq, batch.Yq, batch.W_t)
    return args, tuple(None if a is None else 0 for a in args)


def post_adaptation_losses(
    model: nn.Module,
    params: Params,
    batch: TaskBatch,
    family: TaskFamily,
    inner: InnerConfig,
    *,
    precond_state: Params | None = None,
    engine: str = "auto",
) -> Tensor:
    """Per-task query losses after adaptation, shape ``(T,)``; differentiable in
    ``params`` and ``precond_state``.

    ``ℓ_q(θ'_t)`` with ``θ'_t`` = ``inner.steps`` steps on ``(X_t, Y_t)``.
    """
    choice = select_engine(engine, model, inner)
    if choice.name == "factorized":
        return factorized_post_adaptation_losses(
            model, params, batch, family, alpha=inner.alpha, adapt=inner.adapt,
            steps=inner.steps, first_order=inner.first_order, preconditioner=inner.precond,
            precond_state=precond_state, plan=choice.plan)
    kw = dict(
        alpha=inner.alpha, adapt=inner.adapt, steps=inner.steps, first_order=inner.first_order,
        loss_fn=family.loss_fn, preconditioner=inner.precond, precond_state=precond_state,
    )
    if choice.name == "vmap":
        def one(X: Tensor, Y: Tensor, Xq: Tensor | None, Yq: Tensor | None, W_t: Tensor
                ) -> Tensor:
            fast = inner_adapt(model, params, X, Y, **kw)  # type: ignore[arg-type]
            return family.query_loss(model, fast, Xq, Yq, W_t)

        args, dims = _batch_args(batch)
        return torch.func.vmap(one, in_dims=dims)(*args)  # type: ignore[arg-type]
    losses = []
    for t in range(batch.num_tasks):
        fast = inner_adapt_autograd(model, params, batch.X[t], batch.Y[t], **kw)  # type: ignore[arg-type]
        Xq = None if batch.Xq is None else batch.Xq[t]
        Yq = None if batch.Yq is None else batch.Yq[t]
        losses.append(family.query_loss(model, fast, Xq, Yq, batch.W_t[t]))
    return torch.stack(losses)


def pre_adaptation_losses(
    model: nn.Module, params: Params, batch: TaskBatch, family: TaskFamily
) -> Tensor:
    """Per-task query losses of the un-adapted parameters, shape ``(T,)``."""

    def one(Xq: Tensor | None, Yq: Tensor | None, W_t: Tensor) -> Tensor:
        return family.query_loss(model, params, Xq, Yq, W_t)

    args = (batch.Xq, batch.Yq, batch.W_t)
    return torch.func.vmap(one, in_dims=tuple(None if a is None else 0 for a in args))(*args)


def support_predictions(model: nn.Module, params: Params, X: Tensor) -> Tensor:
    """``f_θ(X)`` for a batch of inputs ``(T, n, d)`` with shared parameters."""
    return torch.func.vmap(lambda x: functional_call(model, params, (x,)))(X)
