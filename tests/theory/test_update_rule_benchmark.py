"""Smoke test of the update-rule benchmark (a measurement, not a timed test)."""

from __future__ import annotations

from maml_depth.benchmarks.table import render
from maml_depth.benchmarks.update_rule import run


def test_update_rule_benchmark_runs_small():
    tables = run(depths=(1, 3), composed=((2, 2),), eval_depths=(2, 3), width=3, n=4, tasks=2)
    assert len(tables) == 2
    derive, evaluate = tables
    assert [r[0] for r in derive.rows] == [1, 3, 2]
    assert [r[0] for r in evaluate.rows] == [2, 3]
    assert all(r[3] > 0 for r in evaluate.rows)  # a ratio
    assert "### Derive and compile" in render(tables)
