"""One contract, run over every registered meta-optimizer (the registry itself, not a copy):
as optax runs one shared test over its optimizers.

For each ``Preconditioner`` in ``maml_depth.numerics.PRECONDITIONERS``:

1. at initialisation it is MAML: ``apply(init(θ), G) = G`` for biases, weights and conv
   kernels, and the post-adaptation losses and meta-gradients equal MAML's;
2. with a perturbed (non-identity) state, the vmap engine equals the per-task autograd loop
   (losses and meta-gradients in θ and in the state);
3. the factorized engine equals the loop where the optimizer declares Kronecker factors, and
   otherwise refuses, with the optimizer's own reason;
4. state round-trip: for a step matrix ``P`` of the optimizer's theory class,
   ``step_matrix(state_for_step_matrix(P)) = P``, and the state determines the parameter's
   shape where the optimizer says it does.

A newly registered optimizer is checked by all four without editing this file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maml_depth.errors import InvalidArgumentError
from maml_depth.numerics import (
    MLP,
    PRECONDITIONERS,
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    Preconditioner,
    post_adaptation_losses,
    select_engine,
    state_for_step_matrix,
    step_matrix,
)
from tests.helpers import assert_close

F64 = torch.float64
NAMES = tuple(PRECONDITIONERS)  # collected from the registry at import of the package


def _leaves(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}


def _problem(kind: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    dims = (3, 4, 2)
    model = (DeepLinear(dims, generator=g) if kind == "linear"
             else MLP(dims, "tanh", bias=True, generator=g))
    fam = LinearRegressionTasks.isotropic(3, 2, sigma=0.1, n_support=4, n_query=5)
    return model, fam, fam.sample(3, g), _leaves(model), g


def _perturbed(state: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
    """The state moved away from the identity (so the check is not MAML's again)."""
    return {k: (v + 0.2 * torch.randn(v.shape, generator=g, dtype=v.dtype)).requires_grad_()
            for k, v in state.items()}


def _grads(loss: torch.Tensor, leaves: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(leaves.values()), allow_unused=True))


def _same(a: torch.Tensor, b: torch.Tensor, leaves: dict[str, torch.Tensor], what: str
          ) -> None:
    assert_close(a, b, what=f"{what}: per-task losses")
    for name, x, y in zip(leaves, _grads(a.mean(), leaves), _grads(b.mean(), leaves),
                          strict=True):
        if x is None or y is None:
            assert x is None and y is None, f"{what}: gradient of {name} only on one side"
            continue
        assert_close(x, y, what=f"{what}: meta-gradient w.r.t. {name}")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2, 2)])
def test_identity_at_initialisation(name: str, shape: tuple[int, ...]) -> None:
    pre = PRECONDITIONERS[name]
    g = torch.Generator().manual_seed(7)
    p = {"w": torch.randn(shape, generator=g, dtype=F64)}
    G = {"w": torch.randn(shape, generator=g, dtype=F64)}
    assert_close(pre.apply(pre.init(p, ("w",)), G)["w"], G["w"], what=f"{name}: D(G) at init")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_initialised_optimizer_is_maml(name: str, kind: str) -> None:
    model, fam, batch, params, _ = _problem(kind, 11)
    ours = InnerConfig(alpha=0.1, steps=2, preconditioner=name)
    state = ours.init_state(model, params)
    a = post_adaptation_losses(model, params, batch, fam, InnerConfig(alpha=0.1, steps=2),
                               engine="loop")
    b = post_adaptation_losses(model, params, batch, fam, ours, precond_state=state,
                               engine="loop")
    _same(b, a, params, f"{name} at init vs MAML")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_vmap_equals_loop(name: str, kind: str) -> None:
    model, fam, batch, params, g = _problem(kind, 12)
    inner = InnerConfig(alpha=0.1, steps=2, preconditioner=name)
    state = _perturbed(inner.init_state(model, params), g)
    leaves = params | state
    a = post_adaptation_losses(model, params, batch, fam, inner, precond_state=state,
                               engine="vmap")
    b = post_adaptation_losses(model, params, batch, fam, inner, precond_state=state,
                               engine="loop")
    _same(a, b, leaves, f"{name}: vmap vs loop")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_factorized_equals_loop_or_refuses_with_a_reason(name: str, kind: str) -> None:
    pre: Preconditioner = PRECONDITIONERS[name]
    model, fam, batch, params, g = _problem(kind, 13)
    inner = InnerConfig(alpha=0.1, steps=2, preconditioner=name)
    state = _perturbed(inner.init_state(model, params), g)
    if pre.kronecker is None:
        with pytest.raises(InvalidArgumentError) as info:
            select_engine("factorized", model, inner)
        assert pre.no_kronecker in str(info.value)
        assert select_engine("auto", model, inner).name == "vmap"
        return
    assert select_engine("auto", model, inner).name == "factorized"
    a = post_adaptation_losses(model, params, batch, fam, inner, precond_state=state,
                               engine="factorized")
    b = post_adaptation_losses(model, params, batch, fam, inner, precond_state=state,
                               engine="loop")
    _same(a, b, params | state, f"{name}: factorized vs loop")


def _class_member(kind: str | None, d: int, rng: np.random.Generator) -> np.ndarray:
    """A step matrix ``P/α`` of a theory class: full (symmetric positive definite),
    diagonal (positive), scalar (c·I); None (MAML, which learns none): I."""
    if kind == "full":
        A = rng.standard_normal((d, d))
        return A @ A.T + 0.5 * np.eye(d)
    if kind == "diagonal":
        return np.diag(rng.uniform(0.2, 3.0, d))
    if kind == "scalar":
        return rng.uniform(0.2, 3.0) * np.eye(d)
    return np.eye(d)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [1, 3])
def test_state_round_trip(name: str, d: int) -> None:
    pre = PRECONDITIONERS[name]
    if pre.from_step_matrix is None:
        with pytest.raises(InvalidArgumentError, match="no state-from-step-matrix"):
            state_for_step_matrix(name, np.eye(d), 0.1, "layers.0.weight", d)
        return
    alpha = 0.3
    M = _class_member(pre.theory_class, d, np.random.default_rng(d))
    state = state_for_step_matrix(name, alpha * M, alpha, "layers.0.weight", d)
    P = step_matrix(name, state, "layers.0.weight", alpha, d=d)
    assert_close(P, torch.as_tensor(alpha * M), what=f"{name}: P after the round trip")
    if pre.shape_of is not None:
        found = pre.shape_of(state, "layers.0.weight")
        assert found in (None, (1, d)), f"{name}: shape from state {found}, not (1, {d})"
