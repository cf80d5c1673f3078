"""Figure 4 — spectrum of the preconditioner extracted from a meta-trained deep net over
training, against P* and Σ⁻¹.

A deep linear net adapting its top layer takes the step ``W' = W − G P`` with
``P = α B_LᵀB_L`` made of its frozen lower layers (docs/theory/update-rules.md#one-step,
docs/theory/expected-loss.md#optimal-preconditioner). Along meta-training
(the deep runs of figure 2: depth 3, hidden 2d, sampled tasks, Adam) we read P out of the
network's weights at every checkpoint.

- (a) The eigenvalues of P (seed 0 bold, other seeds faint) converge to those of
  ``P* = [(1 + 1/n)ΛΣ + (c/n)I]⁻¹Λ`` (theory, dashed) — not to those of Σ⁻¹ (dotted, the
  Newton step P* tends to as n → ∞). A run that has not converged is marked, never drawn
  as if it had: its curves end in a ``×`` (and it is named in the caption) when meta_train's
  convergence report says so *or* an eigenvalue is still moving at the end
  (:func:`still_moving`: over the last fifth of the checkpoints it changed monotonically by
  more than :data:`MOVING_RTOL` of its final value).
- (b) Relative error ``‖P − P*‖_F/‖P*‖_F`` over training (mean and 95% band over seeds), with
  the distance of Σ⁻¹ and of MAML's fixed step αI from P* as references.

References: docs/theory/update-rules.md#one-step,
docs/theory/expected-loss.md#optimal-preconditioner, docs/theory/paper-claims.md#claim-4; Arnold,
Iqbal, Sha (AISTATS 2021), §3.
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
    bottom_layer_series,
    log_interval_arrays,
)

NUMBER = 4
NAME = "fig4_preconditioner_spectrum"
TITLE = "Spectrum of the extracted preconditioner over training"
VERSION = 2
FIGSIZE = (10.0, 4.0)
#: an eigenvalue that changed monotonically by more than this fraction of its final value over
#: the last fifth of the checkpoints is still moving (its run has not converged)
MOVING_RTOL = 0.02


def theory(Sigma: np.ndarray, Lam: np.ndarray, sigma: float, n: int) -> dict[str, np.ndarray]:
    """``P*`` and ``Σ⁻¹`` and their eigenvalues (ascending)."""
    from maml_depth.theory import optimal_preconditioner

    P_star = np.asarray(optimal_preconditioner(Sigma, Lam, sigma, n, "full").P)
    S_inv = np.linalg.inv(Sigma)
    return {"P_star": P_star, "Sigma_inv": S_inv,
            "eig_P_star": np.linalg.eigvalsh(P_star), "eig_Sigma_inv": np.linalg.eigvalsh(S_inv)}


def still_moving(steps: np.ndarray, eig: np.ndarray, rtol: float = MOVING_RTOL
                 ) -> np.ndarray:
    """Seeds × eigenvalues: True where eigenvalue ``k`` of a seed's ``eig`` (seeds ×
    checkpoints × d) is still moving at the end of training — over the checkpoints of the
    last fifth of the steps (at least 3) no change has the opposite sign and the total change
    exceeds ``rtol·|final value|`` (a drift, not sampling noise, which changes sign)."""
    steps = np.asarray(steps, dtype=float)
    E = np.asarray(eig, dtype=float)
    out = np.zeros((E.shape[0], E.shape[-1]), dtype=bool)
    for i in range(E.shape[0]):
        ok = np.all(np.isfinite(E[i]), axis=-1)
        st, ev = steps[ok], E[i][ok]
        if len(st) < 3:
            continue
        tail = st >= st[-1] - 0.2 * (st[-1] - st[0])
        tail[-3:] = True
        seg = ev[tail]
        diff = np.diff(seg, axis=0)
        monotone = np.all(diff >= 0, axis=0) | np.all(diff <= 0, axis=0)
        big = np.abs(seg[-1] - seg[0]) > rtol * np.abs(seg[-1])
        out[i] = monotone & big
    return out


def compute(budget: FigureBudget, progress: bool = False) -> FigureData:
    """Compute figure 4's data at ``budget``: ``P*`` and ``Σ⁻¹`` and, over meta-training, the
    eigenvalues of the preconditioner ``P = αB_LᵀB_L`` of a deep net adapting its top layer
    and its relative error to ``P*``.

    References: docs/theory/expected-loss.md#optimal-preconditioner."""
    frame = LinearFrame(LINEAR)
    s, data = frame.setting, frame.data
    th = theory(frame.Sigma, frame.Lam, s.sigma, s.n)
    for k, v in th.items():
        data.put(f"theory_{k}", v)
    P_star = th["P_star"]

    def spectrum(B: np.ndarray) -> tuple[np.ndarray, float]:
        P = s.alpha * B.T @ B
        return np.linalg.eigvalsh(P), float(np.linalg.norm(P - P_star) / np.linalg.norm(P_star))

    runs, steps, (eigs, errs) = bottom_layer_series(s, budget, spectrum, desc="fig 4 runs",
                                                 progress=progress)
    data.put("steps", steps)
    data.put("eig_P", eigs)
    data.put("rel_error", errs)
    # meta_train's convergence report per seed (1 converged, 0 not or diverged)
    data.put("run_converged", np.array([float(r.converged) for r in runs]))
    nrm = np.linalg.norm(P_star)
    data.put("theory_dist_Sigma_inv", np.linalg.norm(th["Sigma_inv"] - P_star) / nrm)
    data.put("theory_dist_alpha", np.linalg.norm(s.alpha * np.eye(s.d) - P_star) / nrm)
    return frame.finish(budget)


