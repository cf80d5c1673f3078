"""Figure 1 — the MAML objective of a scalar two-layer linear model ``w = w₂ w₁`` next to the
shallow one, with meta-training trajectories.

Tasks (docs/theory/notation.md#task-family with m = d = 1): ``x ~ N(0, s)``, ``w_t ~ N(w̄, τ²)``,
``y = w_t x + ε``,
``ε ~ N(0, σ²)``, n support samples, one inner step of size α. The deep model adapts its
bottom layer ``w₁`` (the top layer ``w₂`` only preconditions: ``w' = w − α w₂² g``).

- (a) shallow: the expected post-adaptation loss ``E ℒ(w)`` with the fixed step α (theory,
  :func:`maml_depth.theory.scalar_objective_function` at depth 1), its meta-training
  trajectories (numerics) drawn on it, and measured losses of the trained models on fresh
  tasks (95% CI over tasks). The deep model's optimum ``E ℒ(P*)`` for reference.
- (b) deep: the surface ``E ℒ(w₁, w₂)`` (theory, depth 2, S = {1}) in log colour scale, the
  set ``w₁w₂ = w̄``, the theoretical minimisers ``w₂² = P*/α``, ``w₁ = w̄/w₂`` (P* from
  :func:`maml_depth.theory.optimal_preconditioner`) and meta-training trajectories of a real
  :class:`~maml_depth.numerics.DeepLinear` network from several initialisations.

References: docs/theory/update-rules.md#one-step (scalar update), §3, §4; Arnold, Iqbal, Sha
(AISTATS 2021), §3.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from maml_depth.common import stats
from maml_depth.paper_figures import style
from maml_depth.paper_figures.budget import FigureBudget
from maml_depth.paper_figures.cache import FigureData
from maml_depth.paper_figures.runs import outer_config, progress_iter, train_and_measure

NUMBER = 1
NAME = "fig1_loss_surface"
TITLE = "Loss surface of the MAML objective: scalar shallow vs two-layer linear model"
VERSION = 1
FIGSIZE = (10.0, 4.2)

#: the scalar task family and inner loop
TASK: dict[str, float] = {"s": 1.0, "wbar": 1.0, "tau": 1.0, "sigma": 0.5, "n": 5,
                          "alpha": 0.25}
ADAPT = (1,)  # the bottom layer w₁ is adapted; w₂ preconditions it
LIMITS = (-2.5, 2.5)
#: initialisations of the deep trajectories (w₁, w₂) and of the shallow ones (w)
DEEP_STARTS = ((0.4, 0.3), (-2.0, 0.6), (2.1, -0.9), (-0.8, -2.2))
SHALLOW_STARTS = (-2.0, 2.3)
META_BATCH = 256
LR = 0.06


def theory_args() -> tuple[float, float, float, float, float, int]:
    """``(alpha, wbar, tau, sigma, s, n)`` in the order of the compiled objectives."""
    t = TASK
    return (t["alpha"], t["wbar"], t["tau"], t["sigma"], t["s"], int(t["n"]))


def family() -> Any:
    """The scalar task family of figure 1 (``m = d = 1``): ``x ~ N(0, s)``, ``w_t ~ N(w̄, τ²)``,
    noise σ, n shots."""
    from maml_depth.numerics import LinearRegressionTasks

    t = TASK
    one = torch.ones(1, 1, dtype=torch.float64)
    return LinearRegressionTasks(t["s"] * one, t["wbar"] * one, t["tau"] ** 2 * one,
                                 t["sigma"], int(t["n"]))


def theory_surface(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """``E ℒ(w₁, w₂)`` of the depth-2 scalar model adapting S = {1} (exact polynomial)."""
    from maml_depth.theory import scalar_objective_function

    f = scalar_objective_function(2, ADAPT, 1)
    return np.asarray(f(w1, w2, *theory_args()), dtype=np.float64) * np.ones_like(w1 * w2)


def theory_shallow(w: np.ndarray) -> np.ndarray:
    """``E ℒ(w)`` of the shallow scalar model with the fixed step α."""
    from maml_depth.theory import scalar_objective_function

    f = scalar_objective_function(1, "all", 1)
    return np.asarray(f(w, *theory_args()), dtype=np.float64) * np.ones_like(w)


def theory_optimum() -> tuple[float, np.ndarray]:
    """``(E ℒ(P*), [(w₁*, w₂*), (−w₁*, −w₂*)])`` — with one scalar input the deep model's best
    effective step ``α w₂²`` is P*, and ``w₁ w₂ = w̄``."""
    from maml_depth.theory import optimal_preconditioner

    t = TASK
    P, loss = optimal_preconditioner([[t["s"]]], [[t["tau"] ** 2]], t["sigma"], int(t["n"]))
    w2 = math.sqrt(float(np.asarray(P).item()) / t["alpha"])
    return float(loss), np.array([[t["wbar"] / w2, w2], [-t["wbar"] / w2, -w2]])


def compute(budget: FigureBudget, progress: bool = False) -> FigureData:
    """Compute figure 1's data at ``budget``: the exact two-layer objective on a grid of
    ``(w₁, w₂)``, the shallow objective, and meta-training trajectories measured on sampled
    tasks."""
    from maml_depth.numerics import DeepLinear, InnerConfig

    t0 = time.perf_counter()
    data = FigureData()
    g = np.linspace(*LIMITS, budget.grid)
    W1, W2 = np.meshgrid(g, g)  # rows: w₂, columns: w₁
    data.put("w1", g)
    data.put("w2", g)
    data.put("theory_surface", theory_surface(W1, W2))
    data.put("w", g)
    data.put("theory_shallow", theory_shallow(g))
    loss_star, opt = theory_optimum()
    data.put("theory_loss_star", loss_star)
    data.put("theory_optimum", opt)

    fam = family()
    alpha = TASK["alpha"]
    outer = outer_config(budget.scalar_steps, min(100, budget.scalar_steps),
                         meta_batch=META_BATCH, lr=LR)
    jobs = [("deep", i, s) for i, s in enumerate(DEEP_STARTS)] + \
           [("shallow", i, s) for i, s in enumerate(SHALLOW_STARTS)]
    finals: dict[str, list[list[float]]] = {"deep": [], "shallow": []}
    for kind, i, start in progress_iter(jobs, "fig 1 trajectories", progress):
        if kind == "deep":
            model = DeepLinear((1, 1, 1))
            w1_0, w2_0 = start  # type: ignore[misc]
            p0 = {"layers.0.weight": torch.tensor([[w1_0]], dtype=torch.float64),
                  "layers.1.weight": torch.tensor([[w2_0]], dtype=torch.float64)}
            inner = InnerConfig(alpha=alpha, adapt=ADAPT)
        else:
            model = DeepLinear((1, 1))
            p0 = {"layers.0.weight": torch.tensor([[start]], dtype=torch.float64)}
            inner = InnerConfig(alpha=alpha, adapt="all")
        run = train_and_measure(model, fam, inner, outer, seed=100 + i,
                                eval_tasks=budget.eval_tasks,
                                checkpoint_tasks=budget.checkpoint_tasks, keep_snapshots=True,
                                init_params=p0)
        path = np.array([[float(p[k].reshape(())) for k in sorted(p)] for p in run.snapshots])
        data.put(f"traj_{kind}_{i}", path)
        iv = stats.mean_interval(run.final)
        w_end = float(np.prod(path[-1]))
        finals[kind].append([w_end, iv.estimate, iv.low, iv.high])
    data.put("measured_deep", np.array(finals["deep"]))  # rows: (w, mean, low, high)
    data.put("measured_shallow", np.array(finals["shallow"]))
    data.meta = {"task": TASK, "adapt": list(ADAPT), "eval_tasks": budget.eval_tasks,
                 "steps": budget.scalar_steps, "meta_batch": META_BATCH, "lr": LR,
                 "ci": "95% t-interval over fresh tasks", "seconds": time.perf_counter() - t0}
    return data


def render(data: FigureData) -> Any:
    """Draw figure 1: (a) the shallow objective ``E ℒ(w)`` with fixed α and its trajectories,
    (b) the two-layer surface over ``(w₁, w₂)`` with the theory minima and trajectories."""
    from matplotlib.colors import LogNorm

    fig, ax, bx = style.two_panels(FIGSIZE, width_ratios=[1.0, 1.15])
    C = style.COLORS
    n_eval = data.meta.get("eval_tasks", "?")

    # (a) shallow
    w = data["w"]
    ax.plot(w, data["theory_shallow"], color=C["theory"], label="theory E ℒ(w), fixed α")
    style.theory_line(ax, float(data["theory_loss_star"]), "theory deep optimum E ℒ(P*)",
                      C["deep"], ls=":")
    f = data["theory_shallow"]
    for key in sorted(k for k in data.arrays if k.startswith("traj_shallow_")):
        path = data[key][:, 0]
        ax.plot(path, np.interp(path, w, f), ".", ms=5, color=C["shallow"], alpha=0.7,
                label="shallow trajectory" if key.endswith("_0") else None)
    ms, md = data["measured_shallow"], data["measured_deep"]
    style.errorbars(ax, ms[:, 0], ms[:, 1], ms[:, 2], ms[:, 3], color=C["shallow"],
                    label=f"shallow, measured (95% CI, n = {n_eval} tasks)", marker="s")
    style.errorbars(ax, md[:, 0], md[:, 1], md[:, 2], md[:, 3], color=C["deep"],
                    label=f"deep, measured (95% CI, n = {n_eval} tasks)", marker="D")
    ax.set_xlim(*LIMITS)
    starts = [float(data[k][0, 0]) for k in data.arrays if k.startswith("traj_shallow_")]
    top = max([float(np.interp(x, w, f)) for x in starts] + [float(np.nanmin(f)) * 2])
    ax.set_ylim(0, top * 1.08)
    style.label_panel(ax, "a", title="Shallow: w", xlabel="end-to-end weight w (dimensionless)",
                      ylabel="post-adaptation loss E ℒ (½·squared error)",
                      legend="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7.5)

    # (b) deep surface
    w1, w2, Z = data["w1"], data["w2"], data["theory_surface"]
    lo = float(np.nanmin(Z))
    levels = np.geomspace(lo, float(np.nanmax(Z)), 25)
    cs = bx.contourf(w1, w2, Z, levels=levels, norm=LogNorm(), cmap="viridis")
    bx.contour(w1, w2, Z, levels=levels[::3], colors="white", linewidths=0.4, alpha=0.6)
    cb = fig.colorbar(cs, ax=bx, shrink=0.95)
    cb.set_label("theory E ℒ(w₁, w₂) (½·squared error, log scale)")
    ticks = [v for v in (0.2, 0.3, 0.5, 1, 2, 5, 10, 20, 50, 100)
             if levels[0] <= v <= levels[-1]]
    cb.set_ticks(ticks, labels=[f"{v:g}" for v in ticks])
    cb.ax.minorticks_off()
    hyp = np.linspace(0.3, 2.5, 100)
    wbar = data.meta["task"]["wbar"]
    for sgn in (1, -1):
        bx.plot(sgn * hyp, sgn * wbar / hyp, ":", color="white", lw=1.2,
                label="w₁w₂ = w̄" if sgn == 1 else None)
    opt = data["theory_optimum"]
    bx.plot(opt[:, 0], opt[:, 1], "*", ms=14, color=C["kfo"], mec="black",
            label="theory minimisers (α w₂² = P*)", zorder=4)
    for key in sorted(k for k in data.arrays if k.startswith("traj_deep_")):
        p = data[key]  # columns: layers.0 (w₁), layers.1 (w₂)
        bx.plot(p[:, 0], p[:, 1], "-", color="white", lw=1.6, zorder=3,
                label="meta-training trajectories" if key.endswith("_0") else None)
        bx.plot(p[0, 0], p[0, 1], "o", color="white", mec="black", ms=5, zorder=3)
        bx.plot(p[-1, 0], p[-1, 1], "D", color=C["deep"], mec="white", ms=5, zorder=4)
    bx.set_xlim(*LIMITS)
    bx.set_ylim(*LIMITS)
    bx.grid(False)
    leg = style.label_panel(bx, "b", title="Deep: w = w₂w₁", xlabel="bottom layer w₁ (adapted)",
                            ylabel="top layer w₂ (frozen in the inner loop)",
                            legend="upper left", fontsize=7, frameon=True, framealpha=0.8)
    assert leg is not None
    leg.get_frame().set_linewidth(0)
    t = data.meta["task"]
    fig.suptitle(f"MAML objective, one inner step α = {t['alpha']}, n = {int(t['n'])} shots, "
                 f"s = {t['s']}, w̄ = {t['wbar']}, τ = {t['tau']}, σ = {t['sigma']}",
                 fontsize=10)
    return style.finish(fig)


def caption(data: FigureData) -> str:
    """The caption of figure 1, with the theory values (best shallow loss at ``w = w̄``, the
    two-layer minima where ``α w₂² = P*``) and the measured ones filled in.

    References: docs/theory/update-rules.md#scalar."""
    t = data.meta["task"]
    ms, md = data["measured_shallow"], data["measured_deep"]
    sh = float(np.interp(t["wbar"], data["w"], data["theory_shallow"]))
    return (
        f"(a) Expected post-adaptation loss of the shallow scalar model with fixed step "
        f"α = {t['alpha']} (theory, exact polynomial) and its meta-training trajectories; "
        f"best shallow value at w = w̄: {sh:.4f}. (b) The same objective for w = w₂w₁ adapting "
        f"w₁ only: the top layer scales the bottom layer's step to α w₂², so the theory "
        f"minima (stars) sit where α w₂² = P*, at loss {float(data['theory_loss_star']):.4f} "
        f"— below every point of the shallow curve. White: trajectories of real "
        f"meta-training (Adam, {data.meta['steps']} steps, {data.meta['meta_batch']} tasks "
        f"per step) from {len(md)} initialisations. Measured after training on "
        f"{data.meta['eval_tasks']} fresh tasks (95% CI): shallow "
        + ", ".join(f"{m:.4f} [{lo:.4f}, {hi:.4f}]" for _, m, lo, hi in ms)
        + "; deep " + ", ".join(f"{m:.4f} [{lo:.4f}, {hi:.4f}]" for _, m, lo, hi in md) + "."
    )
