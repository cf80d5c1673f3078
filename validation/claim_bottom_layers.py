"""Claim 5 — bottom layers learn representations: with task weights in a k-dimensional
subspace (Λ of rank k, W̄ in its range), the row space of ``B_L`` (the layers below the
adapted top layer) aligns with that subspace.

Measured per seed after meta-training on sampled tasks: the principal angles between the
top-k right singular subspace of ``B_L`` and ``range(Λ)``, and the fraction of ``B_L``'s
energy outside ``range(Λ)``; at initialisation for contrast. Verdict per seed: ``pass``
when every seed's largest principal angle is below ``TOL_DEG`` degrees, ``fail`` when none
is, ``inconclusive`` when seeds disagree; a 95% interval over seeds is reported (with
few seeds it is too wide to decide on its own). A principal angle lies in ``[0°, 90°]``, so
the interval is computed where that bound cannot be crossed (:func:`angle_interval`): a
Student-t interval of ``logit(θ/90°)`` over seeds, mapped back — it never goes below 0° or
above 90° (a plain t-interval of the angles did go negative).

References: docs/theory/expected-loss.md#optimal-preconditioner,
docs/theory/paper-claims.md#claim-5; paper §3–4.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import subspace_angles

from maml_depth.common import stats
from maml_depth.common.plots import trajectory_figure
from maml_depth.common.settings import B_L, BOTTOM_LAYERS, describe, inner
from maml_depth.numerics import DeepLinear, meta_train
from maml_depth.validation.claims import ClaimResult, RunContext, claim

TOL_DEG = 10.0
SETTING = BOTTOM_LAYERS


def angles_deg(B: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Principal angles (degrees) between the top-k right singular vectors of B and U."""
    k = U.shape[1]
    _, _, Vh = np.linalg.svd(B)
    return np.degrees(subspace_angles(Vh[:k].T, U))


def angle_interval(angles: list[float] | np.ndarray, level: float = stats.LEVEL
                   ) -> stats.Interval:
    """95% interval of the typical principal angle over seeds, respecting ``θ ∈ [0°, 90°]``.

    With ``u = logit(θ/90°) = log(θ/(90° − θ))``: a Student-t interval ``ū ± t·s_u/√n`` of the
    ``u`` over the ``n`` seeds, mapped back by ``θ = 90°·σ(u)`` (σ the logistic function);
    the estimate is ``90°·σ(ū)`` (a back-transformed mean, between the geometric mean and the
    mean for small angles). Angles are clipped to ``[1e-9°, 90° − 1e-9°]`` before the
    transform (an exactly aligned subspace would otherwise give ``−∞``).

    References: docs/theory/paper-claims.md#claim-5."""
    a = np.clip(np.asarray(angles, dtype=np.float64), 1e-9, 90.0 - 1e-9)
    u = np.log(a / (90.0 - a))
    iv = stats.mean_interval(u, level)

    def back(v: float) -> float:
        return float(90.0 / (1.0 + np.exp(-v)))

    return stats.Interval(back(iv.estimate), back(iv.low), back(iv.high), level, iv.n,
                          "t-interval of logit(θ/90°), mapped back")


def energy_outside(B: np.ndarray, U: np.ndarray) -> float:
    """Energy of ``B`` outside the subspace spanned by the orthonormal columns of ``U``:
    ``‖B − BUUᵀ‖²_F / ‖B‖²_F``.

    References: docs/theory/paper-claims.md#claim-5."""
    return float(np.linalg.norm(B - B @ U @ U.T) ** 2 / np.linalg.norm(B) ** 2)


@claim("bottom-layers-represent", number=5, title="Bottom layers learn representations",
       statement="With Λ of rank k and W̄ in its range, the row space of B_L aligns with the "
                 "k-dimensional task subspace (principal angles).",
       reference="docs/theory/expected-loss.md#optimal-preconditioner, "
                 "docs/theory/paper-claims.md#claim-5; paper §3–4")
def run(ctx: RunContext) -> ClaimResult:
    """Claim 5: meta-train deep nets (top layer adapted) on tasks with Λ of rank k and W̄ in its
    range, and check that the row space of ``B_L`` aligns with the range of Λ (principal
    angles, energy outside ``‖B − BUUᵀ‖²_F/‖B‖²_F``), over seeds.

    References: docs/theory/paper-claims.md#claim-5."""
    s = SETTING
    fam = s.family(ctx.seed)
    evals, evecs = torch.linalg.eigh(fam.Lam)
    U = evecs[:, evals > 1e-10 * float(evals.max())].numpy()
    worst, worst0, energy = [], [], []
    trajs: list[list[tuple[int, float]]] = []
    not_converged: list[str] = []
    every = max(1, ctx.budget.meta_steps // 30)
    for k in range(ctx.budget.seeds):
        g = torch.Generator().manual_seed(ctx.seed + 100 + k)
        deep = DeepLinear(s.deep_dims, init="gaussian", generator=g)
        p0 = {n: p.detach() for n, p in deep.named_parameters()}
        worst0.append(float(angles_deg(B_L(deep, p0).numpy(), U).max()))
        rec: list[tuple[int, float]] = []

        def record(step: int, p: dict[str, torch.Tensor], _s: object,
                   rec: list[tuple[int, float]] = rec, deep: DeepLinear = deep) -> None:
            if step % every < 10:
                rec.append((step, float(angles_deg(B_L(deep, p).numpy(), U).max())))

        res = meta_train(deep, fam, inner(s), s.outer(ctx.budget), seed=ctx.seed + 200 + k,
                         callback=record)
        conv = res.convergence
        why = res.diverged or (conv.reason if conv is not None and not conv.converged else None)
        if why:
            not_converged.append(f"seed {k}: {why}")
        B = B_L(deep, res.params).numpy()
        worst.append(float(angles_deg(B, U).max()))
        energy.append(energy_outside(B, U))
        trajs.append(rec)
    iv = angle_interval(worst)
    iv0 = angle_interval(worst0)
    verdict = stats.verdict_all_seeds([a < TOL_DEG for a in worst])
    if not_converged:  # an unconverged network is never a pass or a fail
        verdict = "inconclusive"
    figures = trajectory_figure(
        ctx.out_dir, "claim5_principal_angles", trajs,
        label="largest principal angle", tolerance=TOL_DEG,
        tol_label=f"tolerance {TOL_DEG}°",
        ylabel="angle between row space of B_L and range(Λ) (°)",
        title="Bottom layers align with the task subspace")
    return ctx.result(
        figures=figures,
        verdict=verdict, measured=iv.estimate, theory=0.0, interval=iv,
        effect="largest principal angle (degrees) between row space of B_L and range(Λ)",
        summary=(f"rank-{U.shape[1]} Λ in d = {s.d}: largest principal angle after training "
                 f"{iv} (tol {TOL_DEG}°), at initialisation {iv0.estimate:.1f}°; energy of "
                 f"B_L outside range(Λ) {np.mean(energy):.3f}")
                + (f"; inconclusive: not converged: {'; '.join(not_converged)}"
                   if not_converged else ""),
        config=describe(s) | {"seeds": ctx.budget.seeds, "meta_steps": ctx.budget.meta_steps},
        details={"largest_angle_deg": worst, "largest_angle_init_deg": worst0,
                 "energy_outside": energy, "trajectory_largest_angle": trajs[0] if trajs else [],
                 "trajectories_largest_angle": trajs,
                 "interval_method": iv.method},
    )
