"""Figure 3 — post-adaptation loss against depth and against the number of shots.

Setting: the linear regression of docs/theory/expected-loss.md#optimal-preconditioner (d = 4, σ =
0.5, α = 0.1, anisotropic rotated
Σ and Λ, hidden widths 2d), one inner step.

- (a) Depth L. Top layer adapted (S = {L}): theory ``E ℒ(αI)`` at L = 1 (the shallow model)
  and ``E ℒ(P*)`` from L = 2 on (the frozen layers below can form any PSD preconditioner).
  All layers adapted: the reference is the expected loss of the same meta-trained networks,
  exact where the exact-expectation engine reaches (:func:`reference_all_adapted`:
  :func:`maml_depth.theory.expected_deep_loss`, one step with up to four adapted layers,
  so L ≤ 4 — L = 4 derives for minutes once, then comes from the disk cache;
  docs/theory/exact-expectation.md#reach) and beyond it (L ≥ 5) a Monte Carlo estimate
  (:func:`maml_depth.numerics.monte_carlo_deep_loss`, exact population query loss),
  labelled as such (``ref_depth_all_exact``, ``meta["ref_depth_all"]``). Points: networks
  meta-trained on sampled tasks and adapted with autograd on fresh tasks, mean and 95%
  t-interval over seeds.
- (b) Shots n (depth 1 vs depth 3, top adapted): theory curves ``E ℒ(αI)``, the tuned
  shallow step ``E ℒ(α_s* I)`` and ``E ℒ(P*)`` as functions of n, with measured points.

References: docs/theory/update-rules.md#one-step, docs/theory/expected-loss.md#closed-form,
docs/theory/expected-loss.md#optimal-preconditioner; Arnold, Iqbal, Sha (AISTATS 2021), §3.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maml_depth.paper_figures import style
from maml_depth.paper_figures.budget import FigureBudget
from maml_depth.paper_figures.cache import FigureData
from maml_depth.paper_figures.frame import LinearFrame
from maml_depth.paper_figures.runs import (
    LINEAR,
    final_means,
    interval_arrays,
    linear_run,
    progress_iter,
    with_depth,
    with_shots,
)

NUMBER = 3
NAME = "fig3_depth_shots"
TITLE = "Post-adaptation loss against depth and shots"
VERSION = 2
FIGSIZE = (10.0, 4.0)
#: depth of the deep model in panel (b)
DEEP_DEPTH = LINEAR.depth


def theory_depth(depths: np.ndarray, Sigma: np.ndarray, Lam: np.ndarray, sigma: float,
                 n: int, alpha: float) -> np.ndarray:
    """Top layer adapted: ``E ℒ(αI)`` at depth 1, ``E ℒ(P*)`` from depth 2 on."""
    from maml_depth.theory import fixed_step_loss, optimal_preconditioner

    star = optimal_preconditioner(Sigma, Lam, sigma, n, "full").loss
    shallow = fixed_step_loss(Sigma, Lam, sigma, n, alpha)
    return np.array([shallow if int(L) == 1 else star for L in depths], dtype=np.float64)


def theory_shots(ns: np.ndarray, Sigma: np.ndarray, Lam: np.ndarray, sigma: float,
                 alpha: float) -> dict[str, np.ndarray]:
    """``E ℒ(αI)``, ``E ℒ(α_s* I)`` and ``E ℒ(P*)`` at each n."""
    from maml_depth.theory import fixed_step_loss, optimal_preconditioner

    return {
        "shallow": np.array([fixed_step_loss(Sigma, Lam, sigma, int(n), alpha) for n in ns]),
        "tuned": np.array([optimal_preconditioner(Sigma, Lam, sigma, int(n), "scalar").loss
                           for n in ns]),
        "deep": np.array([optimal_preconditioner(Sigma, Lam, sigma, int(n), "full").loss
                          for n in ns]),
    }


def reference_all_adapted(fam: Any, weights: list[Any], *, sigma: float, n: int,
                          alpha: float, mc_tasks: int, seed: int) -> tuple[float, float, bool]:
    """``(value, se, exact)``: the expected post-adaptation loss of the network ``weights``
    adapting every layer for one step — exact (:func:`maml_depth.theory.expected_deep_loss`,
    ``se = 0``) inside the engine's reach, else (:class:`maml_depth.theory.TermLimitError`)
    a Monte Carlo estimate on ``mc_tasks`` tasks with its standard error.

    References: docs/theory/exact-expectation.md; docs/theory/update-rules.md#one-step."""
    import torch

    from maml_depth.numerics import monte_carlo_deep_loss
    from maml_depth.theory import TermLimitError, expected_deep_loss

    ws = [w.detach().to(torch.float64).numpy() for w in weights]
    try:
        value = expected_deep_loss(ws, adapt="all", steps=1, W_bar=fam.W_bar.numpy(),
                                   Sigma=fam.Sigma.numpy(), Lam=fam.Lam.numpy(), sigma=sigma,
                                   n=n, alpha=alpha)
        return float(value), 0.0, True
    except TermLimitError:
        est = monte_carlo_deep_loss(fam, weights, alpha=alpha, adapt="all",
                                    num_tasks=mc_tasks, seed=seed)
        return float(est.mean), float(est.stderr), False


