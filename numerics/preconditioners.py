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

References: MATH.md §1 (meta-optimizers as update rules on W); Arnold et al. (2021), §4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from maml_depth.errors import InvalidArgumentError

Params = dict[str, Tensor]


@dataclass(frozen=True)
class Preconditioner:
    """A named pair ``(init, apply)``; see the module docstring."""

    name: str
    init: Callable[[Params, tuple[str, ...]], Params]
    apply: Callable[[Params, Params], Params]
    description: str = ""


def _identity_init(params: Params, names: tuple[str, ...]) -> Params:
    return {}


def _identity_apply(state: Params, grads: Params) -> Params:
    return grads


#: MAML: ``θ ← θ − α ∇θ ℓ`` (no meta-learned state).
IDENTITY = Preconditioner("maml", _identity_init, _identity_apply, "identity (plain MAML)")

#: name -> preconditioner. Entries are registered with :func:`register`.
PRECONDITIONERS: dict[str, Preconditioner] = {}


def register(p: Preconditioner) -> Preconditioner:
    """Add ``p`` to :data:`PRECONDITIONERS` under ``p.name`` (names are unique)."""
    if p.name in PRECONDITIONERS and PRECONDITIONERS[p.name] is not p:
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
