"""Claim 3 — depth helps: a deep linear net adapting its top layer beats the shallow model
on the same linear tasks, by the amount docs/theory/expected-loss.md#optimal-preconditioner
predicts.

Theory: the meta-trained shallow model (W → W̄) reaches ``E ℒ(αI)``; a deep net adapting
its top layer (hidden widths ≥ d) reaches ``E ℒ(P*)``. The predicted gap is
``Δ_th = E ℒ(αI) − E ℒ(P*)``.

Measurement: both networks meta-trained (the deep one on the population objective and,
separately, on sampled tasks), then adapted with autograd on the *same* fresh tasks; the
paired per-task differences give ``Δ`` with a 95% t-interval. Pass when the interval of
``Δ / Δ_th`` lies inside ``[1 − TOL, 1 + TOL]`` for both deep nets.

References: docs/theory/expected-loss.md#optimal-preconditioner,
docs/theory/paper-claims.md#claim-3; paper §3 ("Shallow" vs "Deep").
"""

from __future__ import annotations

from typing import Any

from maml_depth.common import stats
from maml_depth.common.plots import save_figure
from maml_depth.common.settings import DEPTH_HELPS, describe, inner, train_nets
from maml_depth.numerics import evaluate_losses
from maml_depth.theory import fixed_step_loss, optimal_preconditioner
from maml_depth.validation.claims import ClaimResult, RunContext, claim

TOL = 0.10  # the gap must be reproduced to within 10% of its predicted size
SETTING = DEPTH_HELPS


@claim("depth-helps", number=3, title="Depth helps",
       statement="Meta-trained deep linear nets reach a lower post-adaptation loss than the "
                 "meta-trained shallow model on the same linear tasks, by the amount "
                 "the optimal-preconditioner theory predicts (E ℒ(αI) − E ℒ(P*)).",
       reference="docs/theory/expected-loss.md#optimal-preconditioner, "
                 "docs/theory/paper-claims.md#claim-3; paper §3")
def run(ctx: RunContext) -> ClaimResult:
    """Claim 3: the gap ``E ℒ(αI) − E ℒ(P*)`` between the shallow fixed-step loss and the deep
    net's optimum, predicted by the closed forms, against the measured post-adaptation losses
    of meta-trained shallow and deep nets on fresh tasks (paired, 95% interval).

    References: docs/theory/paper-claims.md#claim-3."""
    s = SETTING
    nets = train_nets(s, ctx.budget, ctx.seed, ctx.seed)
    fam = nets.family
    S_, La = fam.Sigma.numpy(), fam.Lam.numpy()
    loss_alpha = fixed_step_loss(S_, La, s.sigma, s.n, s.alpha)
    _, loss_star = optimal_preconditioner(S_, La, s.sigma, s.n, "full")
    gap_th = loss_alpha - loss_star
    N, seed = ctx.budget.eval_tasks, 7_000_000 + ctx.seed
    sh = evaluate_losses(nets.shallow, nets.shallow_params, fam, inner(s, True),
                         num_tasks=N, seed=seed).numpy()
    parts = []
    details: dict[str, Any] = {}
    for name, p in (("population", nets.deep_population), ("sampled", nets.deep_sampled)):
        dp = evaluate_losses(nets.deep, p, fam, inner(s), num_tasks=N, seed=seed).numpy()
        iv = stats.ratio_interval(sh - dp, gap_th)
        parts.append((name, iv, stats.verdict_within(iv, 1 - TOL, 1 + TOL)))
        details[name] = {"deep_loss": float(dp.mean()), "gap_ratio": iv.estimate,
                         "gap_ratio_ci": iv.as_list(), "verdict": parts[-1][2]}
    details["shallow_loss"] = float(sh.mean())
    verdict = stats.combine([v for _, _, v in parts])
    not_converged = nets.diverged + nets.unconverged  # never a pass or a fail
    if not_converged:
        verdict = "inconclusive"
    # headline: the sampled-task network's gap, in loss units (the ratio interval × Δ_th)
    r = parts[1][1]
    main = stats.Interval(r.estimate * gap_th, r.low * gap_th, r.high * gap_th, r.level, r.n,
                          r.method)

    def draw(ax: Any) -> None:
        names = ["shallow", "deep (population)", "deep (sampled)"]
        vals = [float(sh.mean()), details["population"]["deep_loss"],
                details["sampled"]["deep_loss"]]
        ax.bar(names, vals, color=["#D55E00", "#0072B2", "#56B4E9"])
        ax.axhline(loss_alpha, ls="--", color="#D55E00", label="theory E ℒ(αI)")
        ax.axhline(loss_star, ls=":", color="#0072B2", label="theory E ℒ(P*)")
        ax.set_ylabel(f"post-adaptation loss ({N} fresh tasks)")
        ax.set_title("Depth helps: measured vs theory")
        ax.legend()

    figures = save_figure(ctx.out_dir, "claim3_depth_helps", draw)
    return ctx.result(
        figures=figures,
        verdict=verdict, measured=main.estimate, theory=gap_th, interval=main,
        effect="gap shallow − deep (sampled-task training, paired over fresh tasks)",
        summary=(f"shallow {sh.mean():.4f} (theory E ℒ(αI) = {loss_alpha:.4f}); deep "
                 f"{details['population']['deep_loss']:.4f} (population-trained), "
                 f"{details['sampled']['deep_loss']:.4f} (sampled-trained), theory E ℒ(P*) = "
                 f"{loss_star:.4f}; gap ratio {parts[0][1]} / {parts[1][1]}; "
                 f"band 1 ± {TOL}")
                + (f"; inconclusive: not converged: {'; '.join(not_converged)}"
                   if not_converged else ""),
        config=describe(s) | {"eval_tasks": N, "meta_steps": ctx.budget.meta_steps},
        details=details | {"theory_loss_alpha": loss_alpha, "theory_loss_star": loss_star,
                           "diverged": nets.diverged, "unconverged": nets.unconverged},
    )
