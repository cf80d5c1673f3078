"""Meta-optimizers as inner-update preconditioners: Meta-SGD, Meta-Curvature and KFO.

Each entry of :data:`~maml_depth.numerics.preconditioners.PRECONDITIONERS` turns the support
gradient ``G`` of an adapted parameter into a direction ``D = P_φ(G)``; the inner step is
``θ ← θ − α D`` (:func:`~maml_depth.numerics.inner_loop.inner_adapt`). The state ``φ`` is a
flat ``dict[str, Tensor]`` meta-learned jointly with the initialisation θ (Adam in
:func:`~maml_depth.numerics.meta_train.meta_train`); its keys are ``"<param>|<factor>"``.
Every state is initialised so that ``P_φ`` is the identity, i.e. training starts from MAML.

Shapes are those of torch's layers: a linear weight ``G ∈ R^{out×in}``, a bias ``g ∈ R^n``, a
conv kernel ``G ∈ R^{out×in×kh×kw}`` viewed as ``(out, in, k)`` with ``k = kh·kw`` (any
kernel of ≥ 3 dimensions is viewed as ``(out, in, ∏ rest)``); a 0-d parameter is a 1 × 1
matrix.

- ``"maml"``: ``D = G`` (registered by :mod:`~maml_depth.numerics.preconditioners`).
- ``"meta-sgd"`` (Li et al. 2017): ``D = φ ⊙ G``, one learned factor per entry, init 1, so the
  effective per-entry step is ``α φ``.
- ``"meta-curvature"`` (Park & Oliva 2019): learned square matrices on each mode, init I:
  bias ``D = M g``; weight ``D = M_o G M_i``; kernel
  ``D[o,i,κ] = Σ_{a,b,c} M_o[o,a] G[a,b,c] M_i[b,i] M_f[c,κ]`` (the tensor-product form
  ``G ×₁ M_o ×₂ M_iᵀ ×₃ M_fᵀ``), ``M_o ∈ R^{out×out}``, ``M_i ∈ R^{in×in}``, ``M_f ∈ R^{k×k}``.
- ``"kfo"`` (Arnold et al. 2021): positive semi-definite Kronecker factors ``L' = LᵀL``,
  ``R' = RᵀR`` of learned square ``L``, ``R`` (init I): bias ``D = L' g``; weight
  ``D = L' G R'`` (``L ∈ R^{out×out}``, ``R ∈ R^{in×in}``); kernel, per output channel o,
  ``D[o] = R_iᵀR_i G[o] R_fᵀR_f`` (``R_i ∈ R^{in×in}``, ``R_f ∈ R^{k×k}``, shared across
  output channels).

All are pure torch, so they run under ``torch.func.vmap`` and second-order differentiation,
for any adapted subset, any number of steps, any dtype and device.

:func:`preconditioner_matrix` reads a learned preconditioner out as the matrix ``E`` of the
linear map ``vec G ↦ vec D`` (column-major ``vec``, as in docs/theory/update-rules.md#one-step, so
the inner step is
``vec θ' = vec θ − α E vec G``); :func:`step_matrix` gives, for a single-output linear
layer ``W ∈ R^{1×d}``, the ``d × d`` effective step matrix ``P = α Eᵀ`` of
docs/theory/expected-loss.md#optimal-preconditioner
(``W' = W − G P``).

References: docs/theory/update-rules.md#one-step ("meta-optimizers on a one-layer model, as update
rules on W") and
§4; Li, Zhou, Chen, Li (2017) "Meta-SGD"; Park & Oliva (NeurIPS 2019) "Meta-Curvature";
Arnold, Iqbal, Sha (AISTATS 2021), §4 (KFO).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.preconditioners import (
    PRECONDITIONERS,
    Params,
    Preconditioner,
    get_preconditioner,
    register,
)

__all__ = [
    "KFO",
    "META_CURVATURE",
    "META_OPTIMIZERS",
    "META_SGD",
    "preconditioner_matrix",
    "state_key",
    "step_matrix",
]

SEP = "|"


def state_key(param: str, factor: str) -> str:
    """The key of one factor of a parameter's state: ``"<param>|<factor>"``."""
    return f"{param}{SEP}{factor}"


