"""Neighbour claim ``bernacchia-negative-rate`` — Bernacchia (ICLR 2021).

Mixed linear regression (``x ~ N(0, I_p)``, ``w ~ N(w₀, (ν²/p) I)``, ``y = wᵀx + σε``), m
training tasks with n_t support and n_v query points; ω̂ is the exact minimiser of the
empirical one-step MAML objective with meta-training rate α_t (minimum-norm from ω₀ = w₀);
at test one step α_r on n_r points. Sizes of the paper's figure 2.

Measured by Monte Carlo of the exact estimator (``theory.empirical_maml.maml_estimator``,
checked against its autograd twin in the tests) with common random numbers across α_t, and a
real test task per trial:

1. the argmin of the test loss over the α_t grid in [−2, 1] is negative: the paired 95%
   interval of ``L(best negative α_t) − L(best α_t ≥ 0)`` lies below 0;
2. ``L(α_t = −1) < L(0)`` by more than 5 standard errors (paired; a statement about the
   measured z statistic: pass when z < −5, fail otherwise, with ≥ ``MIN_TRIALS`` trials);
3. the package's formula for ``E‖ω̂ − w₀‖²`` and for the test loss matches Monte Carlo within
   5% (95% interval of the ratio inside [0.95, 1.05]) at α_t = −1, 0 and the formula's argmin.

Wrong variants (``variant=``): ``"argmin-nonneg"`` predicts argmin α_t ≥ 0 (parts 1–2
mirrored); ``"naive"`` uses k/p for k/(p − k − 1) (part 3 fails); ``"sigma0"`` claims the
effect without label noise — the package's derivation says the α_t-dependence comes from σ
alone, so at σ = 0 the argmin is not negative (parts 1–2 fail).

References: A. Bernacchia, "Meta-learning with negative learning rates", ICLR 2021 (figure 2
setting). The formula is the package's own derivation of the stated setting:
docs/theory/neighbours-bernacchia.md.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import numpy as np

from maml_depth.common import stats
from maml_depth.common.plots import PALETTE, legend_outside, save_figure
from maml_depth.errors import InvalidArgumentError
from maml_depth.theory.empirical_maml import (
    BernacchiaSetting,
    bernacchia_estimator_error,
    bernacchia_test_loss,
    maml_estimator,
)
from maml_depth.validation.claims import ClaimResult, RunContext, claim

SETTING = BernacchiaSetting()
GRID: tuple[float, ...] = tuple(float(a) for a in np.linspace(-2.0, 1.0, 13))
VARIANTS = ("paper", "argmin-nonneg", "naive", "sigma0")
MATCH = 0.05  # the claim's tolerance: formula within 5% of Monte Carlo
Z_SIGNIF = 5.0  # the claim's "by more than 5 standard errors"
#: below this the 5 SE test lacks power: at the paper's sizes the formula's effect
#: L(−1) − L(0) is ≈ 0.6 per-trial standard deviations, i.e. z ≈ −0.6·√n (−15 at n = 600)
MIN_TRIALS = 500


def simulate(s: BernacchiaSetting, alphas: np.ndarray, trials: int, seed: int,
             chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo with common random numbers: per trial one meta-training set and one test
    task; returns ``‖ω̂ − w₀‖²`` and the test task's population loss after one step α_r,
    both of shape ``(len(alphas), trials)`` (w₀ = ω₀ = 0)."""
    rng = np.random.default_rng(seed)
    p, m, nt, nv, nr = s.p, s.m, s.n_t, s.n_v, s.n_r
    errs, losses = [], []
    left = trials
    while left > 0:
        T = min(chunk, left)
        left -= T
        w = rng.standard_normal((T, m, p)) * s.nu / np.sqrt(p)
        Xt, Xv = rng.standard_normal((T, m, nt, p)), rng.standard_normal((T, m, nv, p))
        yt = np.einsum("tmnp,tmp->tmn", Xt, w) + s.sigma * rng.standard_normal((T, m, nt))
        yv = np.einsum("tmnp,tmp->tmn", Xv, w) + s.sigma * rng.standard_normal((T, m, nv))
        w_test = rng.standard_normal((T, p)) * s.nu / np.sqrt(p)
        Xr = rng.standard_normal((T, nr, p))
        yr = np.einsum("tnp,tp->tn", Xr, w_test) + s.sigma * rng.standard_normal((T, nr))
        e_a, l_a = [], []
        for a in alphas:
            om = maml_estimator(Xt, yt, Xv, yv, float(a))
            grad = np.einsum("tnp,tn->tp", Xr, np.einsum("tnp,tp->tn", Xr, om) - yr) / nr
            om_r = om - s.alpha_r * grad
            e_a.append(np.sum(om ** 2, axis=1))
            l_a.append(0.5 * (np.sum((om_r - w_test) ** 2, axis=1) + s.sigma ** 2))
        errs.append(np.stack(e_a))
        losses.append(np.stack(l_a))
    return np.concatenate(errs, axis=1), np.concatenate(losses, axis=1)