def render(data: FigureData) -> Any:
    """Draw figure 4: (a) the eigenvalues of ``P`` over training against those of ``P*``, (b)
    the relative error to ``P*``."""
    fig, ax, bx = style.two_panels(FIGSIZE)
    C = style.COLORS
    m = data.meta
    steps, E = data["steps"], data["eig_P"]
    d = E.shape[-1]
    colors = [style.PALETTE[i % len(style.PALETTE)] for i in (0, 2, 3, 4, 5, 1)]
    flagged = unconverged(data)
    for k in range(d):
        c = colors[k % len(colors)]
        for i in range(1, E.shape[0]):
            ax.plot(steps, E[i, :, k], color=c, lw=0.8, alpha=0.35)
        ax.plot(steps, E[0, :, k], color=c, lw=1.8,
                label="eigenvalues of α B_LᵀB_L (measured; seed 0 bold)" if k == 0 else None)
        ax.axhline(data["theory_eig_P_star"][k], color=c, ls="--", lw=1.3,
                   label="eigenvalues of P* (theory)" if k == 0 else None)
        ax.axhline(data["theory_eig_Sigma_inv"][k], color=C["reference"], ls=":", lw=1.2,
                   label="eigenvalues of Σ⁻¹ (n → ∞ limit of P*)" if k == 0 else None)
    marked = False
    for i, k in zip(*np.nonzero(flagged), strict=True):
        last = np.nonzero(np.isfinite(E[i, :, k]))[0]
        if not len(last):
            continue
        j = int(last[-1])
        ax.plot([steps[j]], [E[i, j, k]], ls="none", marker="x", ms=9, mew=2.2,
                color=colors[k % len(colors)], zorder=5,
                label=None if marked else "not converged (run still moving at the end)")
        marked = True
    style.plain_log_axis(ax)
    style.label_panel(ax, "a", title="Spectrum of P = α B_LᵀB_L", xlabel=style.STEP_LABEL,
                      ylabel="eigenvalue of the step matrix P (dimensionless)",
                      legend="lower right", fontsize=7.5)

    mean, low, high = log_interval_arrays(data["rel_error"])
    style.band(bx, steps, mean, low, high, color=C["deep"],
               label=f"‖P − P*‖/‖P*‖, measured (geometric mean, 95% band, "
                     f"n = {m['seeds']} seeds)")
    style.theory_line(bx, float(data["theory_dist_Sigma_inv"]), "‖Σ⁻¹ − P*‖/‖P*‖ (theory)",
                      C["reference"], ls=":")
    style.theory_line(bx, float(data["theory_dist_alpha"]),
                      "‖αI − P*‖/‖P*‖ (shallow MAML, theory)", C["shallow"], ls="--")
    style.plain_log_axis(bx)
    style.label_panel(bx, "b", title="Distance to the optimal preconditioner",
                      xlabel=style.STEP_LABEL, ylabel="relative Frobenius distance to P*",
                      legend="lower left", fontsize=7.5)
    return style.finish(fig)


def unconverged(data: FigureData) -> np.ndarray:
    """Seeds × eigenvalues: True where the run is not converged — meta_train's report says
    so (the whole seed) or the eigenvalue is :func:`still_moving`."""
    E = np.asarray(data["eig_P"])
    flags = still_moving(data["steps"], E)
    run_ok = np.asarray(data["run_converged"], dtype=float) > 0.5
    flags[~run_ok, :] = True
    return flags


def caption(data: FigureData) -> str:
    """The caption of figure 4: the relative error of ``αB_LᵀB_L`` to ``P*`` at the end, with
    its interval, and the eigenvalues of ``P*`` and ``Σ⁻¹``."""
    m = data.meta
    g, lo, hi = (float(v[-1]) for v in log_interval_arrays(data["rel_error"]))
    err = f"{g:.3f} [{lo:.3f}, {hi:.3f}]"
    eig = ", ".join(f"{v:.3f}" for v in data["theory_eig_P_star"])
    eig_s = ", ".join(f"{v:.3f}" for v in data["theory_eig_Sigma_inv"])
    return (
        f"Depth-{m['setting']['depth']} linear net (hidden {m['setting']['hidden']}), top "
        f"layer adapted, n = {m['setting']['n']} shots, α = {m['setting']['alpha']}, "
        f"{m['meta_steps']} meta-training steps on sampled tasks. (a) The eigenvalues of the "
        f"preconditioner α B_LᵀB_L formed by the frozen lower layers, read from the weights "
        f"along training, against those of P* ({eig}; theory) and of Σ⁻¹ ({eig_s}; the "
        f"Newton step, P*'s limit as n → ∞). (b) Relative distance to P* at the end of "
        f"training: {err} (geometric mean and 95% CI over n = {m['seeds']} seeds); MAML's "
        f"fixed step αI is {float(data['theory_dist_alpha']):.2f} and Σ⁻¹ "
        f"{float(data['theory_dist_Sigma_inv']):.2f} away."
        + _convergence_note(data)
    )


def _convergence_note(data: FigureData) -> str:
    flags = unconverged(data)
    run_ok = np.asarray(data["run_converged"], dtype=float) > 0.5
    if not flags.any():
        return " Every run converged (meta_train's report, and no eigenvalue still moving)."
    parts = []
    for i in range(flags.shape[0]):
        if not run_ok[i]:
            parts.append(f"seed {i} (meta_train: not converged)")
        elif flags[i].any():
            ks = ", ".join(str(k + 1) for k in np.nonzero(flags[i])[0])
            parts.append(f"seed {i} (eigenvalue {ks} in ascending order still moving)")
    return (" Not converged, marked × at the end of its curves: " + "; ".join(parts)
            + f" — its distance to P* is unfinished training, not a mismatch with theory "
              f"(still moving: a monotone change of more than {MOVING_RTOL:.0%} over the "
              f"last fifth of training).")
