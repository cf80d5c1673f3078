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
from maml_depth.common.plots import COLORS, legend_outside, save_figure
from maml_depth.common.settings import DEPTH_HELPS, describe, inner, train_nets
from maml_depth.numerics import evaluate_losses
from maml_depth.theory import fixed_step_loss, optimal_preconditioner
from maml_depth.validation.claims import ClaimResult, RunContext, claim

TOL = 0.10  # the gap must be reproduced to within 10% of its predicted size
SETTING = DEPTH_HELPS


#: colours of the three networks (Okabe–Ito roles of :mod:`maml_depth.common.plots`)
NET_COLORS = {"shallow": COLORS["shallow"], "deep (population)": COLORS["deep"],
              "deep (sampled)": COLORS["deep-all"]}


def draw_losses(ax: Any, losses: dict[str, Any], theory: dict[str, float], n_tasks: int
                ) -> None:
    """Each network's mean post-adaptation loss over the fresh tasks with its 95% Student-t
    interval (a point with error bars, not a bar), and beside it its theory value
    (``E ℒ(αI)`` for the shallow model, ``E ℒ(P*)`` for the deep nets) as a black
    horizontal tick; the legend sits outside the axes, clear of the data."""
    import numpy as np

    names = list(losses)
    for i, name in enumerate(names):
        v = np.asarray(losses[name], dtype=float)
        iv = stats.mean_interval(v)
        ax.errorbar([i], [iv.estimate], yerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]],
                    fmt="o", color=NET_COLORS.get(name, COLORS["deep"]), capsize=4, ms=6,
                    label=f"measured (mean, 95% CI, n = {v.size} tasks)" if i == 0 else None,
                    zorder=3)
    for i, name in enumerate(names):  # one short horizontal segment per network
        ax.plot([i - 0.3, i + 0.3], [theory[name], theory[name]], lw=2.5,
                color=COLORS["theory"], zorder=2, gid="theory",
                label="theory: E ℒ(αI) (shallow), E ℒ(P*) (deep)" if i == 0 else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel(f"post-adaptation loss ({n_tasks} fresh tasks)")
    ax.set_title("Depth helps: measured vs theory")
    legend_outside(ax)


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
    deep_losses: dict[str, Any] = {}
    for name, p in (("population", nets.deep_population), ("sampled", nets.deep_sampled)):
        dp = evaluate_losses(nets.deep, p, fam, inner(s), num_tasks=N, seed=seed).numpy()
        deep_losses[name] = dp
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
        draw_losses(ax, {"shallow": sh, "deep (population)": deep_losses["population"],
                         "deep (sampled)": deep_losses["sampled"]},
                    {"shallow": loss_alpha, "deep (population)": loss_star,
                     "deep (sampled)": loss_star}, N)

    figures = save_figure(ctx.out_dir, "claim3_depth_helps", draw, size=(8.5, 4.0))
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
