"""collins-representation: the population rate matches its derivation and ANIL/MAML on the
engine learn B*; with an eigenvalue of E w*w*ᵀ zero dist stays above 0.9 (fail)."""

from __future__ import annotations

from maml_depth.validation.neighbours import collins_representation as co


def test_claim_passes_small_budget() -> None:
    r = co.evaluate(seeds=1, meta_steps=400, population_steps=300, seed=5)
    assert r["verdict"] == "pass", (r["population"]["rate_rel_error"],
                                    [x["final"] for x in r["runs"]])
    assert all(x["initial"] >= co.START for x in r["runs"])


def test_rank_deficient_task_diversity_is_rejected() -> None:
    r = co.evaluate(seeds=1, meta_steps=200, population_steps=100, seed=5,
                    rank_deficient=True)
    assert r["verdict"] == "fail"
    assert all(x["final"] > co.START for x in r["runs"])
    assert min(r["population"]["dist"]) > co.START
