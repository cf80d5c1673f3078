"""Neighbour claim ``raghu-feature-reuse`` — Raghu, Raghu, Bengio & Vinyals (ICLR 2020),
"Rapid learning or feature reuse?", linear analogue.

Tasks: the package's low-rank linear tasks (``BOTTOM_LAYERS``: d = 6, Λ of rank k = 2,
rotated Σ, n = 10, σ = 0.5, α = 0.1) with ``E w* = W̄ = 0`` — the task mean carries no
information, only the task spread range(Λ) does. Depth 3, ``DeepLinear(6, 12, 12, 1)``.
ANIL (``adapt="top"``), MAML (``adapt="all"``) and, as the wrong variant, multitask training
(no inner loop: α = 0, one shared head) are meta-trained alike from the same initialisation.

Checks (docs/theory/neighbours-raghu.md):
1. *losses*: per seed, the paired difference of ANIL's and MAML's post-adaptation losses on
   the same fresh tasks (autograd, ``numerics.evaluate_losses``) has a confidence interval
   (95%, Bonferroni over seeds) containing the difference of their exact expected losses at
   their weights (``theory.expected_deep_loss``; TermLimitError → not available);
2. *feature reuse*: per seed the largest principal angle between the top-k right singular
   subspaces of ANIL's and MAML's ``B_L = W_2W_1`` and of each with range(Λ) is below
   claim 5's tolerance (every seed: pass; none: fail; else inconclusive; t-interval over
   seeds reported);
3. reported: the relative change of the body (``W_1, W_2``) against the head's (``W_3``) in
   MAML's inner step, averaged over fresh tasks (95% t-intervals).

Wrong variant (``variant="multitask"``): the pooled objective's gradient does not depend on Λ
(derived on the theory page), W → W̄ = 0 and ``B_L`` keeps its initial, Λ-blind subspace —
the subspace check of 2. fails; the overlap ``‖UᵀV‖²_F/k`` is compared with its chance value
k/d for a subspace independent of range(Λ).

A run that diverged or did not converge (its exact expected loss still fell by more than
``CONV_TOL`` of its value over the second half of training) makes the claim inconclusive
with the reason — never a pass or a fail.

References: A. Raghu, M. Raghu, S. Bengio, O. Vinyals, "Rapid learning or feature reuse?
Towards understanding the effectiveness of MAML", ICLR 2020; the predictions are the
package's own derivation of the linear analogue (docs/theory/neighbours-raghu.md).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from scipy.linalg import subspace_angles
from torch.func import vmap

from maml_depth.common import stats
from maml_depth.common.plots import PALETTE, place_legend, save_figure
from maml_depth.common.settings import B_L, BOTTOM_LAYERS, LinearSetting
from maml_depth.numerics import (
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    OuterConfig,
    evaluate_losses,
    inner_adapt,
    meta_train,
)
from maml_depth.theory import TermLimitError, expected_deep_loss
from maml_depth.validation.claim_bottom_layers import TOL_DEG
from maml_depth.validation.claims import ClaimResult, RunContext, claim

SETTING: LinearSetting = BOTTOM_LAYERS
VARIANTS: dict[str, tuple[str, bool]] = {  # name → (adapted layers, inner loop on)
    "anil": ("top", True), "maml": ("all", True), "multitask": ("top", False)}
CONV_TOL = 0.02  # convergence guard: relative fall of the exact loss over the second half
LEVEL = stats.LEVEL
#: meta-steps per budget step: at the quick budget's 1000 steps some seeds still fall by more
#: than ``CONV_TOL`` over the second half (inconclusive); 2000 converge (measured)
STEPS_FACTOR = 2


def family(seed: int, setting: LinearSetting = SETTING) -> LinearRegressionTasks:
    """The setting's low-rank tasks with ``W̄ = 0`` (``E w* = 0``): Σ, Λ as in the setting."""
    base = setting.family(seed)
    return LinearRegressionTasks(base.Sigma, torch.zeros_like(base.W_bar), base.Lam,
                                 setting.sigma, setting.n)


def task_subspace(fam: LinearRegressionTasks) -> np.ndarray:
    """Orthonormal basis U of range(Λ) (eigenvalues above 10⁻¹⁰ λ_max)."""
    evals, evecs = torch.linalg.eigh(fam.Lam)
    return evecs[:, evals > 1e-10 * float(evals.max())].numpy()


