"""The engine benchmark's machinery (a measurement, not a timed test): the capacity search,
the in-process measurement of each peer on a tiny problem, the interleaved timing and its
ratios, and the target notes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.benchmarks.engine import (
    EngineConfig,
    _faster,
    _target_note,
    largest_fitting,
    largest_task_batch,
    measure,
    paired,
    paired_speedups,
)
from maml_depth.validation.stats import median_interval

TINY = EngineConfig("tiny-test", d=3, hidden=4, depth=3, tasks=4, shots=3)


@given(start=st.integers(1, 64), capacity=st.integers(0, 5000), limit=st.integers(64, 8000))
def test_largest_fitting_finds_the_capacity_to_five_percent(start, capacity, limit):
    calls = []

    def fits(T):
        calls.append(T)
        return T <= capacity

    got = largest_fitting(fits, start, limit)
    truth = min(capacity, limit)
    if truth < start:
        assert got == 0
        return
    assert start <= got <= truth  # never reports a size that did not fit
    assert truth - got <= max(1, 0.05 * got)  # and is within 5 % of the true capacity
    assert all(c <= limit for c in calls)
    assert len(calls) <= 2 * math.log2(limit) + 4  # doubling + bisection, not a scan


def test_largest_fitting_rejects_bad_bounds():
    with pytest.raises(ValueError, match="start"):
        largest_fitting(lambda T: True, 0, 10)
    with pytest.raises(ValueError, match="limit"):
        largest_fitting(lambda T: True, 20, 10)


@pytest.mark.parametrize("peer", ["loop", "vmap", "factorized"])
def test_measure_runs_each_engine_and_checks_its_gradient(peer):
    r = measure(peer, TINY, "cpu", repeats=3, warmup=1, threads=1, min_time_s=0.0)
    assert r["repeats"] == 3
    assert r["status"] == "ok"
    assert r["ms"] > 0 and r["ms_min"] <= r["ms"]
    # the float64 meta-gradient check against the loop ran (loop: against itself)
    assert r["grad_rel_err"] < 1e-10
    assert r["gflop_per_step"] > 0


def test_largest_task_batch_on_cpu_reports_a_fitting_size():
    r = largest_task_batch("factorized", TINY, device="cpu", max_tasks=16, repeats=1)
    assert r["tasks"] == 16  # nothing runs out of memory at this size
    assert r["steps_per_s"] > 0


def _res(loop, vmap, fac, mem=(1.0, 0.1)):
    return {"loop": {"status": "ok", "ms": loop},
            "vmap": {"status": "ok", "ms": vmap, "peak_mb": mem[0], "heap_mb": mem[0]},
            "factorized": {"status": "ok", "ms": fac, "peak_mb": mem[1], "heap_mb": mem[1]}}


def test_target_note_says_met_and_missed():
    met = _target_note("large", _res(100.0, 100.0, 10.0))
    assert met is not None and "MISSED" not in met and met.count("(met)") == 4
    missed = _target_note("large", _res(100.0, 30.0, 10.0, mem=(1.0, 0.5)))
    assert missed is not None
    assert "≥ 5× vmap: 3.00× (MISSED)" in missed and "0.500 × (MISSED)" in missed
    assert _target_note("small-k5", _res(1.0, 1.0, 1.0)) is None  # no targets there


def test_paired_interleaves_every_peer_in_every_round_in_rotated_order(monkeypatch):
    from maml_depth.benchmarks import engine

    calls: list[str] = []
    real = engine._meta_loss_fn

    def recording(peer, *args):
        step = real(peer, *args)
        return lambda: (calls.append(peer), step())[1]

    monkeypatch.setattr(engine, "_meta_loss_fn", recording)
    peers = ["loop", "vmap", "factorized"]
    r = paired(peers, TINY, "cpu", threads=1, min_rounds=4, min_time_s=0.0, block_s=0.0,
               warmup=1)
    assert r["status"] == "ok" and r["rounds"] == 4
    assert {p: len(v) for p, v in r["block_ms"].items()} == {p: 4 for p in peers}
    assert all(ms > 0 for v in r["block_ms"].values() for ms in v)
    # after one warm-up step each, one step per block (block_s = 0), the order rotated
    assert calls[:3] == peers
    assert calls[3:] == (peers + peers[1:] + peers[:1] + peers[2:] + peers[:2] + peers)


@given(drift=st.lists(st.floats(0.5, 4.0), min_size=6, max_size=40),
       speedup=st.floats(1.1, 20.0))
def test_paired_speedups_cancel_a_machine_speed_that_drifts_between_rounds(drift, speedup):
    """A peer ``speedup`` times faster, on a machine whose speed changes from round to round
    by up to 8×: the per-round ratios, and so the estimate and its interval, are exact."""
    blocks = {"vmap": [3.0 * d for d in drift],
              "factorized": [3.0 * d / speedup for d in drift]}
    sp = paired_speedups(blocks, "vmap")
    assert math.isclose(sp["factorized"].estimate, speedup, rel_tol=1e-12)
    assert math.isclose(sp["factorized"].low, speedup, rel_tol=1e-12)
    assert math.isclose(sp["factorized"].high, speedup, rel_tol=1e-12)
    assert sp["vmap"].estimate == 1.0


def test_target_note_with_intervals_says_met_inconclusive_and_missed():
    res = _res(100.0, 100.0, 10.0)

    def speed(vs_vmap):
        return {"loop": {"factorized": median_interval([20.0] * 10)},
                "vmap": {"factorized": median_interval(vs_vmap)}}

    met = _target_note("small", res, speed([2.5 + 0.01 * i for i in range(20)]))
    assert met is not None and "≥ 2× vmap: 2.5" in met and met.count("; met)") == 2
    assert "(95 % CI, n = 20; met)" in met
    few = _target_note("small", res, speed([2.5, 2.6, 2.7]))  # a 75 % interval only
    assert few is not None and "(75 % CI, n = 3; inconclusive)" in few
    unsure = _target_note("small", res, speed([1.5 + 0.05 * i for i in range(20)]))
    assert unsure is not None and "; inconclusive)" in unsure
    missed = _target_note("small", res, speed([1.5 + 0.01 * i for i in range(20)]))
    assert missed is not None and "; MISSED)" in missed


def test_faster_keeps_the_round_with_the_lower_median():
    slow, fast = {"status": "ok", "ms": 5.0}, {"status": "ok", "ms": 2.0}
    failed = {"status": "unavailable: x"}
    assert _faster(None, slow) is slow
    assert _faster(slow, fast) is fast and _faster(fast, slow) is fast
    assert _faster(failed, slow) is slow and _faster(slow, failed) is slow


def test_run_makes_one_table_per_config_with_ratios(monkeypatch):
    """End to end through the subprocesses, on a tiny config and two rounds."""
    from maml_depth.benchmarks import engine
    from maml_depth.benchmarks.table import render

    monkeypatch.setitem(engine.CONFIGS, TINY.name, TINY)
    tables = engine.run([TINY.name], ["loop", "factorized"], repeats=20, rounds=2,
                        paired_rounds=6, paired_s=0.0, progress=False)
    assert len(tables) == 1
    text = render(tables)
    assert "| loop |" in text and "| factorized |" in text and "unavailable" not in text
    assert "fastest of 2 round(s)" in text
    assert "interleaved timing of the peers that ran, in one process (6 rounds" in text
    assert "distribution-free 95 % interval (order statistics, n = 6)" in text
    fac = next(r for r in tables[0].rows if r[0] == "factorized")
    assert fac[4] > 1.0  # faster than the loop, from the interleaved rounds
    with pytest.raises(ValueError, match="paired_rounds must be ≥ 6"):
        engine.run([TINY.name], ["loop"], paired_rounds=5, progress=False)
    with pytest.raises(ValueError, match="paired_s"):
        engine.run([TINY.name], ["loop"], paired_s=float("nan"), progress=False)
    with pytest.raises(ValueError, match="rounds"):
        engine.run([TINY.name], ["loop"], rounds=0, progress=False)