def compute(budget: FigureBudget, progress: bool = False) -> FigureData:
    """Compute figure 3's data at ``budget``: the theory ``E ℒ`` of each depth (top layer
    adapted), the exact (or, beyond the engine's reach, Monte Carlo) reference of each net
    adapting all layers, and the losses of meta-trained nets by depth and by number of
    shots, over seeds.

    References: docs/theory/expected-loss.md#optimal-preconditioner;
    docs/theory/exact-expectation.md."""
    frame = LinearFrame(LINEAR)
    s, fam, data = frame.setting, frame.family, frame.data
    S, La = frame.Sigma, frame.Lam
    depths = np.array(budget.depths)
    data.put("depths", depths)
    data.put("theory_depth_top", theory_depth(depths, S, La, s.sigma, s.n, s.alpha))
    seeds = range(budget.seeds)
    top = np.full((budget.seeds, len(depths)), np.nan)
    allv = np.full_like(top, np.nan)
    ref = np.full_like(top, np.nan)
    ref_se = np.full_like(top, np.nan)
    exact = np.zeros(len(depths))
    diverged: list[str] = []
    jobs = [(j, L, seed) for j, L in enumerate(depths) for seed in seeds]
    for j, L, seed in progress_iter(jobs, "fig 3 depth", progress):
        L = int(L)
        if L == 1:
            r_top = r_all = linear_run("shallow", s, budget, seed)
        else:
            r_top = linear_run("deep-top", with_depth(s, L), budget, seed)
            r_all = linear_run("deep-all", with_depth(s, L), budget, seed)
        for r in (r_top, r_all):
            if r.diverged:
                diverged.append(f"depth {L}, seed {seed}: {r.diverged}")
        top[seed, j] = float(np.mean(r_top.final))
        allv[seed, j] = float(np.mean(r_all.final))
        weights = [r_all.params[f"layers.{i}.weight"] for i in range(L)]
        ref[seed, j], ref_se[seed, j], ok = reference_all_adapted(
            fam, weights, sigma=s.sigma, n=s.n, alpha=s.alpha, mc_tasks=budget.mc_tasks,
            seed=555_000 + seed)
        exact[j] = float(ok)
    data.put("measured_depth_top", top)
    data.put("measured_depth_all", allv)
    # the "all adapted" reference of the same networks: exact where ref_depth_all_exact is 1,
    # a Monte Carlo estimate (standard error ref_depth_all_se) where it is 0
    data.put("ref_depth_all", ref)
    data.put("ref_depth_all_se", ref_se)
    data.put("ref_depth_all_exact", exact)
    exact_L = [int(L) for L, e in zip(depths, exact, strict=True) if e]
    mc_L = [int(L) for L, e in zip(depths, exact, strict=True) if not e]
    ref_label = "; ".join(
        ([f"exact expected loss (expected_deep_loss) at L = {exact_L}"] if exact_L else [])
        + ([f"Monte Carlo estimate ({budget.mc_tasks} tasks) at L = {mc_L}"] if mc_L else []))

    shots = np.array(budget.shots)
    data.put("shots", shots)
    n_grid = np.unique(np.round(np.geomspace(1, max(shots) * 1.6, 60)).astype(int))
    data.put("n_grid", n_grid)
    for key, v in theory_shots(n_grid, S, La, s.sigma, s.alpha).items():
        data.put(f"theory_n_{key}", v)
    sh = np.full((budget.seeds, len(shots)), np.nan)
    dp = np.full_like(sh, np.nan)
    jobs2 = [(j, n, seed) for j, n in enumerate(shots) for seed in seeds]
    for j, n, seed in progress_iter(jobs2, "fig 3 shots", progress):
        sn = with_shots(s, int(n))
        sh[seed, j] = final_means([linear_run("shallow", sn, budget, seed)])[0]
        r = linear_run("deep-top", with_depth(sn, DEEP_DEPTH), budget, seed)
        dp[seed, j] = float(np.mean(r.final))
        if r.diverged:
            diverged.append(f"n = {n}, seed {seed}: {r.diverged}")
    data.put("measured_n_shallow", sh)
    data.put("measured_n_deep", dp)
    return frame.finish(budget, fields=("d", "n", "sigma", "alpha", "hidden"),
                        setting_extra={"deep_depth": DEEP_DEPTH},
                        eval_tasks=budget.eval_tasks, mc_tasks=budget.mc_tasks,
                        diverged=diverged, ref_depth_all=ref_label)


