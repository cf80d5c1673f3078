"""ach-balanced-dynamics: the ACH rule passes, every wrong variant is rejected (fail)."""

from __future__ import annotations

import pytest

from maml_depth.theory.balanced import ACH_VARIANTS
from maml_depth.validation import BUDGETS, CLAIMS, RunContext, run_claim
from maml_depth.validation.neighbours import ach_balanced


def test_ach_rule_passes() -> None:
    verdict, rows = ach_balanced.evaluate(seed=7)
    assert verdict == "pass"
    assert all(s > ach_balanced.SLOPE_SPLIT for r in rows for s in r["slopes"])


@pytest.mark.parametrize("variant", [v for v in ACH_VARIANTS if v != "ach"])
def test_wrong_variants_fail(variant: str) -> None:
    verdict, rows = ach_balanced.evaluate(seed=7, variant=variant)
    assert verdict == "fail"
    # their error is O(η): every slope lies below the split between the two hypotheses
    assert all(s < ach_balanced.SLOPE_SPLIT for r in rows for s in r["slopes"])


def test_registered_in_neighbours_suite(tmp_path: object) -> None:
    c = CLAIMS["ach-balanced-dynamics"]
    assert c.suite == "neighbours"
    res = run_claim(c, RunContext(c.id, BUDGETS["quick"], seed=1, out_dir=tmp_path))  # type: ignore[arg-type]
    assert res.verdict == "pass", res.summary
    assert res.figures and res.figures[0].endswith(".png")