def row_subspace(B: np.ndarray, k: int) -> np.ndarray:
    """The top-k right singular vectors of B (d × k, orthonormal)."""
    _, _, Vh = np.linalg.svd(B)
    return np.asarray(Vh[:k].T)


def largest_angle_deg(V1: np.ndarray, V2: np.ndarray) -> float:
    """Largest principal angle (degrees) between the column spaces of V1 and V2."""
    return float(np.degrees(subspace_angles(V1, V2)).max())


def inner_config(variant: str, alpha: float) -> InnerConfig:
    """ANIL: top layer; MAML: all layers; multitask: no inner loop (α = 0: the post-adaptation
    loss is the pooled loss of the shared map)."""
    adapt, on = VARIANTS[variant]
    return InnerConfig(alpha=alpha if on else 0.0, adapt=adapt)


def exact_loss(fam: LinearRegressionTasks, weights: list[np.ndarray], inner: InnerConfig,
               setting: LinearSetting = SETTING) -> float | None:
    """``theory.expected_deep_loss`` at the weights (None when the Wick sum is refused)."""
    try:
        return float(expected_deep_loss(
            weights, adapt=inner.adapt, steps=1, W_bar=fam.W_bar.numpy(),
            Sigma=fam.Sigma.numpy(), Lam=fam.Lam.numpy(), sigma=setting.sigma, n=setting.n,
            alpha=inner.alpha))
    except TermLimitError:
        return None


def _model(seed: int, setting: LinearSetting) -> DeepLinear:
    """The seed's Gaussian initialisation (the same for every variant)."""
    g = torch.Generator().manual_seed(40_000 + seed)
    return DeepLinear(setting.deep_dims, init="gaussian", generator=g)


def _initial_B_L(seed: int, setting: LinearSetting) -> np.ndarray:
    model = _model(seed, setting)
    return B_L(model, {n: p.detach() for n, p in model.named_parameters()}).numpy()


