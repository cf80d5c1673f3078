"""Claim 4 — upper layers precondition: the preconditioner extracted from a meta-trained
deep net's frozen layers, ``P = α B_LᵀB_L``, converges to P*
(docs/theory/expected-loss.md#optimal-preconditioner), and adapting the
net changes W exactly by ``−G P``.

Per training seed: relative Frobenius error ``‖P − P*‖/‖P*‖`` and alignment
``⟨P, P*⟩/(‖P‖‖P*‖)`` for the net trained on the population objective (L-BFGS; must reach
``≤ TOL_POPULATION``) and on sampled tasks (Adam; its stochastic floor must lie below
``TOL_SAMPLED``), each with a 95% t-interval over seeds; plus, on fresh tasks, one real
autograd inner step of the trained net against ``W − G P`` (relative error ≤ 1e-10).

References: docs/theory/update-rules.md#one-step,
docs/theory/expected-loss.md#optimal-preconditioner, docs/theory/paper-claims.md#claim-4; paper §3
("upper layers are meta-learned to precondition").
"""

from __future__ import annotations

import numpy as np
import torch

from maml_depth.common import stats
from maml_depth.common.plots import trajectory_figure
from maml_depth.common.settings import UPPER_LAYERS, TrainedNets, describe, train_nets
from maml_depth.numerics import inner_adapt
from maml_depth.theory import optimal_preconditioner
from maml_depth.validation.claims import ClaimResult, RunContext, claim

TOL_POPULATION = 1e-3
TOL_SAMPLED = 0.15
TOL_STEP = 1e-10
SETTING = UPPER_LAYERS


def rel_error(P: np.ndarray, P_star: np.ndarray) -> float:
    """Relative Frobenius error ``‖P − P*‖_F / ‖P*‖_F``."""
    return float(np.linalg.norm(P - P_star) / np.linalg.norm(P_star))


def alignment(P: np.ndarray, P_star: np.ndarray) -> float:
    """Cosine of the angle between ``P`` and ``P*`` in the Frobenius inner product:
    ``⟨P, P*⟩_F / (‖P‖_F ‖P*‖_F)``."""
    return float(np.sum(P * P_star) / (np.linalg.norm(P) * np.linalg.norm(P_star)))


def step_error(nets: TrainedNets, alpha: float, tasks: int, seed: int) -> float:
    """Max over fresh tasks of ‖W'_autograd − (W − G P)‖/‖W'‖ for the sampled-trained net."""
    p = nets.deep_sampled
    batch = nets.family.sample(tasks, torch.Generator().manual_seed(seed))
    P = torch.from_numpy(nets.extracted_P(p, alpha))
    W = nets.deep.end_to_end(p)
    worst = 0.0
    for t in range(tasks):
        X, Y = batch.X[t], batch.Y[t]
        W_new = nets.deep.end_to_end(inner_adapt(nets.deep, p, X, Y, alpha=alpha, adapt="top"))
        G = (W @ X.T - Y.T) @ X / X.shape[0]
        worst = max(worst, float((W_new - (W - G @ P)).norm() / W_new.norm()))
    return worst


@claim("upper-layers-precondition", number=4, title="Upper layers precondition",
       statement="The preconditioner α B_LᵀB_L extracted from a meta-trained deep net "
                 "converges to P*, and adapting the net changes W as the closed form says.",
       reference="docs/theory/expected-loss.md#optimal-preconditioner, "
                 "docs/theory/paper-claims.md#claim-4; paper §3")
def run(ctx: RunContext) -> ClaimResult:
    """Claim 4: the preconditioner ``α B_LᵀB_L`` of meta-trained deep nets (top layer adapted)
    against the optimal ``P*`` (relative error, alignment), over seeds.

    References: docs/theory/paper-claims.md#claim-4,
    docs/theory/expected-loss.md#optimal-preconditioner."""
    s = SETTING
    errs_pop, errs_s, aligns = [], [], []
    trajs: list[list[tuple[int, float]]] = []
    step_err = 0.0
    P_star = None
    not_converged: list[str] = []
    for k in range(ctx.budget.seeds):
        nets = train_nets(s, ctx.budget, ctx.seed, ctx.seed + k)
        not_converged += nets.diverged + [u for u in nets.unconverged if u.startswith("deep")]
        fam = nets.family
        P_star, _ = optimal_preconditioner(fam.Sigma.numpy(), fam.Lam.numpy(), s.sigma, s.n)
        errs_pop.append(rel_error(nets.extracted_P(nets.deep_population, s.alpha), P_star))
        P_s = nets.extracted_P(nets.deep_sampled, s.alpha)
        errs_s.append(rel_error(P_s, P_star))
        aligns.append(alignment(P_s, P_star))
        trajs.append([(st, rel_error(nets.extracted_P(p, s.alpha), P_star))
                      for st, p in nets.trajectory_sampled])
        step_err = max(step_err, step_error(nets, s.alpha, 50, 99 + k))
    # relative errors are ≥ 0: their mean's interval is cut at 0
    iv_pop = stats.mean_interval(errs_pop, lower=0.0)
    iv_s = stats.mean_interval(errs_s, lower=0.0)
    verdict = stats.combine([stats.verdict_below(iv_pop, TOL_POPULATION),
                             stats.verdict_below(iv_s, TOL_SAMPLED),
                             "pass" if step_err <= TOL_STEP else "fail"])
    if not_converged:  # an unconverged network is never a pass or a fail
        verdict = "inconclusive"
    figures = trajectory_figure(
        ctx.out_dir, "claim4_preconditioner_error", trajs, log=True,
        label="sampled-task training", tolerance=TOL_SAMPLED,
        tol_label=f"tolerance {TOL_SAMPLED}", ylabel="‖α B_LᵀB_L − P*‖_F / ‖P*‖_F",
        title="Extracted preconditioner → P*")
    return ctx.result(
        figures=figures,
        verdict=verdict, measured=iv_s.estimate, theory=0.0, interval=iv_s,
        effect="relative Frobenius error ‖α B_LᵀB_L − P*‖/‖P*‖ (sampled-task training)",
        summary=(f"over {len(errs_s)} seeds: population-trained error {iv_pop} "
                 f"(tol {TOL_POPULATION:g}); sampled-trained error {iv_s} (tol {TOL_SAMPLED}); "
                 f"alignment {np.mean(aligns):.4f}; one inner step vs W − G P: max rel. error "
                 f"{step_err:.1e}")
                + (f"; inconclusive: not converged: {'; '.join(not_converged)}"
                   if not_converged else ""),
        config=describe(s) | {"seeds": ctx.budget.seeds, "meta_steps": ctx.budget.meta_steps},
        details={"errors_population": errs_pop, "errors_sampled": errs_s,
                 "alignment_sampled": aligns, "trajectory_sampled": trajs[0] if trajs else [],
                 "trajectories_sampled": trajs,
                 "step_error": step_err,
                 "P_star_eigenvalues": np.linalg.eigvalsh(P_star).tolist()
                 if P_star is not None else None},
    )
