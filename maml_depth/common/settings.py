"""The standard linear-regression settings, their task-family builders, and the networks
meta-trained on them (claims 3–6, the paper figures, the sweep).

- :class:`LinearSetting` — the setting of claims 3–5 and of the figures;
  :data:`DEPTH_HELPS`, :data:`UPPER_LAYERS` (the default setting) and
  :data:`BOTTOM_LAYERS` (d = 6, rank-2 Λ) are the claims' instances;
- :func:`w_bar_in_range` — a W̄ drawn in the range of Λ (the one implementation);
- :func:`spectrum_family` — the claim-6 shallow family (fixed W̄, geometric spectra);

docs/theory/expected-loss.md#optimal-preconditioner's exact comparison: m = 1, one inner step (k =
1) on the top layer only
(S = {L}), hidden widths ≥ d. Hidden widths are ``2d``: with width exactly d a network can
stall at a critical point where the top layer annihilates a direction of ``B_L`` (then
``W_L B_L = W̄`` forces ``rank B_L < d`` and ``P = α B_LᵀB_L`` cannot reach a full-rank P*);
width ``2d`` leaves room for ``B_L`` of full column rank.

Each trained network is measured on fresh tasks by adapting it with autograd
(numerics/), never by evaluating theory/ on its weights.

References: docs/theory/expected-loss.md#optimal-preconditioner, docs/theory/paper-claims.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from maml_depth.common.budgets import Budget
from maml_depth.numerics import (
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    OuterConfig,
    Params,
    meta_train,
    train_population,
)


@dataclass(frozen=True)
class LinearSetting:
    """Anisotropic rotated Σ and Λ (eigenvalues geometric), W̄ ≠ 0 in the range of Λ."""

    d: int = 4
    n: int = 10
    sigma: float = 0.5
    alpha: float = 0.1
    sigma_range: tuple[float, float] = (0.3, 3.0)
    lam_range: tuple[float, float] = (0.5, 2.0)
    lam_rank: int | None = None  # None: full rank
    depth: int = 3
    meta_batch: int = 64
    lr: float = 1e-2

    @property
    def hidden(self) -> int:
        """Hidden width of the deep network: ``2 d``."""
        return 2 * self.d

    @property
    def deep_dims(self) -> tuple[int, ...]:
        """Widths ``(d, hidden, …, hidden, 1)`` of the deep network: ``depth`` layers."""
        return (self.d, *([self.hidden] * (self.depth - 1)), 1)

    def outer(self, budget: Budget) -> OuterConfig:
        """Adam with a cosine-decayed learning rate (no stochastic floor at the end)."""
        return OuterConfig(meta_steps=budget.meta_steps, meta_batch=self.meta_batch, lr=self.lr,
                           schedule="cosine", log_every=10)

    def family(self, seed: int) -> LinearRegressionTasks:
        """The task family of seed ``seed``: Σ and Λ with geometric eigenvalues in
        ``sigma_range`` and ``lam_range`` (Λ of rank ``lam_rank`` if set), rotated, and W̄ in
        the range of Λ, so that the optimum ``D = W − W̄ = 0`` is reachable.

        References: docs/theory/notation.md#task-family."""
        g = torch.Generator().manual_seed(10_000 + seed)
        lam = np.geomspace(*self.lam_range, self.d)
        if self.lam_rank is not None:
            lam[self.lam_rank:] = 0.0
        base = LinearRegressionTasks.from_spectrum(
            np.geomspace(*self.sigma_range, self.d).tolist(), lam.tolist(), sigma=self.sigma,
            n_support=self.n, generator=g)
        # W̄ in the range of Λ (reachable optimum D = 0 for every rank)
        W_bar = w_bar_in_range(base.Lam, generator=g)
        return LinearRegressionTasks(base.Sigma, W_bar, base.Lam, self.sigma, self.n)


#: the settings of claims 3 (depth helps), 4 (upper layers) and 5 (bottom layers); the
#: figures draw the same networks
DEPTH_HELPS = LinearSetting()
UPPER_LAYERS = LinearSetting()
BOTTOM_LAYERS = LinearSetting(d=6, lam_rank=2, lam_range=(0.5, 2.0))


