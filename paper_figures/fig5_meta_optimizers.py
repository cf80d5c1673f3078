"""Figure 5 — meta-optimizers assist the shallow model: MAML, Meta-SGD, Meta-Curvature and KFO
on one linear layer vs MAML on a deep linear net, each against its class's theoretical
optimum.

On the linear regression of docs/theory/expected-loss.md#optimal-preconditioner (m = 1, one inner
step) every method's inner update
is ``W' = W − G P`` with P from a class: MAML ``P = αI`` (fixed); Meta-SGD a learned
diagonal; Meta-Curvature ``α m_o M_i`` and KFO ``α l² RᵀR`` (any matrix / any PSD matrix);
the deep net ``α B_LᵀB_L`` (any PSD matrix). The best expected loss of each class is a
closed form (:func:`maml_depth.theory.optimal_preconditioner`): ``E ℒ(αI)`` for MAML,
``E ℒ(P*_diag)`` for Meta-SGD, ``E ℒ(P*)`` for the other three.

- (a) Post-adaptation loss on fresh tasks along meta-training, mean and 95% band over seeds.
- (b) The measured loss of the final networks (95% t-interval over seeds, each seed measured
  on fresh tasks) next to the optimum of its class (theory, black bar).

References: docs/theory/expected-loss.md#optimal-preconditioner,
docs/theory/paper-claims.md#claim-6; Li et al. (2017); Park & Oliva (2019); Arnold, Iqbal, Sha
(AISTATS 2021), §4.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maml_depth.numerics import PRECONDITIONERS
from maml_depth.paper_figures import style
from maml_depth.paper_figures.budget import FigureBudget
from maml_depth.paper_figures.cache import FigureData
from maml_depth.paper_figures.frame import LinearFrame
from maml_depth.paper_figures.runs import LINEAR, LR_SCALE, interval_arrays, linear_runs

NUMBER = 5
NAME = "fig5_meta_optimizers"
TITLE = "Meta-optimizers vs deep MAML"
VERSION = 1
FIGSIZE = (10.0, 4.2)



def _class_of(optimizer: str) -> str:
    """The preconditioner class the optimizer object declares
    (docs/theory/expected-loss.md#optimal-preconditioner)."""
    cls = PRECONDITIONERS[optimizer].theory_class
    assert cls is not None, optimizer
    return cls


#: (run kind, label, preconditioner class of its theoretical optimum); the meta-optimizers'
#: classes are those their objects declare
METHODS: tuple[tuple[str, str, str], ...] = (
    ("shallow", "MAML", "fixed"),
    ("meta-sgd", "Meta-SGD", _class_of("meta-sgd")),
    ("meta-curvature", "Meta-Curvature", _class_of("meta-curvature")),
    ("kfo", "KFO", _class_of("kfo")),
    ("deep-top", "Deep MAML", "full"),
)
COLOR_OF = {"shallow": "shallow", "meta-sgd": "meta-sgd", "meta-curvature": "meta-curvature",
            "kfo": "kfo", "deep-top": "deep"}


def theory(Sigma: np.ndarray, Lam: np.ndarray, sigma: float, n: int, alpha: float
           ) -> dict[str, float]:
    """Best expected loss of each preconditioner class
    (docs/theory/expected-loss.md#optimal-preconditioner)."""
    from maml_depth.theory import fixed_step_loss, optimal_preconditioner

    return {
        "fixed": float(fixed_step_loss(Sigma, Lam, sigma, n, alpha)),
        "scalar": optimal_preconditioner(Sigma, Lam, sigma, n, "scalar").loss,
        "diagonal": optimal_preconditioner(Sigma, Lam, sigma, n, "diagonal").loss,
        "full": optimal_preconditioner(Sigma, Lam, sigma, n, "full").loss,
    }


def compute(budget: FigureBudget, progress: bool = False) -> FigureData:
    """Compute figure 5's data at ``budget``: the optima of the scalar, diagonal and full
    classes (``E ℒ(α*I)``, ``E ℒ(P_diag*)``, ``E ℒ(P*)``) and the meta-training curves of
    MAML, Meta-SGD, Meta-Curvature and KFO on one layer and of MAML on a deep net.

    References: docs/theory/expected-loss.md#optimal-preconditioner."""
    frame = LinearFrame(LINEAR)
    s = frame.setting
    th = theory(frame.Sigma, frame.Lam, s.sigma, s.n, s.alpha)
    for k, v in th.items():
        frame.data.put(f"theory_{k}", v)
    kinds = [k for k, _, _ in METHODS]
    runs = linear_runs(kinds, s, budget, desc="fig 5 runs", progress=progress)
    for kind in kinds:
        frame.put_runs(kind, runs[kind])
    return frame.finish(
        budget, eval_tasks=budget.eval_tasks, checkpoint_tasks=budget.checkpoint_tasks,
        outer_lr={k: s.lr * LR_SCALE.get(k, 1.0) for k in kinds},
        diverged=[f"{k}: {r.diverged}" for k in kinds for r in runs[k] if r.diverged])


def render(data: FigureData) -> Any:
    """Draw figure 5: the methods' curves with 95% bands and their theory optima."""
    fig, ax, bx = style.two_panels(FIGSIZE, width_ratios=[1.15, 1.0])
    C = style.COLORS
    m = data.meta
    for kind, label, _ in METHODS:
        if f"curves_{kind}" not in data:
            continue
        mean, low, high = interval_arrays(data[f"curves_{kind}"])
        style.band(ax, data[f"steps_{kind}"], mean, low, high, color=C[COLOR_OF[kind]],
                   label=label)
    for key, label, color, ls in (
            ("fixed", "E ℒ(αI)", C["shallow"], "--"),
            ("diagonal", "E ℒ(P*_diag)", C["meta-sgd"], "--"),
            ("full", "E ℒ(P*)", C["theory"], "--")):
        style.theory_line(ax, float(data[f"theory_{key}"]), f"theory {label}", color, ls=ls)
    style.plain_log_axis(ax)
    style.label_panel(ax, "a", title="Meta-training (mean, 95% band over seeds)",
                      xlabel=style.STEP_LABEL, ylabel=style.LOSS_LABEL, legend="upper right",
                      ncol=2, fontsize=7.5)

    xs = np.arange(len(METHODS))
    for x, (kind, _label, cls) in zip(xs.tolist(), METHODS, strict=True):
        th = float(data[f"theory_{cls}"])
        bx.hlines(th, x - 0.32, x + 0.32, color=C["theory"], lw=2.2, zorder=2,
                  label="theory: optimum of the class" if x == 0 else "")
        if f"final_{kind}" not in data:
            bx.text(x, th, "not\navailable", ha="center", va="bottom", fontsize=7.5,
                    color=C["reference"])
            continue
        mean, low, high = interval_arrays(data[f"final_{kind}"])
        style.errorbars(bx, [x], [mean], [low], [high], color=C[COLOR_OF[kind]],
                        label=(f"measured (95% CI, n = {m['seeds']} seeds × "
                               f"{m['eval_tasks']} tasks)") if x == 0 else None)
    bx.axhline(float(data["theory_scalar"]), color=C["reference"], ls=":", lw=1.2,
               label="theory E ℒ(α*I): best fixed step α*")
    bx.set_xticks(xs, [f"{lbl}\n({'shallow' if k != 'deep-top' else 'deep'})"
                       for k, lbl, _ in METHODS], fontsize=8)
    bx.set_xlim(-0.6, len(METHODS) - 0.4)
    bx.grid(axis="x", visible=False)
    style.label_panel(bx, "b", title="After meta-training vs class optimum",
                      ylabel=style.LOSS_LABEL, legend="upper right", fontsize=7.5)
    return style.finish(fig)


def caption(data: FigureData) -> str:
    """The caption of figure 5: each method's final loss with its interval against its class's
    theoretical optimum."""
    m = data.meta
    parts = []
    for kind, label, cls in METHODS:
        th = float(data[f"theory_{cls}"])
        if f"final_{kind}" not in data:
            parts.append(f"{label}: not available (theory {th:.4f})")
            continue
        mean, low, high = interval_arrays(data[f"final_{kind}"])
        parts.append(f"{label} {float(mean):.4f} [{float(low):.4f}, {float(high):.4f}] "
                     f"(theory {th:.4f})")
    text = (
        f"Linear regression, d = {m['setting']['d']}, n = {m['setting']['n']} shots, "
        f"α = {m['setting']['alpha']}, {m['meta_steps']} meta-training steps; measured loss "
        f"after meta-training, mean and 95% CI over n = {m['seeds']} seeds (each on "
        f"{m['eval_tasks']} fresh tasks), with the optimum of each preconditioner class: "
        + "; ".join(parts) + ". Theory orders the classes E ℒ(P*) ≤ E ℒ(P*_diag) ≤ "
        "E ℒ(α*I) ≤ E ℒ(αI): Meta-Curvature and KFO can reach the full optimum P* on the "
        "shallow model, Meta-SGD only the best diagonal, and a deep net reaches P* with "
        "plain MAML. Outer learning rate (Adam, cosine): "
        + ", ".join(f"{k} {v:g}" for k, v in m.get("outer_lr", {}).items()) + "."
    )
    return text
