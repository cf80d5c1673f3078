"""The plotted theory arrays equal the theory functions at those points — recomputed here
independently through :mod:`maml_depth.theory` (where possible by another route than the
figure module takes: the closed form of docs/theory/expected-loss.md#closed-form instead of the
scalar polynomial, the
quadratic ``E ℒ(P)`` instead of the minimum's formula) — and the task matrices are those of
the shared settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy as sp

from maml_depth.common.settings import BOTTOM_LAYERS as RANK2_SETTING
from maml_depth.common.settings import LinearSetting
from maml_depth.theory import (
    expected_loss,
    fixed_step_loss,
    optimal_preconditioner,
    preconditioned_loss,
    scalar_maml_objective,
    scalar_symbols,
)
from tests.helpers import assert_close

LINEAR = LinearSetting()


def _family_matrices(setting: LinearSetting) -> tuple[np.ndarray, np.ndarray]:
    fam = setting.family(0)
    return fam.Sigma.numpy(), fam.Lam.numpy()


def _check_matrices(data: Any, setting: LinearSetting = LINEAR) -> tuple[np.ndarray, np.ndarray]:
    S, La = _family_matrices(setting)
    assert_close(data["Sigma"], S, what="Sigma")
    assert_close(data["Lam"], La, what="Lam")
    return S, La


# -- figure 1 ---------------------------------------------------------------------------------
def test_fig1_surface_is_the_closed_form_with_top_layer_preconditioner(built: dict[int, Any]
                                                                       ) -> None:
    from maml_depth.paper_figures import fig1_loss_surface as f1

    d = built[1].data
    t = f1.TASK
    W1, W2 = np.meshgrid(d["w1"], d["w2"])
    one = np.ones_like(W1)[..., None, None]
    # adapting w₁ only: w' = w − α w₂² g exactly (docs/theory/update-rules.md#one-step), i.e. §3
    # with L = w₂², R = 1
    ref = expected_loss((W1 * W2)[..., None, None], W_bar=t["wbar"] * one, Sigma=t["s"] * one,
                        Lam=t["tau"] ** 2 * one, sigma=t["sigma"], n=int(t["n"]),
                        alpha=t["alpha"], L=(W2**2)[..., None, None])
    assert_close(d["theory_surface"], ref, what="deep surface")
    shallow = expected_loss(d["w"][:, None, None], W_bar=t["wbar"] * np.ones((len(d["w"]), 1, 1)),
                            Sigma=[[t["s"]]], Lam=[[t["tau"] ** 2]], sigma=t["sigma"],
                            n=int(t["n"]), alpha=t["alpha"])
    assert_close(d["theory_shallow"], shallow, what="shallow curve")


def test_fig1_optimum_from_the_exact_polynomial(built: dict[int, Any]) -> None:
    from maml_depth.paper_figures import fig1_loss_surface as f1

    d = built[1].data
    t = f1.TASK
    P, loss = optimal_preconditioner([[t["s"]]], [[t["tau"] ** 2]], t["sigma"], int(t["n"]))
    assert_close(d["theory_loss_star"], loss)
    expr = scalar_maml_objective(2, (1,), 1, s=t["s"], wbar=t["wbar"], tau=t["tau"],
                                 sigma=t["sigma"], n=int(t["n"]))
    sy = scalar_symbols(2)
    for w1, w2 in d["theory_optimum"]:
        assert_close(t["alpha"] * w2**2, np.asarray(P).item(), what="α w₂² = P*")
        assert_close(w1 * w2, t["wbar"], what="w₁w₂ = w̄")
        val = float(expr.subs({sy.w[0]: w1, sy.w[1]: w2, sy.alpha: sp.Rational(t["alpha"])}))
        assert_close(val, loss, what="objective at the minimiser")


# -- figure 2 ---------------------------------------------------------------------------------
def test_fig2_asymptotes(built: dict[int, Any]) -> None:
    d = built[2].data
    S, La = _check_matrices(d)
    s = LINEAR
    assert_close(d["theory_shallow"], fixed_step_loss(S, La, s.sigma, s.n, s.alpha))
    assert_close(d["theory_shallow"], preconditioned_loss(s.alpha * np.eye(s.d), S, La, s.sigma,
                                                          s.n))
    P, loss = optimal_preconditioner(S, La, s.sigma, s.n, "full")
    assert_close(d["theory_deep"], loss)
    assert_close(d["theory_deep"], preconditioned_loss(P, S, La, s.sigma, s.n))
    seeds = built[2].data.meta["seeds"]
    for key in ("shallow", "deep", "logr", "linnet"):
        assert d[f"curves_{key}"].shape == (seeds, len(d[f"steps_{key}"]))
        assert d[f"steps_{key}"][0] == 0
        assert np.isfinite(d[f"final_{key}"]).all()


# -- figure 3 ---------------------------------------------------------------------------------
def test_fig3_depth_and_shot_curves(built: dict[int, Any]) -> None:
    d = built[3].data
    S, La = _check_matrices(d)
    s = LINEAR
    star = optimal_preconditioner(S, La, s.sigma, s.n, "full").loss
    expected = [fixed_step_loss(S, La, s.sigma, s.n, s.alpha) if L == 1 else star
                for L in d["depths"]]
    assert_close(d["theory_depth_top"], np.array(expected))
    ns = d["n_grid"]
    assert ns.dtype.kind == "i" and ns.min() >= 1
    P = np.stack([optimal_preconditioner(S, La, s.sigma, int(n), "full").P for n in ns])
    a_s = np.array([optimal_preconditioner(S, La, s.sigma, int(n), "scalar").alpha for n in ns])
    eye = np.eye(s.d)
    assert_close(d["theory_n_deep"],
                 np.array([preconditioned_loss(p, S, La, s.sigma, int(n))
                           for p, n in zip(P, ns, strict=True)]))
    assert_close(d["theory_n_tuned"],
                 np.array([preconditioned_loss(a * eye, S, La, s.sigma, int(n))
                           for a, n in zip(a_s, ns, strict=True)]))
    assert_close(d["theory_n_shallow"],
                 np.array([fixed_step_loss(S, La, s.sigma, int(n), s.alpha) for n in ns]))
    for key in ("measured_depth_top", "measured_depth_all", "ref_depth_all", "ref_depth_all_se"):
        assert d[key].shape == (d.meta["seeds"], len(d["depths"]))
        assert np.isfinite(d[key]).all()
    assert d["measured_n_deep"].shape == (d.meta["seeds"], len(d["shots"]))
    # the "all adapted" reference is exact inside the engine's reach (one step, ≤ 4 layers)
    exact = d["ref_depth_all_exact"]
    assert exact.tolist() == [float(int(L) <= 4) for L in d["depths"]]
    assert (d["ref_depth_all_se"][:, exact == 1] == 0).all()
    assert (d["ref_depth_all_se"][:, exact == 0] > 0).all()
    assert "exact expected loss" in d.meta["ref_depth_all"]


@pytest.mark.parametrize("depth", [1, 2, 3, pytest.param(4, marks=pytest.mark.slow), 5])
def test_fig3_all_adapted_reference_is_exact_in_reach_and_monte_carlo_beyond(depth: int) -> None:
    """:func:`reference_all_adapted` on a random net of the figure's setting: exact for
    L ≤ 4 and equal to expected_deep_loss (L = 4 derives for minutes: slow); a Monte Carlo
    estimate (se > 0) for L = 5; either way it agrees with an independent Monte Carlo of 10⁵
    tasks within 4 standard errors."""
    import torch

    from maml_depth.numerics import DeepLinear, monte_carlo_deep_loss
    from maml_depth.paper_figures.fig3_depth_shots import reference_all_adapted
    from maml_depth.theory import expected_deep_loss

    s = LINEAR
    fam = s.family(0)
    dims = (s.d, *([s.hidden] * (depth - 1)), 1)
    net = DeepLinear(dims, init="gaussian", scale=1.0,
                     generator=torch.Generator().manual_seed(depth))
    ws = [w.detach().to(torch.float64) for w in net.weights]
    value, se, exact = reference_all_adapted(fam, ws, sigma=s.sigma, n=s.n, alpha=s.alpha,
                                             mc_tasks=20_000, seed=3)
    assert exact == (depth <= 4)
    if exact:
        assert se == 0.0
        assert value == expected_deep_loss([w.numpy() for w in ws], adapt="all",
                                           W_bar=fam.W_bar.numpy(), Sigma=fam.Sigma.numpy(),
                                           Lam=fam.Lam.numpy(), sigma=s.sigma, n=s.n,
                                           alpha=s.alpha)
    else:
        assert se > 0
    ref = monte_carlo_deep_loss(fam, ws, alpha=s.alpha, adapt="all", num_tasks=100_000, seed=9)
    assert abs(value - ref.mean) < 4 * np.hypot(se, ref.stderr), (value, se, ref)


# -- figure 4 ---------------------------------------------------------------------------------
def test_fig4_spectra(built: dict[int, Any]) -> None:
    d = built[4].data
    S, La = _check_matrices(d)
    s = LINEAR
    P, _ = optimal_preconditioner(S, La, s.sigma, s.n, "full")
    assert_close(d["theory_P_star"], P)
    assert_close(d["theory_eig_P_star"], np.linalg.eigvalsh(P))
    assert_close(d["theory_Sigma_inv"] @ S, np.eye(s.d))
    assert_close(d["theory_eig_Sigma_inv"], np.sort(1 / np.linalg.eigvalsh(S)))
    nrm = np.linalg.norm(P)
    assert_close(d["theory_dist_alpha"], np.linalg.norm(s.alpha * np.eye(s.d) - P) / nrm)
    assert d["eig_P"].shape == (d.meta["seeds"], len(d["steps"]), s.d)
    assert (d["eig_P"] >= -1e-12).all()  # α B_LᵀB_L is PSD


# -- figure 5 ---------------------------------------------------------------------------------
def test_fig5_class_optima(built: dict[int, Any]) -> None:
    d = built[5].data
    S, La = _check_matrices(d)
    s = LINEAR
    assert_close(d["theory_fixed"], fixed_step_loss(S, La, s.sigma, s.n, s.alpha))
    for kind in ("scalar", "diagonal", "full"):
        P, _ = optimal_preconditioner(S, La, s.sigma, s.n, kind)  # type: ignore[arg-type]
        assert_close(d[f"theory_{kind}"], preconditioned_loss(P, S, La, s.sigma, s.n),
                     what=kind)
    # the ordering of docs/theory/expected-loss.md#optimal-preconditioner
    assert (d["theory_full"] <= d["theory_diagonal"] <= d["theory_scalar"]
            <= d["theory_fixed"])
    for kind in ("shallow", "meta-sgd", "meta-curvature", "kfo", "deep-top"):
        assert d[f"final_{kind}"].shape == (d.meta["seeds"],)


# -- figure 6 ---------------------------------------------------------------------------------
def test_fig6_task_subspace(built: dict[int, Any]) -> None:
    d = built[6].data
    S, La = _check_matrices(d, RANK2_SETTING)
    s = RANK2_SETTING
    P, _ = optimal_preconditioner(S, La, s.sigma, s.n, "full")
    Pi = d["theory_range_projector"]
    assert_close(Pi @ P, P, what="Π projects onto range(P*)")
    ev, V = np.linalg.eigh(La)
    U = V[:, ev > 1e-10 * ev.max()]
    assert_close(Pi, U @ U.T, what="range(P*) = range(Λ)")
    assert round(float(np.trace(Pi))) == s.lam_rank
    A = d["angles_deg"]
    assert A.shape == (d.meta["seeds"], len(d["steps"]), s.lam_rank)
    assert ((A >= -1e-9) & (A <= 90 + 1e-9)).all()
