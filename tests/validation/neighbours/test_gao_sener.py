"""gao-sener-tradeoff: the crossover in M is found; with the coefficient independent of q
the optima coincide and "MAML wins at large M" is rejected."""

from __future__ import annotations

from maml_depth.validation.neighbours import gao_sener_tradeoff as gs


def test_claim_passes() -> None:
    r = gs.evaluate(seed=11)
    assert r["verdict"] == "pass", r


def test_independent_coefficient_is_rejected() -> None:
    r = gs.evaluate(seed=11, coupled=False)
    assert r["verdict"] == "fail"
    assert r["verdict_large_M"] == "fail"
    assert abs(r["maml_optimum"] - r["pooled_optimum"]) < 1e-12