def _paired(a: np.ndarray, b: np.ndarray) -> stats.Interval:
    return stats.mean_interval(a - b)


def evaluate(trials: int, seed: int, variant: str = "paper",
             setting: BernacchiaSetting = SETTING) -> dict[str, Any]:
    """Run the three checks (see the module docstring); ``variant`` selects a wrong claim."""
    if variant not in VARIANTS:
        raise InvalidArgumentError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if trials < MIN_TRIALS:
        raise InvalidArgumentError(f"trials must be >= {MIN_TRIALS} (power of the 5 SE test), "
                                   f"got {trials}")
    s = replace(setting, sigma=0.0) if variant == "sigma0" else setting
    inverse = "naive" if variant == "naive" else "wishart"
    fine = np.linspace(-2.0, 1.0, 3001)
    pred_curve = bernacchia_test_loss(s, fine, inverse=inverse)
    a_star = float(fine[int(np.argmin(pred_curve))])
    grid = np.asarray(GRID)
    checks = np.array([-1.0, 0.0, a_star])
    alphas = np.concatenate([grid, checks])
    err, loss = simulate(s, alphas, trials, seed)
    G = len(grid)
    mean_loss = loss[:G].mean(axis=1)
    neg, nonneg = grid < 0, grid >= 0
    i_neg = int(np.flatnonzero(neg)[np.argmin(mean_loss[neg])])
    i_pos = int(np.flatnonzero(nonneg)[np.argmin(mean_loss[nonneg])])
    d_arg = _paired(loss[i_neg], loss[i_pos])  # < 0: the argmin is negative
    i_m1, i_0 = G, G + 1
    diff = loss[i_m1] - loss[i_0]
    d_m1 = _paired(loss[i_m1], loss[i_0])
    se = float(diff.std(ddof=1) / np.sqrt(diff.size))
    z = float(diff.mean() / se) if se > 0 else float("-inf") * np.sign(-diff.mean())
    if variant == "argmin-nonneg":  # the mirrored prediction: argmin ≥ 0, L(0) ≤ L(−1)
        v_arg = stats.verdict_above(d_arg, 0.0)
        v_m1 = "pass" if z > Z_SIGNIF else ("fail" if d_m1.high < 0 else "inconclusive")
    else:  # the stated claim is about the measured statistic: z < −5 or not
        v_arg = stats.verdict_below(d_arg, 0.0)
        v_m1 = "pass" if z < -Z_SIGNIF else "fail"
    ratios_err, ratios_loss, v_match = [], [], []
    for j, a in enumerate(checks):
        row = G + j
        pe = float(bernacchia_estimator_error(s, a, inverse=inverse))
        pl = float(bernacchia_test_loss(s, a, inverse=inverse))
        ie, il = stats.ratio_interval(err[row], pe), stats.ratio_interval(loss[row], pl)
        ratios_err.append(ie)
        ratios_loss.append(il)
        v_match += [stats.verdict_within(ie, 1 - MATCH, 1 + MATCH),
                    stats.verdict_within(il, 1 - MATCH, 1 + MATCH)]
    v_formula = stats.combine(v_match)
    verdict = stats.combine([v_arg, v_m1, v_formula])
    return {
        "verdict": verdict, "variant": variant, "setting": asdict(s), "trials": trials,
        "grid": grid.tolist(), "mc_loss": mean_loss.tolist(),
        "mc_loss_se": (loss[:G].std(axis=1, ddof=1) / np.sqrt(trials)).tolist(),
        "mc_err": err[:G].mean(axis=1).tolist(),
        "formula_loss": bernacchia_test_loss(s, grid, inverse=inverse).tolist(),
        "formula_err": bernacchia_estimator_error(s, grid, inverse=inverse).tolist(),
        "formula_argmin": a_star, "mc_argmin": float(grid[int(np.argmin(mean_loss))]),
        "argmin_diff": d_arg, "argmin_pair": [float(grid[i_neg]), float(grid[i_pos])],
        "verdict_argmin": v_arg, "diff_m1_0": d_m1, "z_m1_0": z, "verdict_m1_0": v_m1,
        "check_alphas": checks.tolist(), "ratio_err": ratios_err, "ratio_loss": ratios_loss,
        "verdict_formula": v_formula, "fine": fine, "fine_loss": pred_curve,
    }