def render(data: FigureData) -> Any:
    """Draw figure 3: (a) loss against depth (top layer and all layers adapted) with the theory
    of each depth, (b) loss against the number of shots."""
    fig, ax, bx = style.two_panels(FIGSIZE)
    C = style.COLORS
    m = data.meta
    n_seeds, n_eval = m["seeds"], m["eval_tasks"]
    ci = f"95% CI, n = {n_seeds} seeds × {n_eval} tasks"

    depths = data["depths"].astype(float)
    th = data["theory_depth_top"]
    ax.hlines(th, depths - 0.3, depths + 0.3, color=C["theory"], lw=2.2, zorder=2,
              label="theory, top adapted: E ℒ(αI) at L = 1, E ℒ(P*) for L ≥ 2")
    mean, low, high = interval_arrays(data["ref_depth_all"])
    exact = np.asarray(data["ref_depth_all_exact"], dtype=bool).reshape(-1)
    where = ", ".join(f"L = {int(L)}" for L, e in zip(depths, exact, strict=False) if not e)
    ref_label = ("all adapted: exact E ℒ at the weights"
                 + (f" ({where}: Monte Carlo)" if where else ""))
    ax.plot(depths, mean, ":", color=C["deep-all"], lw=1.6, marker="x", ms=6, label=ref_label)
    mean, low, high = interval_arrays(data["measured_depth_top"])
    style.errorbars(ax, depths, mean, low, high, color=C["deep"], offset=-0.06,
                    label=f"measured, top layer adapted ({ci})")
    mean, low, high = interval_arrays(data["measured_depth_all"])
    style.errorbars(ax, depths, mean, low, high, color=C["deep-all"], marker="s",
                    offset=0.06, label="measured, all layers adapted")
    ax.set_xticks(depths)
    ax.set_xlim(depths.min() - 0.5, depths.max() + 0.5)
    style.label_panel(ax, "a", title=f"Depth (n = {m['setting']['n']} shots)",
                      xlabel="depth L (number of linear layers)", ylabel=style.LOSS_LABEL,
                      legend="center right")

    ng = data["n_grid"]
    bx.plot(ng, data["theory_n_shallow"], "-", color=C["shallow"], label="theory E ℒ(αI)")
    bx.plot(ng, data["theory_n_tuned"], ":", color=C["shallow"],
            label="theory E ℒ(α*I), best fixed step α*")
    bx.plot(ng, data["theory_n_deep"], "-", color=C["deep"], label="theory E ℒ(P*)")
    shots = data["shots"].astype(float)
    mean, low, high = interval_arrays(data["measured_n_shallow"])
    style.errorbars(bx, shots, mean, low, high, color=C["shallow"], marker="s",
                    offset=-0.04, log_offset=True,
                    label=f"measured, shallow ({ci})")
    mean, low, high = interval_arrays(data["measured_n_deep"])
    style.errorbars(bx, shots, mean, low, high, color=C["deep"], offset=0.04,
                    log_offset=True,
                    label=f"measured, deep L = {m['setting']['deep_depth']}, top adapted")
    style.plain_log_axis(bx, "x")
    style.plain_log_axis(bx, "y")
    style.label_panel(bx, "b", title=f"Shots (top layer adapted, α = {m['setting']['alpha']})",
                      xlabel="shots n (support samples per task)", ylabel=style.LOSS_LABEL,
                      legend="lower left")
    return style.finish(fig)


def caption(data: FigureData) -> str:
    """The caption of figure 3, with the measured loss and the theory at each depth."""
    m = data.meta
    depths = data["depths"]
    top = interval_arrays(data["measured_depth_top"])[0]
    allv = interval_arrays(data["measured_depth_all"])[0]
    th = data["theory_depth_top"]
    rows = "; ".join(f"L = {int(L)}: top {t:.3f} (theory {e:.3f}), all {a:.3f}"
                     for L, t, e, a in zip(depths, top, th, allv, strict=True))
    text = (
        f"(a) Depth, n = {m['setting']['n']} shots, one inner step α = "
        f"{m['setting']['alpha']}, {m['meta_steps']} meta-training steps per network; "
        f"measured means over {m['seeds']} seeds ({m['eval_tasks']} fresh tasks each): {rows}. "
        "Theory, top layer adapted: E ℒ(αI) at L = 1, E ℒ(P*) as soon as one layer lies "
        "below the adapted one, whatever the depth. Adapting all layers: the reference is "
        "the expected loss of the same networks — "
        f"{m.get('ref_depth_all', 'a Monte Carlo estimate')}. "
        "(b) Shots n: theory curves for the fixed step, the best fixed step α* and "
        "P*, with measured shallow and deep (L = "
        f"{m['setting']['deep_depth']}) networks meta-trained at each n; the gap between "
        "E ℒ(α*I) and E ℒ(P*) is what no step-size tuning of the shallow model recovers."
    )
    if m.get("diverged"):
        text += f" Diverged runs (kept their last finite state): {len(m['diverged'])}."
    return text