def w_bar_in_range(Lam: torch.Tensor, *, generator: torch.Generator, rows: int = 1,
                   norm: float = 1.0) -> torch.Tensor:
    """A random ``W̄ ∈ R^{rows×d}`` whose rows lie in ``range(Λ)`` (so the optimum
    ``D = 0`` is reachable whatever the rank of Λ), each of Frobenius norm ``norm``:
    ``W̄ = norm · (Z U Uᵀ)/‖Z U Uᵀ‖`` row by row, ``Z`` standard normal (drawn from
    ``generator``), ``U`` the eigenvectors of Λ with eigenvalue > 10⁻¹² λ_max. Where Λ = 0
    (no task spread) the rows of ``Z`` are used.

    References: docs/theory/expected-loss.md#closed-form (the task distribution W_t = W̄ + D_t,
    D_t ~ (0, Λ))."""
    d = Lam.shape[0]
    Z = torch.randn(rows, d, generator=generator, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(Lam.to(torch.float64))
    top = float(evals.max()) if evals.numel() else 0.0
    if top <= 0.0:
        U = Z
    else:
        Q = evecs[:, evals > 1e-12 * top]
        U = (Z @ Q) @ Q.T
    if rows == 1:
        return norm * U / U.norm()
    norms = U.norm(dim=1, keepdim=True)
    U = torch.where(norms > 1e-12, U, Z)
    return norm * U / U.norm(dim=1, keepdim=True)


def spectrum_family(seed: int, *, d: int, n: int, sigma: float, W_bar: torch.Tensor,
                    sigma_range: tuple[float, float], lam_range: tuple[float, float],
                    seed_offset: int) -> LinearRegressionTasks:
    """Tasks with rotated ``Σ``, ``Λ`` of geometric spectra over ``sigma_range`` and
    ``lam_range`` (a reversed range gives a decreasing spectrum) and a given ``W̄``;
    the rotations are drawn from ``seed_offset + seed``."""
    g = torch.Generator().manual_seed(seed_offset + seed)
    return LinearRegressionTasks.from_spectrum(
        np.geomspace(*sigma_range, d).tolist(), np.geomspace(*lam_range, d).tolist(),
        sigma=sigma, n_support=n, W_bar=W_bar, generator=g)


@dataclass
class TrainedNets:
    """Meta-trained shallow and deep networks of one seed, with trajectories."""

    family: LinearRegressionTasks
    shallow: DeepLinear
    deep: DeepLinear
    shallow_params: Params
    deep_population: Params
    deep_sampled: Params
    trajectory_population: list[tuple[int, Params]] = field(default_factory=list)
    trajectory_sampled: list[tuple[int, Params]] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    unconverged: list[str] = field(default_factory=list)

    def extracted_P(self, params: Params, alpha: float) -> np.ndarray:
        """``P = α B_LᵀB_L`` from the frozen layers below the top
        (docs/theory/expected-loss.md#optimal-preconditioner)."""
        return alpha * (B_L(self.deep, params).T @ B_L(self.deep, params)).numpy()


def B_L(model: DeepLinear, params: Params) -> torch.Tensor:
    """``B_L = W_{L−1} ⋯ W_1`` (the layers below the adapted top layer)."""
    ws = [params[k].detach() for k in model.weight_names[:-1]]
    out = ws[0]
    for w in ws[1:]:
        out = w @ out
    return out


def inner(setting: LinearSetting, depth_one: bool = False) -> InnerConfig:
    """One inner step of size α on the top layer (all layers for the shallow model)."""
    return InnerConfig(alpha=setting.alpha, adapt="all" if depth_one else "top")


@functools.lru_cache(maxsize=16)
def train_nets(setting: LinearSetting, budget: Budget, family_seed: int, seed: int,
               device: str = "cpu") -> TrainedNets:
    """Meta-train (1) the shallow model on sampled tasks, (2) the deep model on the
    population objective (L-BFGS) and (3) the deep model on sampled tasks (Adam).

    ``family_seed`` fixes the task family, ``seed`` the initialisation and task sampling.
    Cached: claims 3 and 4 share these runs.
    """
    fam = setting.family(family_seed)
    g = torch.Generator().manual_seed(seed)
    shallow = DeepLinear((setting.d, 1), generator=g)
    deep = DeepLinear(setting.deep_dims, init="gaussian", scale=1.0, generator=g)
    outer = setting.outer(budget)
    diverged = []
    r_sh = meta_train(shallow, fam, inner(setting, True), outer, seed=seed)
    traj_pop: list[tuple[int, Params]] = []
    pop = train_population(deep, fam, alpha=setting.alpha, adapt="top",
                           iterations=max(1, budget.population_steps // 100),
                           callback=lambda it, p: traj_pop.append((it, p)))
    traj_s: list[tuple[int, Params]] = []
    every = max(1, budget.meta_steps // 30)

    def record(step: int, p: Params, _s: Params) -> None:
        if step % every < 10:
            traj_s.append((step, {k: v.clone() for k, v in p.items()}))

    r_deep = meta_train(deep, fam, inner(setting), outer, seed=seed + 1, callback=record)
    unconverged = []
    for name, r in (("shallow", r_sh), ("deep", r_deep)):
        if r.diverged:
            diverged.append(r.diverged)
        elif r.convergence is not None and not r.convergence.converged:
            unconverged.append(f"{name} (seed {seed}): {r.convergence.reason}")
    return TrainedNets(fam, shallow, deep, r_sh.params, pop.params, r_deep.params, traj_pop,
                       traj_s, diverged, {"shallow": r_sh.seconds, "population": pop.seconds,
                                          "sampled": r_deep.seconds}, unconverged)


def describe(setting: LinearSetting) -> dict[str, Any]:
    """The setting as a plain dict for reports: its fields, the deep network's widths, and the
    adapted layer (top), steps (1) and outputs (m = 1)."""
    from dataclasses import asdict

    return asdict(setting) | {"deep_dims": list(setting.deep_dims), "adapt": "top (S = {L})",
                              "steps": 1, "m": 1}