def train(fam: LinearRegressionTasks, variant: str, seed: int, meta_steps: int,
          setting: LinearSetting = SETTING) -> dict[str, Any]:
    """Meta-train ``variant`` from the seed's Gaussian initialisation (the same for every
    variant); converged when not diverged and the exact expected loss fell by at most
    ``CONV_TOL`` of its final value over the second half of training."""
    model = _model(seed, setting)
    inner = inner_config(variant, setting.alpha)
    half = max(1, meta_steps // 2)
    snap: dict[str, torch.Tensor] = {}

    def record(step: int, p: dict[str, torch.Tensor], _s: object) -> None:
        if step == half:
            snap.update({k: v.detach().clone() for k, v in p.items()})

    outer = OuterConfig(meta_steps=meta_steps, meta_batch=setting.meta_batch, lr=setting.lr,
                        schedule="cosine", log_every=1 if meta_steps < 40 else
                        next(e for e in (10, 5, 3, 2, 1) if half % e == 0))
    t0 = time.perf_counter()
    res = meta_train(model, fam, inner, outer, seed=41_000 + seed, callback=record)
    ws = [res.params[k].detach().numpy() for k in model.weight_names]
    final = exact_loss(fam, ws, inner, setting)
    late = (exact_loss(fam, [snap[k].numpy() for k in model.weight_names], inner, setting)
            if snap else None)
    if res.diverged:
        converged, reason = False, res.diverged
    elif final is None or late is None:
        converged, reason = False, "convergence not checked (exact loss not available)"
    else:
        fall = (late - final) / abs(final)
        converged = fall <= CONV_TOL
        reason = (f"exact loss fell by {fall:.2%} over the second half "
                  f"(guard {CONV_TOL:.0%}): {'converged' if converged else 'not converged'}")
    return {"variant": variant, "model": model, "params": res.params, "inner": inner,
            "exact_loss": final, "exact_loss_at_half": late, "converged": converged,
            "reason": reason, "diverged": res.diverged, "seconds": time.perf_counter() - t0,
            "B_L": B_L(model, res.params).numpy()}


def relative_changes(model: DeepLinear, params: dict[str, torch.Tensor],
                     fam: LinearRegressionTasks, alpha: float, tasks: int, seed: int
                     ) -> dict[str, Any]:
    """One MAML inner step (all layers, autograd via ``numerics.inner_adapt``) on ``tasks``
    fresh tasks: ``‖ΔW_body‖_F/‖W_body‖_F`` (body = layers 1…L−1 together) and
    ``‖ΔW_head‖_F/‖W_head‖_F``, with 95% t-intervals over tasks."""
    names = model.weight_names
    gen = torch.Generator().manual_seed(seed)
    batch = fam.sample(tasks, gen)

    def adapt(X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
        return inner_adapt(model, params, X, Y, alpha=alpha, adapt="all")

    new = vmap(adapt)(batch.X, batch.Y)
    body_norm = float(torch.stack([params[k].pow(2).sum() for k in names[:-1]]).sum().sqrt())
    head_norm = float(params[names[-1]].norm())
    body = torch.stack([(new[k] - params[k]).pow(2).sum(dim=(-2, -1)) for k in names[:-1]]
                       ).sum(0).sqrt() / body_norm
    head = (new[names[-1]] - params[names[-1]]).pow(2).sum(dim=(-2, -1)).sqrt() / head_norm
    iv_b = stats.mean_interval(body.detach().numpy())
    iv_h = stats.mean_interval(head.detach().numpy())
    return {"body": iv_b, "head": iv_h, "body_over_head": iv_b.estimate / iv_h.estimate,
            "tasks": tasks}


def loss_check(fam: LinearRegressionTasks, a: dict[str, Any], m: dict[str, Any],
               eval_tasks: int, seed: int, level: float) -> dict[str, Any]:
    """Paired ANIL − MAML post-adaptation losses (autograd) on the same fresh tasks vs the
    difference of their exact expected losses."""
    la = evaluate_losses(a["model"], a["params"], fam, a["inner"], num_tasks=eval_tasks,
                         seed=seed).numpy()
    lm = evaluate_losses(m["model"], m["params"], fam, m["inner"], num_tasks=eval_tasks,
                         seed=seed).numpy()
    iv = stats.mean_interval(la - lm, level)
    if a["exact_loss"] is None or m["exact_loss"] is None:
        return {"difference": iv, "exact_difference": None, "verdict": "not available",
                "anil_measured": float(la.mean()), "maml_measured": float(lm.mean())}
    ex = a["exact_loss"] - m["exact_loss"]
    return {"difference": iv, "exact_difference": ex,
            "verdict": "pass" if iv.low <= ex <= iv.high else "fail",
            "anil_measured": float(la.mean()), "maml_measured": float(lm.mean()),
            "anil_exact": a["exact_loss"], "maml_exact": m["exact_loss"]}


def _seed_run(seed: int, meta_steps: int, eval_tasks: int, level: float, family_seed: int,
              setting: LinearSetting) -> dict[str, Any]:
    fam = family(family_seed, setting)
    U = task_subspace(fam)
    k = U.shape[1]
    a = train(fam, "anil", seed, meta_steps, setting)
    m = train(fam, "maml", seed, meta_steps, setting)
    Va, Vm = row_subspace(a["B_L"], k), row_subspace(m["B_L"], k)
    init = _initial_B_L(seed, setting)
    angles = {"anil_vs_maml": largest_angle_deg(Va, Vm),
              "anil_vs_range_lam": largest_angle_deg(Va, U),
              "maml_vs_range_lam": largest_angle_deg(Vm, U),
              "init_vs_range_lam": largest_angle_deg(row_subspace(init, k), U)}
    loss = loss_check(fam, a, m, eval_tasks, 42_000 + seed, level)
    rel = relative_changes(m["model"], m["params"], fam, setting.alpha, 2000, 43_000 + seed)
    converged = a["converged"] and m["converged"]
    return {"seed": seed, "angles": angles, "loss": loss, "relative_change": rel,
            "converged": converged, "reasons": {"anil": a["reason"], "maml": m["reason"]},
            "seconds": {"anil": a["seconds"], "maml": m["seconds"]}}


def evaluate(seeds: int, meta_steps: int, eval_tasks: int, seed: int = 0,
             setting: LinearSetting = SETTING) -> dict[str, Any]:
    """The claim over ``seeds`` training seeds on the family of ``seed``."""
    level = 1.0 - (1.0 - LEVEL) / seeds  # Bonferroni over seeds
    runs = [_seed_run(seed + s, meta_steps, eval_tasks, level, seed, setting)
            for s in range(seeds)]
    v_loss = stats.combine([r["loss"]["verdict"] for r in runs])
    v_sub = stats.verdict_all_seeds([max(r["angles"]["anil_vs_maml"],
                                         r["angles"]["anil_vs_range_lam"],
                                         r["angles"]["maml_vs_range_lam"]) < TOL_DEG
                                     for r in runs])
    unconverged = [f"seed {r['seed']}: {r['reasons']}" for r in runs if not r["converged"]]
    verdict = "inconclusive" if unconverged else stats.combine([v_loss, v_sub])
    return {"verdict": verdict, "verdict_losses": v_loss, "verdict_subspace": v_sub,
            "unconverged": unconverged, "runs": runs, "level": level}


def evaluate_wrong(seeds: int, meta_steps: int, seed: int = 0,
                   setting: LinearSetting = SETTING) -> dict[str, Any]:
    """Multitask (no inner loop, one shared head) on the same tasks: the claim's subspace
    check against range(Λ), and the overlap ``‖UᵀV‖²_F/k`` vs its chance value k/d."""
    fam = family(seed, setting)
    U = task_subspace(fam)
    k, d = U.shape[1], U.shape[0]
    runs = []
    for s in range(seeds):
        r = train(fam, "multitask", seed + s, meta_steps, setting)
        V = row_subspace(r["B_L"], k)
        V0 = row_subspace(_initial_B_L(seed + s, setting), k)
        runs.append({"seed": seed + s, "largest_angle_deg": largest_angle_deg(V, U),
                     "overlap": float(np.linalg.norm(U.T @ V) ** 2 / k),
                     "overlap_at_init": float(np.linalg.norm(U.T @ V0) ** 2 / k),
                     "angle_to_init_deg": largest_angle_deg(V, V0),
                     "end_to_end_norm": float(np.linalg.norm(
                         r["params"][r["model"].weight_names[-1]].numpy() @ r["B_L"])),
                     "exact_loss": r["exact_loss"], "converged": r["converged"],
                     "reason": r["reason"]})
    v = stats.verdict_all_seeds([x["largest_angle_deg"] < TOL_DEG for x in runs])
    if not all(x["converged"] for x in runs):
        v = "inconclusive"
    return {"verdict": v, "runs": runs, "chance_overlap": k / d, "k": k, "d": d}


def _figure(ctx: RunContext, r: dict[str, Any], wrong: dict[str, Any]) -> list[str]:
    rows = [("ANIL vs MAML", [x["angles"]["anil_vs_maml"] for x in r["runs"]], PALETTE[0]),
            ("ANIL vs range(Λ)", [x["angles"]["anil_vs_range_lam"] for x in r["runs"]],
             PALETTE[1]),
            ("MAML vs range(Λ)", [x["angles"]["maml_vs_range_lam"] for x in r["runs"]],
             PALETTE[2]),
            ("initialisation vs range(Λ)",
             [x["angles"]["init_vs_range_lam"] for x in r["runs"]], "gray"),
            ("multitask vs range(Λ)", [x["largest_angle_deg"] for x in wrong["runs"]],
             PALETTE[3])]

    def draw(ax: Any) -> None:
        for i, (_, vals, col) in enumerate(rows):
            ax.scatter(vals, [i] * len(vals), color=col, s=30)
        ax.set_yticks(range(len(rows)), [x[0] for x in rows], fontsize=8)
        ax.axvline(TOL_DEG, ls="--", color="gray", label=f"tolerance {TOL_DEG}°")
        ax.set_xlabel("largest principal angle between row spaces of B_L (°), per seed")
        ax.set_ylabel("pair of subspaces")
        ax.set_title("Feature reuse: ANIL and MAML learn the same subspace")
        ax.figure.tight_layout()  # the final geometry, then a free place for the legend
        place_legend(ax, fontsize=8)  # off the per-seed angles and the tolerance line

    return save_figure(ctx.out_dir, "neighbours_raghu_angles", draw, size=(7.0, 3.5))


def _clean(x: Any) -> Any:
    if isinstance(x, stats.Interval):
        return str(x)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


@claim("raghu-feature-reuse", suite="neighbours",
       title="Rapid learning or feature reuse: ANIL ≈ MAML (Raghu et al. 2020, linear)",
       statement="On low-rank linear tasks with E w* = 0, depth 3: ANIL and MAML meta-trained "
                 "alike reach post-adaptation losses whose measured paired difference equals "
                 "the difference of their exact expected losses (CI); their bottom layers "
                 "span the same subspace, range(Λ) (principal angles); the body's relative "
                 "change in MAML's inner step is reported against the head's. Multitask "
                 "training with one shared head does not learn the subspace.",
       reference="Raghu, Raghu, Bengio, Vinyals, 'Rapid learning or feature reuse? Towards "
                 "understanding the effectiveness of MAML', ICLR 2020; the predictions are the "
                 "package's own derivation of the linear analogue "
                 "(docs/theory/neighbours-raghu.md)")
def run(ctx: RunContext) -> ClaimResult:
    """Run claim ``raghu-feature-reuse``: ANIL vs MAML losses against their exact expected
    losses, the shared subspace, the body/head relative change, and the multitask variant.

    References: docs/theory/neighbours-raghu.md.
    """
    b = ctx.budget
    seeds = max(2, b.seeds)
    steps = STEPS_FACTOR * b.meta_steps
    r = evaluate(seeds, steps, b.eval_tasks, ctx.seed)
    wrong = evaluate_wrong(seeds, steps, ctx.seed)
    diffs = [x["loss"] for x in r["runs"]]
    worst = max(diffs, key=lambda x: abs(x["difference"].estimate - (
        x["exact_difference"] if x["exact_difference"] is not None else 0.0)))
    ang = stats.mean_interval([x["angles"]["anil_vs_maml"] for x in r["runs"]])
    rel = r["runs"][0]["relative_change"]
    summary = (
        "ANIL − MAML post-adaptation loss per seed, measured (paired, "
        f"{100 * r['level']:.1f}% CI) vs exact: "
        + "; ".join(f"{x['difference']} vs {x['exact_difference']:.3g}"
                    if x["exact_difference"] is not None else f"{x['difference']} vs n/a"
                    for x in diffs)
        + f" → {r['verdict_losses']}; largest angle ANIL vs MAML {ang} (tol {TOL_DEG}°), "
        "vs range(Λ) ANIL/MAML per seed "
        + ", ".join(f"{x['angles']['anil_vs_range_lam']:.2f}°/"
                    f"{x['angles']['maml_vs_range_lam']:.2f}°" for x in r["runs"])
        + f" (initialisation {r['runs'][0]['angles']['init_vs_range_lam']:.1f}°) → "
        f"{r['verdict_subspace']}; MAML inner step (seed {r['runs'][0]['seed']}): body "
        f"‖ΔW‖/‖W‖ {rel['body']}, head {rel['head']} (body/head "
        f"{rel['body_over_head']:.3g}); wrong variant multitask: largest angle with range(Λ) "
        + ", ".join(f"{x['largest_angle_deg']:.1f}°" for x in wrong["runs"])
        + ", overlap ‖UᵀV‖²/k " + ", ".join(f"{x['overlap']:.2f}" for x in wrong["runs"])
        + " (at initialisation " + ", ".join(f"{x['overlap_at_init']:.2f}"
                                             for x in wrong["runs"])
        + "; largest angle to its initial subspace "
        + ", ".join(f"{x['angle_to_init_deg']:.1f}°" for x in wrong["runs"]) + ")"
        + f" (chance k/d = {wrong['chance_overlap']:.2f}) → {wrong['verdict']}"
        + (f"; not converged: {r['unconverged']}" if r["unconverged"] else ""))
    return ctx.result(
        verdict=r["verdict"], measured=worst["difference"].estimate,
        theory=worst["exact_difference"], interval=worst["difference"],
        effect="ANIL − MAML post-adaptation loss: paired measured difference vs exact "
               "difference (seed farthest from its prediction)",
        summary=summary,
        config={"setting": "BOTTOM_LAYERS with W̄ = 0", "d": SETTING.d,
                "k": int(task_subspace(family(ctx.seed)).shape[1]), "n": SETTING.n,
                "sigma": SETTING.sigma, "alpha": SETTING.alpha,
                "dims": list(SETTING.deep_dims), "seeds": seeds, "meta_steps": steps,
                "eval_tasks": b.eval_tasks, "tol_deg": TOL_DEG, "conv_tol": CONV_TOL},
        details={"claim": _clean({k: v for k, v in r.items()}),
                 "wrong_variant_multitask": _clean(wrong)},
        figures=_figure(ctx, r, wrong))
