"""bernacchia-negative-rate: the claim passes at the paper's sizes; the three wrong variants
are rejected (fail)."""

from __future__ import annotations

import pytest

from maml_depth.errors import InvalidArgumentError
from maml_depth.validation.neighbours import bernacchia_negative_rate as bern


@pytest.mark.slow
def test_claim_passes_at_the_paper_sizes() -> None:
    r = bern.evaluate(2000, seed=3)
    assert r["verdict"] == "pass", (r["verdict_argmin"], r["verdict_m1_0"], r["ratio_err"])
    assert r["formula_argmin"] < 0


@pytest.mark.parametrize("variant", ["argmin-nonneg", "naive", "sigma0"])
def test_wrong_variants_fail(variant: str) -> None:
    r = bern.evaluate(600, seed=4, variant=variant)
    assert r["verdict"] == "fail"
    if variant == "naive":  # k/p for k/(p − k − 1): E‖ω̂ − w₀‖² off by (p − k − 1)/p
        assert r["verdict_formula"] == "fail"
    else:
        assert r["verdict_m1_0"] == "fail"


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="variant"):
        bern.evaluate(600, 0, variant="nope")
    with pytest.raises(InvalidArgumentError, match="trials"):
        bern.evaluate(10, 0)
