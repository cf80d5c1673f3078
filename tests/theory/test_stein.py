"""The Stein recursion over X (theory/stein.py, docs/theory/exact-expectation.md#eq-4.13).

Its contraction rules are checked against the direct joint Wick enumeration of the engine
(every matching traced port by port, an independent implementation) on random products of
traces in ``X`` and fixed letters; a tiny memory budget (the memo evicting almost every
sub-expectation) gives the same polynomial; the broken variant differs.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from maml_depth.theory import exact_expectation as ee
from maml_depth.theory.stein import SteinRecursion

#: d × d blocks of a trace: fixed letters and Σ̂ = X Xᵀ
BLOCKS = [("A",), ("B",), ("A'",), ("B'",), ("X", "X'")]


@st.composite
def x_products(draw: st.DrawFn) -> tuple[tuple[str, ...], ...]:
    """1–3 traces: d × d words of fixed letters and Σ̂ (at least one in each), at most four
    Σ̂ in all; optionally one n × n trace ``Xᵀ M X``."""
    words = []
    for _ in range(draw(st.integers(1, 3))):
        blocks = draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4))
        if ("X", "X'") not in blocks:  # every trace handed to the recursion holds X
            blocks.append(("X", "X'"))
        words.append(tuple(a for b in blocks for a in b))
    if draw(st.booleans()):
        middle = draw(st.lists(st.sampled_from(BLOCKS[:4]), min_size=0, max_size=2))
        words.append(("X'", *(a for b in middle for a in b), "X"))
    count = sum(w.count("X") for w in words)
    if not 1 <= count <= 4:
        words = [("A", "X", "X'", "B", "X", "X'")]
    return tuple(words)


def _as_terms(engine: SteinRecursion, result: tuple) -> dict:
    out: dict = {}
    for ids, p, c in engine.terms(result):
        cyc = tuple(sorted(ee._canonical(list(engine.decode(engine.cycles[i]))) for i in ids))
        out.setdefault((cyc, 0), {})[p] = c
    return out


@given(x_products())
def test_contraction_rules_equal_direct_wick(words: tuple[tuple[str, ...], ...]) -> None:
    engine = SteinRecursion(ee.tp)
    got = _as_terms(engine, engine.expect([engine.encode(w) for w in words]))
    want = ee.expect([(1, words)], mode="direct")
    assert got == want


def test_tiny_memo_budget_gives_the_same_polynomial() -> None:
    err = ee._error_words("deep", (3, (1, 2, 3), 1, False))
    assert err is not None
    words = [w for _, w in ee.loss_products(err)]
    big, small = SteinRecursion(ee.tp), SteinRecursion(ee.tp, memo_mb=0.001)
    for ws in words:
        xs = [w for w in ws if "X" in w or "X'" in w]
        if not xs or any(ee.base(a) in ("Z", "N") for w in ws for a in w):
            continue
        a = _as_terms(big, big.expect([big.encode(w) for w in xs]))
        b = _as_terms(small, small.expect([small.encode(w) for w in xs]))
        assert a == b
    assert small.states > big.states  # evicted sub-expectations were computed again


def test_dropping_a_contraction_changes_the_result() -> None:
    words = (("A", "X", "X'", "B", "X", "X'"),)
    good, bad = SteinRecursion(ee.tp), SteinRecursion(ee.tp, drop_last=True)
    assert _as_terms(good, good.expect([good.encode(w) for w in words])) != _as_terms(
        bad, bad.expect([bad.encode(w) for w in words]))