def _factor(state: Params, param: str, factor: str, precond: str) -> Tensor:
    key = state_key(param, factor)
    try:
        return state[key]
    except KeyError:
        raise InvalidArgumentError(
            f"{precond} state lacks {key!r}: the state was initialised for other parameters "
            f"(keys {sorted(state)[:6]}...); build it with init(params, names) for the "
            f"adapted parameters"
        ) from None


def _modes(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """The matrix/tensor view of a parameter: ``()``→(1,), ``(n,)``→(n,),
    ``(out, in)``→(out, in), ``(out, in, *k)``→(out, in, ∏k)."""
    if len(shape) == 0:
        return (1,)
    if len(shape) <= 2:
        return tuple(int(s) for s in shape)
    return (int(shape[0]), int(shape[1]), math.prod(int(s) for s in shape[2:]))


def _eye(n: int, like: Tensor) -> Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device)


def _factors_of(state: Params, param: str) -> dict[str, Tensor]:
    """The factors of ``param`` in ``state``, by factor name."""
    return {k.split(SEP, 1)[1]: v for k, v in state.items() if k.split(SEP, 1)[0] == param}


# -- Meta-SGD ------------------------------------------------------------------------------
def _meta_sgd_init(params: Params, names: tuple[str, ...]) -> Params:
    return {state_key(n, "lr"): torch.ones_like(params[n]) for n in names}


def _meta_sgd_apply(state: Params, grads: Params) -> Params:
    return {n: _factor(state, n, "lr", "meta-sgd") * g for n, g in grads.items()}


def _meta_sgd_shape(state: Params, param: str) -> tuple[int, ...] | None:
    lr = _factors_of(state, param).get("lr")
    return None if lr is None else tuple(lr.shape)


def _meta_sgd_from_step_matrix(M: Tensor, name: str, d: int) -> Params:
    """``φ = diag(P)/α`` (exact for a diagonal P; otherwise its diagonal is used)."""
    return {state_key(name, "lr"): torch.diagonal(M).reshape(1, d).clone()}


#: Meta-SGD: ``D = φ ⊙ G`` (φ init 1; the effective per-entry step is ``α φ``).
META_SGD = register(Preconditioner(
    "meta-sgd", _meta_sgd_init, _meta_sgd_apply,
    "Meta-SGD (Li et al. 2017): learned per-entry step sizes, D = φ ⊙ G, φ init 1",
    theory_class="diagonal", kronecker=None,
    no_kronecker="an elementwise preconditioner such as Meta-SGD does not keep the low-rank "
                 "structure of the gradient",
    shape_of=_meta_sgd_shape, from_step_matrix=_meta_sgd_from_step_matrix,
    references="Li, Zhou, Chen, Li (2017) 'Meta-SGD'",
))


# -- Meta-Curvature ----------------------------------------------------------------------
_MC_FACTORS = {1: ("M",), 2: ("M_out", "M_in"), 3: ("M_out", "M_in", "M_f")}


def _mc_init(params: Params, names: tuple[str, ...]) -> Params:
    state: Params = {}
    for n in names:
        p = params[n]
        for f, size in zip(_MC_FACTORS[len(_modes(p.shape))], _modes(p.shape), strict=True):
            state[state_key(n, f)] = _eye(size, p)
    return state


def _mc_apply(state: Params, grads: Params) -> Params:
    out: Params = {}
    for n, g in grads.items():
        modes = _modes(g.shape)
        G = g.reshape(modes)
        if len(modes) == 1:
            D = _factor(state, n, "M", "meta-curvature") @ G
        elif len(modes) == 2:
            D = (_factor(state, n, "M_out", "meta-curvature") @ G
                 @ _factor(state, n, "M_in", "meta-curvature"))
        else:
            Mo = _factor(state, n, "M_out", "meta-curvature")
            Mi = _factor(state, n, "M_in", "meta-curvature")
            Mf = _factor(state, n, "M_f", "meta-curvature")
            D = torch.einsum("oa,abc,bi,ck->oik", Mo, G, Mi, Mf)
        out[n] = D.reshape(g.shape)
    return out


