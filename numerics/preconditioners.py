"""Inner-update preconditioners: one interface, a registry.

The inner step on the adapted parameters is ``θ ← θ − α · P_φ(∇θ ℓ)`` where ``P_φ`` is a
preconditioner with its own meta-learned state ``φ`` (a ``dict[str, Tensor]``, possibly
empty). MAML is the identity; Meta-SGD, Meta-Curvature and KFO are other entries of
:data:`PRECONDITIONERS` (added by the meta-optimizers module). Like optax's
``scale_by_*`` transforms, a preconditioner is a pair of pure functions:

- ``init(params, names) -> state``: the initial meta-parameters φ for the adapted
  parameters ``names`` (identity-equivalent at initialisation);
- ``apply(state, grads) -> directions``: the transformed gradients, same keys and shapes.

``apply`` must be a pure torch function so it works under ``torch.func.vmap`` and is
differentiable in both ``state`` and ``grads`` (second-order MAML).

Everything else about a meta-optimizer is an attribute of the same object, so engines and
read-outs ask the object and never branch on its name:

- ``theory_class``: its preconditioner class in theory (``"full"``, ``"diagonal"``,
  ``"scalar"``; None for MAML, which learns no preconditioner), the class whose optimum
  :func:`maml_depth.theory.optimal_preconditioner` gives;
- ``kronecker(state, name, param) -> (left, right)``: the direction of the gradient ``G`` of
  ``name`` is ``left @ G @ right`` (``None`` = identity; a bias gets ``left @ g``), which lets
  the factorized engine run it; None when the optimizer has no such structure, with
  ``no_kronecker`` saying why;
- ``shape_of(state, name)``: the parameter's shape as its state determines it (None when
  it does not);
- ``from_step_matrix(M, name, d)``: a state whose step matrix (for a single-output linear
  weight ``(1, d)``) is ``α M`` — the inverse of the read-out; None when there is none;
- ``references``: where it comes from.

References: docs/theory/update-rules.md#one-step (meta-optimizers as update rules on W); Arnold et
al. (2021), §4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from maml_depth.errors import InvalidArgumentError

Params = dict[str, Tensor]
#: a preconditioner class of theory (docs/theory/expected-loss.md#optimal-preconditioner)
TheoryClass = Literal["full", "diagonal", "scalar"]
#: ``fn(state, name, param) -> (left, right)``: the preconditioned direction of the gradient
#: ``G`` of parameter ``name`` is ``left @ G @ right`` (``None`` = identity). For a bias (a
#: vector g) it is ``left @ g`` and ``right`` must be None.
FactorFn = Callable[[Params, str, Tensor], tuple[Tensor | None, Tensor | None]]


@dataclass(frozen=True)
class Preconditioner:
    """One meta-optimizer: the pair ``(init, apply)`` and what engines and read-outs need
    to know about it (see the module docstring)."""

    name: str
    init: Callable[[Params, tuple[str, ...]], Params]
    apply: Callable[[Params, Params], Params]
    description: str = ""
    theory_class: TheoryClass | None = None
    kronecker: FactorFn | None = None
    no_kronecker: str = "it declares no Kronecker factors"
    shape_of: Callable[[Params, str], tuple[int, ...] | None] | None = None
    from_step_matrix: Callable[[Tensor, str, int], Params] | None = None
    references: str = ""

    def with_kronecker(self, fn: FactorFn) -> Preconditioner:
        """The same optimizer with Kronecker factors ``fn`` (see the module docstring)."""
        return dataclasses.replace(self, kronecker=fn)


def _identity_init(params: Params, names: tuple[str, ...]) -> Params:
    return {}


def _identity_apply(state: Params, grads: Params) -> Params:
    return grads


def _identity_factors(state: Params, name: str, param: Tensor) -> tuple[None, None]:
    return None, None


def _identity_from_step_matrix(M: Tensor, name: str, d: int) -> Params:
    """MAML's step matrix is ``α I``: only ``M = I`` has a (the empty) state."""
    eye = torch.eye(d, dtype=M.dtype, device=M.device)
    if M.shape != (d, d) or not torch.allclose(M, eye, rtol=1e-12, atol=1e-12):
        raise InvalidArgumentError(
            f"P: MAML's step matrix is α I; a state for another P does not exist "
            f"(got P/α of shape {tuple(M.shape)}, not the identity)")
    return {}


#: MAML: ``θ ← θ − α ∇θ ℓ`` (no meta-learned state).
IDENTITY = Preconditioner(
    "maml", _identity_init, _identity_apply, "identity (plain MAML)",
    theory_class=None, kronecker=_identity_factors, from_step_matrix=_identity_from_step_matrix,
    references="Finn, Abbeel, Levine (ICML 2017)")

#: name -> preconditioner. Entries are registered with :func:`register`.
PRECONDITIONERS: dict[str, Preconditioner] = {}


def register(p: Preconditioner, *, replace: bool = False) -> Preconditioner:
    """Add ``p`` to :data:`PRECONDITIONERS` under ``p.name`` (names are unique unless
    ``replace``, which swaps the registered object for ``p``)."""
    if p.name in PRECONDITIONERS and PRECONDITIONERS[p.name] is not p and not replace:
        raise InvalidArgumentError(f"a preconditioner named {p.name!r} is already registered")
    PRECONDITIONERS[p.name] = p
    return p


register(IDENTITY)


def get_preconditioner(spec: str | Preconditioner | None) -> Preconditioner:
    """Look up a preconditioner by name (``None`` means MAML's identity)."""
    if spec is None:
        return IDENTITY
    if isinstance(spec, Preconditioner):
        return spec
    key = str(spec).lower().replace("-", "").replace("_", "")
    for name, p in PRECONDITIONERS.items():
        if name.replace("-", "").replace("_", "") == key:
            return p
    raise InvalidArgumentError(
        f"preconditioner must be one of {sorted(PRECONDITIONERS)}, got {spec!r}"
    )