def _figure(ctx: RunContext, r: dict[str, Any]) -> list[str]:
    def draw(ax: Any) -> None:
        ax.plot(r["fine"], r["fine_loss"], color=PALETTE[0], label="formula (package)")
        ax.errorbar(r["grid"], r["mc_loss"], yerr=1.96 * np.asarray(r["mc_loss_se"]), fmt="o",
                    ms=4, color=PALETTE[1], label=f"Monte Carlo, exact ω̂ ({r['trials']} trials)")
        a = r["formula_argmin"]
        ax.axvline(a, ls="--", color="gray", label=f"formula's minimum α_t = {a:.2f}")
        ax.axvline(0.0, ls=":", color="black", lw=0.8)
        ax.set_xlabel("meta-training learning rate α_t")
        ax.set_ylabel("test loss after one step α_r")
        ax.set_title("Bernacchia (2021), fig. 2 setting: optimal α_t < 0")
        # the two full-height α_t lines leave no corner wide enough: legend right of the axes
        # (below them it would cover the x label)
        legend_outside(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0))

    return save_figure(ctx.out_dir, "neighbours_bernacchia_alpha_t", draw, size=(8.5, 4.0))


def _clean(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if k not in ("fine", "fine_loss")}
    for k in ("argmin_diff", "diff_m1_0"):
        out[k] = str(r[k])
    out["ratio_err"] = [str(i) for i in r["ratio_err"]]
    out["ratio_loss"] = [str(i) for i in r["ratio_loss"]]
    return out


@claim("bernacchia-negative-rate", suite="neighbours",
       title="The optimal meta-training learning rate is negative (Bernacchia 2021)",
       statement="Mixed linear regression, exact empirical one-step MAML estimator: the test "
                 "loss as a function of the meta-training rate α_t is minimised at α_t < 0; "
                 "L(−1) < L(0) by > 5 SE; the formula for E‖ω̂ − w₀‖² and the test loss "
                 "matches Monte Carlo within 5%.",
       reference="Bernacchia, 'Meta-learning with negative learning rates', ICLR 2021, fig. 2 "
                 "setting; the prediction is the package's own derivation of the stated "
                 "setting (docs/theory/neighbours-bernacchia.md)")
def run(ctx: RunContext) -> ClaimResult:
    """Claim ``bernacchia-negative-rate``: Monte Carlo of the exact empirical MAML estimator
    over meta-training rates α_t; the paired test-loss difference between the best negative
    and the best non-negative α_t, and (7.4), (7.5) against the Monte Carlo.

    References: docs/theory/neighbours-bernacchia.md#checks."""
    trials = max(200, ctx.budget.mc_tasks // 20)
    r = evaluate(trials, ctx.seed)
    i_argmin = 2
    return ctx.result(
        verdict=r["verdict"], measured=r["argmin_diff"].estimate, theory=None,
        interval=r["argmin_diff"],
        effect="paired test-loss difference L(best α_t < 0) − L(best α_t ≥ 0) (< 0: the "
               "argmin is negative)",
        summary=(f"formula's argmin α_t = {r['formula_argmin']:.2f}, Monte Carlo argmin on the "
                 f"grid {r['mc_argmin']:.2f}; L(best neg.) − L(best ≥ 0) = {r['argmin_diff']}; "
                 f"L(−1) − L(0) = {r['diff_m1_0']} (z = {r['z_m1_0']:.1f}, need < −{Z_SIGNIF:g}); "
                 f"MC/formula for E‖ω̂ − w₀‖² at α_t = −1, 0, {r['formula_argmin']:.2f}: "
                 + ", ".join(f"{i.estimate:.3f}" for i in r["ratio_err"])
                 + "; test loss: " + ", ".join(f"{i.estimate:.3f}" for i in r["ratio_loss"])
                 + f" (tolerance ±{MATCH:.0%}); verdicts argmin {r['verdict_argmin']}, "
                 f"5 SE {r['verdict_m1_0']}, formula {r['verdict_formula']}"),
        config={"trials": trials, **r["setting"], "alpha_t_grid": r["grid"],
                "check_alphas": r["check_alphas"]},
        details=_clean(r) | {"formula_argmin_index": i_argmin},
        figures=_figure(ctx, r))