def _mc_factors(state: Params, name: str, param: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Kronecker factors of a linear layer: weight ``M_out G M_in``, bias ``M g``."""
    if param.ndim == 1:
        return _factor(state, name, "M", "meta-curvature"), None
    return (_factor(state, name, "M_out", "meta-curvature"),
            _factor(state, name, "M_in", "meta-curvature"))


def _mc_shape(state: Params, param: str) -> tuple[int, ...] | None:
    f = _factors_of(state, param)
    if "M_f" not in f and "M_out" in f and "M_in" in f:
        return (int(f["M_out"].shape[0]), int(f["M_in"].shape[0]))
    if "M" in f:
        return (int(f["M"].shape[0]),)
    return None


def _mc_from_step_matrix(M: Tensor, name: str, d: int) -> Params:
    """``M_out = 1``, ``M_in = P/α`` (any P)."""
    one = torch.ones(1, 1, dtype=M.dtype)
    return {state_key(name, "M_out"): one, state_key(name, "M_in"): M.clone()}


#: Meta-Curvature: ``D = M_o G M_i`` per weight (tensor-product form for kernels), ``M g``
#: per bias; all factors init I.
META_CURVATURE = register(Preconditioner(
    "meta-curvature", _mc_init, _mc_apply,
    "Meta-Curvature (Park & Oliva 2019): D = G ×₁ M_o ×₂ M_iᵀ ×₃ M_fᵀ, factors init I",
    theory_class="full", kronecker=_mc_factors, shape_of=_mc_shape,
    from_step_matrix=_mc_from_step_matrix,
    references="Park & Oliva (NeurIPS 2019) 'Meta-Curvature'",
))


# -- KFO -----------------------------------------------------------------------------------
def _kfo_factor_names(nmodes: int) -> tuple[str, ...]:
    return {1: ("L",), 2: ("L", "R"), 3: ("R_in", "R_f")}[nmodes]


def _kfo_sizes(modes: tuple[int, ...]) -> tuple[int, ...]:
    return modes if len(modes) <= 2 else modes[1:]


def _kfo_init(params: Params, names: tuple[str, ...]) -> Params:
    state: Params = {}
    for n in names:
        p = params[n]
        modes = _modes(p.shape)
        for f, size in zip(_kfo_factor_names(len(modes)), _kfo_sizes(modes), strict=True):
            state[state_key(n, f)] = _eye(size, p)
    return state


def _gram(F: Tensor) -> Tensor:
    """``FᵀF`` (symmetric PSD)."""
    return F.mT @ F


def _kfo_apply(state: Params, grads: Params) -> Params:
    out: Params = {}
    for n, g in grads.items():
        modes = _modes(g.shape)
        G = g.reshape(modes)
        if len(modes) == 1:
            D = _gram(_factor(state, n, "L", "kfo")) @ G
        elif len(modes) == 2:
            D = _gram(_factor(state, n, "L", "kfo")) @ G @ _gram(_factor(state, n, "R", "kfo"))
        else:
            # (out, in, k): R_iᵀR_i acts on `in` (left of each G[o]), R_fᵀR_f on `k` (right)
            D = _gram(_factor(state, n, "R_in", "kfo")) @ G @ _gram(_factor(state, n, "R_f", "kfo"))
        out[n] = D.reshape(g.shape)
    return out


def _kfo_factors(state: Params, name: str, param: Tensor
                 ) -> tuple[Tensor | None, Tensor | None]:
    """Kronecker factors of a linear layer: weight ``LᵀL G RᵀR``, bias ``LᵀL g``."""
    Lf = _factor(state, name, "L", "kfo")
    if param.ndim == 1:
        return _gram(Lf), None
    return _gram(Lf), _gram(_factor(state, name, "R", "kfo"))


def _kfo_shape(state: Params, param: str) -> tuple[int, ...] | None:
    f = _factors_of(state, param)
    if "L" in f and "R" in f and len(f) == 2:
        return (int(f["L"].shape[0]), int(f["R"].shape[0]))
    if "L" in f and len(f) == 1:
        return (int(f["L"].shape[0]),)
    return None


def _kfo_from_step_matrix(M: Tensor, name: str, d: int) -> Params:
    """``L = 1``, ``R = (P/α)^{½}`` (P symmetric PSD; its symmetric part is used)."""
    ev, U = torch.linalg.eigh(0.5 * (M + M.T))
    return {state_key(name, "L"): torch.ones(1, 1, dtype=M.dtype),
            state_key(name, "R"): (U * ev.clamp_min(0).sqrt()) @ U.T}


#: KFO: ``D = LᵀL G RᵀR`` per weight, ``LᵀL g`` per bias, kernels ``R_iᵀR_i G[o] R_fᵀR_f``.
KFO = register(Preconditioner(
    "kfo", _kfo_init, _kfo_apply,
    "KFO (Arnold et al. 2021): D = LᵀL G RᵀR, conv kernels (out, in, kh·kw) with "
    "in×in and (kh·kw)×(kh·kw) factors shared across output channels; L, R init I",
    theory_class="full", kronecker=_kfo_factors, shape_of=_kfo_shape,
    from_step_matrix=_kfo_from_step_matrix,
    references="Arnold, Iqbal, Sha (AISTATS 2021), §4",
))

#: The optimizers the package registers (MAML first): the registry's names, not a copy.
META_OPTIMIZERS: tuple[str, ...] = tuple(PRECONDITIONERS)


# -- read-out as matrices ------------------------------------------------------------------
def _colvec(t: Tensor) -> Tensor:
    """Column-major (Fortran-order) ``vec`` of a tensor: the first index varies fastest."""
    return t.permute(*reversed(range(t.ndim))).reshape(-1)


def _uncolvec(v: Tensor, shape: tuple[int, ...]) -> Tensor:
    return v.reshape(tuple(reversed(shape))).permute(*reversed(range(len(shape))))


def preconditioner_matrix(
    name: str | Preconditioner,
    state: Params,
    param_name: str,
    shape: tuple[int, ...] | torch.Size | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The learned preconditioner of one parameter as a matrix ``E`` (``N × N``, N = numel).

    ``vec D = E vec G`` for every gradient ``G`` of the parameter, with the column-major
    ``vec`` of docs/theory/update-rules.md#one-step (first index fastest), so one inner step is
    ``vec θ' = vec θ − α E vec G``. A conv kernel is vectorised in its ``(out, in, k)`` view
    (``k = kh·kw`` kernel positions in row-major order), so ``vec`` index
    ``o + out·i + out·in·κ``; kernels give Meta-Curvature ``E = M_fᵀ ⊗ M_iᵀ ⊗ M_o`` and
    KFO ``E = R_fᵀR_f ⊗ R_iᵀR_i ⊗ I_out``. For a weight ``(out, in)``:
    MAML ``E = I``; Meta-SGD ``E = diag(vec φ)``; Meta-Curvature ``E = M_iᵀ ⊗ M_o``;
    KFO ``E = RᵀR ⊗ LᵀL`` (``vec(A G B) = (Bᵀ ⊗ A) vec G``). ``E`` is read out by
    applying the (linear) ``apply`` to the N basis gradients, so it works for every
    registered preconditioner and every parameter shape (bias, weight, conv kernel);
    memory O(N²).

    Args:
        name: a registered preconditioner (or the object).
        state: its state φ (e.g. ``MetaTrainResult.precond_state``).
        param_name: the parameter, e.g. ``"layers.0.weight"``.
        shape: the parameter's shape; inferred from ``state`` when it holds a factor that
            determines it (required for MAML, whose state is empty).
        dtype, device: of ``E`` (default: those of the state).

    References: docs/theory/update-rules.md#one-step (``vec W' = vec W − α P vec G``).
    """
    pre = get_preconditioner(name)
    shape = _infer_shape(pre, state, param_name, shape)
    like = next(iter(state.values())) if state else None
    dt = dtype or (like.dtype if like is not None else torch.float64)
    dev = device or (like.device if like is not None else "cpu")
    N = math.prod(shape) if shape else 1

    st = {k: v.detach() for k, v in state.items()}

    view = _modes(shape)

    def f(v: Tensor) -> Tensor:
        G = _uncolvec(v, view).reshape(shape)
        return _colvec(pre.apply(st, {param_name: G})[param_name].reshape(view))

    basis = torch.eye(N, dtype=dt, device=dev)
    return torch.func.vmap(f)(basis).mT.detach()  # column j = vec D(e_j)


def _infer_shape(pre: Preconditioner, state: Params, param: str,
                 shape: tuple[int, ...] | torch.Size | None) -> tuple[int, ...]:
    if shape is not None:
        return tuple(int(s) for s in shape)
    found = pre.shape_of(state, param) if pre.shape_of is not None else None
    if found is None:
        raise InvalidArgumentError(
            f"shape: cannot infer the shape of {param!r} from the {pre.name} state; "
            f"pass shape=...")
    return found


def step_matrix(
    name: str | Preconditioner,
    state: Params,
    param_name: str,
    alpha: float,
    *,
    d: int | None = None,
) -> Tensor:
    """The effective ``d × d`` step matrix ``P`` of a single-output linear layer
    (docs/theory/expected-loss.md#optimal-preconditioner).

    For ``W ∈ R^{1×d}`` one inner step is ``W' = W − α D = W − G P`` with ``P = α Eᵀ``
    (E from :func:`preconditioner_matrix`): MAML ``P = α I``; Meta-SGD ``P = α diag(φ)``;
    Meta-Curvature ``P = α m_o M_i`` (``m_o`` the 1 × 1 output factor); KFO
    ``P = α l² RᵀR`` (``l`` the 1 × 1 factor ``L``). This is the matrix
    :func:`maml_depth.theory.optimal_preconditioner` optimises (``P* = [(1 + 1/n)ΛΣ +
    (c/n)I]⁻¹Λ`` for the full class).

    Args:
        name, state, param_name: as in :func:`preconditioner_matrix`.
        alpha: the inner step size α.
        d: input dimension (needed for MAML, whose state is empty).

    References: docs/theory/expected-loss.md#optimal-preconditioner (``P = αR`` for ``W − αLGR``
    with ``L`` scalar).
    """
    shape = None if d is None else (1, int(d))
    pre = get_preconditioner(name)
    shp = _infer_shape(pre, state, param_name, shape)
    if len(shp) != 2 or shp[0] != 1:
        raise ShapeError(
            f"step_matrix needs a single-output linear weight (1, d); {param_name!r} has "
            f"shape {shp}: use preconditioner_matrix for the general (N × N) matrix"
        )
    E = preconditioner_matrix(pre, state, param_name, shp)
    return alpha * E.mT


def state_for_step_matrix(name: str | Preconditioner, P: Tensor | Any, alpha: float,
                          param_name: str, d: int) -> Params:
    """A state of optimizer ``name`` whose step matrix (:func:`step_matrix`) is ``P``.

    The inverse of :func:`step_matrix` for a single-output linear weight ``(1, d)``, from
    the optimizer's own ``from_step_matrix``: Meta-SGD ``φ = diag(P)/α`` (P must be
    diagonal for an exact inverse; its diagonal is used); Meta-Curvature ``M_in = P/α``;
    KFO ``R = (P/α)^{½}`` (P symmetric PSD); MAML only ``P = α I``. Used to realise a class
    optimum of docs/theory/expected-loss.md#optimal-preconditioner as a concrete optimizer state.
    """
    pre = get_preconditioner(name)
    if pre.from_step_matrix is None:
        have = sorted(k for k, p in PRECONDITIONERS.items() if p.from_step_matrix is not None)
        raise InvalidArgumentError(
            f"name: {pre.name!r} has no state-from-step-matrix inverse (optimizers with one: "
            f"{have})")
    d = _checks.positive_int("d", d)
    alpha = _checks.finite_float("alpha", alpha, positive=True)
    Pt = torch.as_tensor(np.asarray(P, dtype=np.float64)) / alpha
    _checks.shape("P", tuple(Pt.shape), (d, d))
    params = {param_name: torch.zeros(1, d, dtype=torch.float64)}
    state = pre.init(params, (param_name,))
    state.update(pre.from_step_matrix(Pt, param_name, d))
    return state
