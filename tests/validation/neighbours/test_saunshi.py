"""saunshi-separation at a small size (d = 20, n = 5: convex factor 1 − n/d = 0.75, derived
top-layer one-step optimum 2/(n+2)/0.75 ≈ 0.38 < ½): the meta-trained two-layer net passes;
with its bottom layer frozen at I it is a convex learner again and fails."""

from __future__ import annotations

from maml_depth.validation.neighbours import saunshi_separation as sa


def test_frozen_bottom_layer_is_rejected() -> None:
    r = sa.net_ratio(20, 5, seed=2, meta_steps=200, eval_tasks=4000, frozen=True)
    assert r["verdict"] == "fail", str(r["ratio"])


def test_two_layer_net_beats_every_convex_initialisation() -> None:
    r = sa.evaluate(20, 5, seeds=1, meta_steps=300, eval_tasks=4000, mc_tasks=4000, seed=2)
    assert r["verdict"] == "pass", (r["verdict_convex"], [str(x["ratio"]) for x in r["nets"]])
