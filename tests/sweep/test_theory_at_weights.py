"""The sweep's theory column beyond the closed form: the exact expected loss of the trained
weights for any adapted layers and steps (expected_deep_loss), a labelled Monte Carlo
estimate beyond the engine's reach, the convergence report, and the parameter names."""

from __future__ import annotations

import math

import pytest
import torch

from maml_depth.numerics import monte_carlo_deep_loss
from maml_depth.sweep import RESULT_FIELDS, parse_config, run_point
from maml_depth.sweep import runner as runner_mod
from maml_depth.sweep.config import ALIASES, PARAMS
from maml_depth.sweep.runner import build_family, build_model, theory_fields
from maml_depth.theory import reference_losses

from .common import TINY, tiny_config

Z = 4.0  # |z| bound of the Monte Carlo comparisons (two-sided, p ≈ 6·10⁻⁵ per check)


def _point(**over):
    return parse_config({"fixed": TINY | over}).expand()[0].params


def _weights(point):
    model = build_model(point)
    params = {k: v.detach() for k, v in model.named_parameters()}
    ws = [params[f"layers.{j}.weight"].to(torch.float64) for j in range(point["depth"])]
    return params, ws


def test_new_names_are_the_parameters_and_old_spellings_alias_them():
    for old, new in ALIASES.items():
        assert new in PARAMS and old not in PARAMS
    new = parse_config({"fixed": {"n_support": 7, "condition": 3.0, "steps": 2,
                                  "preconditioner": "maml", "sigma": 0.2}}).expand()[0]
    old = parse_config({"fixed": {"shots": 7, "anisotropy": 3.0, "inner_steps": 2,
                                  "optimizer": "maml", "noise": 0.2}}).expand()[0]
    assert new.key == old.key and new.params == old.params
    new = new.params
    assert new["n_support"] == 7 and new["steps"] == 2 and new["sigma"] == 0.2
    cfg_new = tiny_config({"steps": [1, 2]})
    cfg_old = tiny_config({"inner_steps": [1, 2]})
    assert [p.key for p in cfg_new.expand()] == [p.key for p in cfg_old.expand()]
    assert parse_config({"sweep": {"x": "shots"}, "grid": {"shots": [2, 3]}}).x == "n_support"


@pytest.mark.parametrize("over", [
    {"depth": 2, "adapt": "all"},          # two adapted layers, one step
    {"depth": 2, "adapt": "top", "steps": 2},  # the top layer, two steps
    {"depth": 1, "steps": 3},              # the shallow model, three steps
])
def test_loss_at_weights_is_exact_and_agrees_with_monte_carlo(over):
    """Inside the engine's reach the value is exact (se 0) and a Monte Carlo of the same
    weights (10⁵ tasks, independent sampling) agrees within Z standard errors."""
    p = _point(**over)
    fam = build_family(p)
    params, ws = _weights(p)
    out = theory_fields(p, fam, params)
    assert "at weights: exact expected_deep_loss" in out["theory_kind"]
    assert out["theory_loss_at_weights_se"] == 0.0
    est = monte_carlo_deep_loss(fam.to(dtype=torch.float64), ws, alpha=p["alpha"],
                                adapt=runner_mod.adapted_layers(p), steps=p["steps"],
                                num_tasks=100_000, seed=11)
    z = (out["theory_loss_at_weights"] - est.mean) / est.stderr
    assert abs(z) < Z, (out["theory_loss_at_weights"], est)


def test_loss_at_weights_beyond_reach_is_a_labelled_monte_carlo_estimate():
    """Two adapted layers for two steps are beyond the exact engine: the value is a Monte
    Carlo estimate, labelled in theory_kind and theory_note, with its standard error."""
    p = _point(depth=2, adapt="all", steps=2)
    fam = build_family(p)
    params, ws = _weights(p)
    out = theory_fields(p, fam, params)
    assert "Monte Carlo estimate" in out["theory_kind"]
    assert "Monte Carlo estimate" in out["theory_note"] and "reach" in out["theory_note"]
    se = out["theory_loss_at_weights_se"]
    assert se > 0
    ref = monte_carlo_deep_loss(fam.to(dtype=torch.float64), ws, alpha=p["alpha"],
                                adapt="all", steps=2, num_tasks=100_000, seed=12)
    z = (out["theory_loss_at_weights"] - ref.mean) / math.hypot(se, ref.stderr)
    assert abs(z) < Z


def test_theory_loss_comes_from_reference_losses_for_m_outputs():
    p = _point(depth=2, m=2)
    fam = build_family(p)
    params, _ = _weights(p)
    out = theory_fields(p, fam, params)
    ref = reference_losses(fam.Sigma, fam.Lam, float(fam.sigma), int(fam.n_support),
                           p["alpha"], m=2)
    assert out["theory_loss"] == ref.loss_P_star
    shallow = _point(depth=1, m=2)
    out1 = theory_fields(shallow, build_family(shallow), _weights(shallow)[0])
    assert out1["theory_loss"] == ref.loss_alpha


def test_record_carries_the_convergence_report_and_the_summary_shows_it(tmp_path):
    from maml_depth.sweep import run_sweep

    r = run_point(_point(depth=2, adapt="all"))
    assert r["status"] == "ok" and set(r["result"]) == set(RESULT_FIELDS)
    conv = r["result"]["convergence"]
    assert conv is not None and conv["converged"] == r["result"]["converged"]
    # 5 outer steps cannot show convergence: the report says why
    assert r["result"]["converged"] is False and conv["reason"]
    cfg = tiny_config({"depth": [2], "adapt": ["top", "all"]})
    run_sweep(cfg, out=tmp_path, executor="serial", progress=False)
    md = (tmp_path / "summary.md").read_text()
    assert "| ok/points | converged |" in md
    rows = [ln for ln in md.splitlines() if ln.startswith(("| top ", "| all "))]
    assert len(rows) == 2 and all("| 1/1 | 0/1 (" in ln for ln in rows), md
    csv = (tmp_path / "summary.csv").read_text()
    assert "n_converged" in csv and "convergence_note" in csv
