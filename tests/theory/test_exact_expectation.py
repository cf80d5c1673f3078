"""The exact-expectation engine (docs/theory/exact-expectation.md): deterministic checks.

- the three enumerations (staged Wick + Stein recursion, direct joint Wick, set partitions
  with falling factorials) give the same exact polynomial in n;
- a moment derived here by hand, per support sample (eq. 3 of the page);
- ``steps=1`` of the engine against the one-step closed form (1e-12 relative), and the deep
  word expansion with one adapted layer against ``population_maml_loss``;
- the n → ∞ limit: k steps of gradient descent on the population loss, in closed form
  (Kronecker powers, written here);
- rotation invariance; torch differentiability; the max_terms refusal; the k-step
  preconditioner optima.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.theory import (
    TermLimitError,
    expected_deep_loss,
    expected_loss,
    k_step_loss,
    optimal_preconditioner,
    population_maml_loss,
)
from maml_depth.theory import exact_expectation as ee
from maml_depth.theory.expected_loss import _exact_steps


def _spd(rng: np.random.Generator, d: int, scale: float = 1.0) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.3 * np.eye(d))


def _case(seed: int, d: int = 3, m: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    return dict(
        W=rng.standard_normal((m, d)), W_bar=rng.standard_normal((m, d)),
        Sigma=_spd(rng, d), Lam=_spd(rng, d, 0.3), sigma=0.7, n=int(rng.integers(2, 9)),
        alpha=0.25, L=np.eye(m) + 0.3 * rng.standard_normal((m, m)),
        R=np.eye(d) + 0.3 * rng.standard_normal((d, d)),
    )


def _letters(c: dict) -> dict:
    return {"D": c["W"] - c["W_bar"], "S": c["Sigma"], "Sa": c["alpha"] * c["Sigma"],
            "Lam": c["Lam"], "L": c["L"], "R": c["R"]}


@pytest.mark.parametrize("spec", [("shallow", (2, True, True, None)),
                                  ("deep", (2, (1, 2), 1, False)),
                                  ("deep", (3, (1, 3), 1, False))])
def test_three_enumerations_agree_exactly(spec: tuple) -> None:
    """Staged Wick (eq. 13) == direct joint Wick (eq. 5) as Laurent polynomials in n, and
    == set partitions with falling factorials (eq. 6) at several n, term by term."""
    err = ee._error_words(*spec)
    assert err is not None
    prods = ee.loss_products(err)
    staged = ee.expect(prods)
    direct = ee.expect(prods, mode="direct")
    assert staged == direct
    for n in (1, 4):
        part = ee.expect(prods, mode="partitions", n=n)
        at_n = {k: sum((c * Fraction(n) ** p for p, c in v.items()), Fraction(0))
                for k, v in staged.items()}
        part_n = {k: sum(v.values(), Fraction(0)) for k, v in part.items()}
        assert {k: v for k, v in at_n.items() if v} == {k: v for k, v in part_n.items() if v}
    # the broken n^b weight differs (a check that can fail)
    bad = ee.expect(prods, mode="partitions", n=5, _ff_as_power=True)
    assert bad != ee.expect(prods, mode="partitions", n=5)


def test_second_moment_derived_per_sample() -> None:
    """E tr(A Σ̂ B Σ̂) = tr(BΣAΣ) + [tr(BΣAᵀΣ) + tr(AΣ) tr(BΣ)]/n, derived here: for i ≠ j
    E[x_i x_iᵀ A x_j x_jᵀ] = ΣAΣ, for i = j Isserlis gives ΣAΣ + ΣAᵀΣ + tr(AΣ)Σ; n(n−1)
    pairs of the first kind and n of the second over n²."""
    rng = np.random.default_rng(0)
    d, n = 4, 3
    A, B, S = rng.standard_normal((d, d)), rng.standard_normal((d, d)), _spd(rng, d)
    word = ("A", "X", "X'", "B", "X", "X'")
    der = ee.Derivation(ee.expect([(1, (word,))]), 0)
    got = der.value({"A": A, "B": B, "Sa": S}, n, 0.0, m=1, d=d)
    want = (np.trace(B @ S @ A @ S)
            + (np.trace(B @ S @ A.T @ S) + np.trace(A @ S) * np.trace(B @ S)) / n)
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("lr", [(True, True), (False, True), (False, False)])
def test_engine_one_step_equals_closed_form(seed: int, m: int, lr: tuple[bool, bool]) -> None:
    c = _case(seed, m=m)
    L = c["L"] if lr[0] else None
    R = c["R"] if lr[1] else None
    closed = expected_loss(c["W"], W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"],
                           sigma=c["sigma"], n=c["n"], alpha=c["alpha"], L=L, R=R)
    engine = _exact_steps(c["W"], c["W_bar"], c["Sigma"], c["Lam"], c["sigma"], c["n"],
                          c["alpha"], L, R, steps=1, max_terms=10**6)
    assert abs(engine - closed) <= 1e-12 * abs(closed)


@pytest.mark.parametrize("adapt", [1, 2, 3])
def test_deep_words_one_layer_equal_population_maml_loss(adapt: int) -> None:
    rng = np.random.default_rng(adapt)
    d, m = 3, 2
    ws = [rng.standard_normal((4, d)) / 2, rng.standard_normal((3, 4)) / 2,
          rng.standard_normal((m, 3)) / 2]
    kw = dict(W_bar=rng.standard_normal((m, d)), Sigma=_spd(rng, d), Lam=_spd(rng, d, 0.3),
              sigma=0.5, n=5, alpha=0.3)
    ref = population_maml_loss(ws, adapt=adapt, **kw)
    words = expected_deep_loss(ws, adapt=adapt, _words=True, **kw)
    assert abs(words - ref) <= 1e-12 * abs(ref)
    assert expected_deep_loss(ws, adapt=adapt, **kw) == pytest.approx(ref, rel=1e-14)


def _population_gd_limit(c: dict, steps: int) -> float:
    """k steps of W ← W − αL ∇ℒ_pop R with ∇ℒ_pop = (W − W_t)Σ: vec form
    ``vec Δ_k = K^k vec Δ_0``, ``K = I − α (RᵀΣ ⊗ L)``; ``E ℒ = ½[d_kᵀ(Σ⊗I)d_k +
    tr(K^kᵀ (Σ⊗I) K^k (Λ⊗I))] + ½ m σ²`` (column-major vec, vec Z ~ N(0, Λ ⊗ I_m))."""
    m = c["W"].shape[0]
    Im = np.eye(m)
    K = np.eye(c["W"].size) - c["alpha"] * np.kron(c["R"].T @ c["Sigma"], c["L"])
    Kk = np.linalg.matrix_power(K, steps)
    dk = Kk @ (c["W"] - c["W_bar"]).reshape(-1, order="F")
    SI = np.kron(c["Sigma"], Im)
    return 0.5 * (dk @ SI @ dk + np.trace(Kk.T @ SI @ Kk @ np.kron(c["Lam"], Im))) \
        + 0.5 * m * c["sigma"] ** 2


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("m", [1, 2])
def test_large_n_limit_is_population_gradient_descent(steps: int, m: int) -> None:
    c = _case(10 + steps, m=m)
    want = _population_gd_limit(c, steps)
    got = expected_loss(c["W"], W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"],
                        sigma=c["sigma"], n=10**12, alpha=c["alpha"], L=c["L"], R=c["R"],
                        steps=steps)
    assert got == pytest.approx(want, rel=1e-9)
    # at finite n the support noise matters (the check can fail)
    finite = expected_loss(c["W"], W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"],
                           sigma=c["sigma"], n=4, alpha=c["alpha"], L=c["L"], R=c["R"],
                           steps=steps)
    assert abs(finite - want) > 1e-3 * want


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


@pytest.mark.parametrize("steps", [2, 3])
def test_rotation_invariance_shallow(steps: int) -> None:
    c = _case(20, m=2)
    Q = _rotation(np.random.default_rng(1), 3)
    kw = dict(sigma=c["sigma"], n=c["n"], alpha=c["alpha"], L=c["L"], steps=steps)
    a = expected_loss(c["W"], W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"], R=c["R"], **kw)
    b = expected_loss(c["W"] @ Q.T, W_bar=c["W_bar"] @ Q.T, Sigma=Q @ c["Sigma"] @ Q.T,
                      Lam=Q @ c["Lam"] @ Q.T, R=Q @ c["R"] @ Q.T, **kw)
    assert b == pytest.approx(a, rel=1e-11)
    # rotating only Σ changes the value (the check can fail)
    e = expected_loss(c["W"], W_bar=c["W_bar"], Sigma=Q @ c["Sigma"] @ Q.T, Lam=c["Lam"],
                      R=c["R"], **kw)
    assert abs(e - a) > 1e-6 * abs(a)


def test_rotation_invariance_deep_two_layers() -> None:
    rng = np.random.default_rng(3)
    d, m = 3, 2
    ws = [rng.standard_normal((4, d)) / 2, rng.standard_normal((m, 4)) / 2]
    S, La, Wb = _spd(rng, d), _spd(rng, d, 0.3), rng.standard_normal((m, d))
    Q = _rotation(rng, d)
    kw = dict(adapt="all", sigma=0.5, n=4, alpha=0.3)
    a = expected_deep_loss(ws, W_bar=Wb, Sigma=S, Lam=La, **kw)
    b = expected_deep_loss([ws[0] @ Q.T, ws[1]], W_bar=Wb @ Q.T, Sigma=Q @ S @ Q.T,
                           Lam=Q @ La @ Q.T, **kw)
    assert b == pytest.approx(a, rel=1e-11)


def test_torch_is_differentiable_and_matches_numpy() -> None:
    c = _case(5, m=2)
    W = torch.tensor(c["W"], requires_grad=True)
    alpha = torch.tensor(c["alpha"], dtype=torch.float64, requires_grad=True)
    kw = dict(W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"], sigma=c["sigma"], n=c["n"],
              L=c["L"], R=c["R"], steps=2)
    val = expected_loss(W, alpha=alpha, **kw)
    assert isinstance(val, torch.Tensor)
    assert float(val.detach()) == pytest.approx(expected_loss(c["W"], alpha=c["alpha"], **kw),
                                       rel=1e-12)
    assert torch.autograd.gradcheck(
        lambda w, a: expected_loss(w, alpha=a, **kw), (W, alpha), eps=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    ws = [torch.tensor(rng.standard_normal((3, 3)) / 2, requires_grad=True),
          torch.tensor(rng.standard_normal((2, 3)) / 2, requires_grad=True)]
    dk = dict(W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"], sigma=0.5, n=4, alpha=0.2)
    v = expected_deep_loss(ws, adapt="all", **dk)
    v.backward()
    assert ws[0].grad is not None and torch.isfinite(ws[0].grad).all()
    assert isinstance(expected_deep_loss([w.detach().numpy() for w in ws], adapt="all", **dk),
                      float)


def test_max_terms_refusal_is_one_line_with_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_terms`` bounds the distinct terms of the expectation: refused after the
    derivation with the count, or during it ("more than"); one line, naming the estimator."""
    c = _case(0, m=1)
    kw = dict(W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"], sigma=0.5, n=4, alpha=0.2)
    size = len(ee.loss_derivation("shallow", (3, False, False, None)))
    with pytest.raises(TermLimitError) as info:
        expected_loss(c["W"], steps=3, max_terms=size - 1, **kw)
    msg = str(info.value)
    assert "\n" not in msg and f"{size:,} terms" in msg and "monte_carlo_loss" in msg
    assert isinstance(info.value, InvalidArgumentError)
    assert np.isfinite(expected_loss(c["W"], steps=3, max_terms=size, **kw))
    ws = [np.eye(3)] * 2 + [np.ones((1, 3))]
    monkeypatch.setenv("MAML_DEPTH_CACHE", "off")  # derived here, not read from disk
    ee.clear_caches()
    with pytest.raises(TermLimitError, match=r"more than max_terms = 1,000 terms.*monte_carl"):
        expected_deep_loss(ws, adapt="all", max_terms=1000, **kw)


@pytest.mark.parametrize(("depth", "adapt", "steps", "factors"), [
    (3, (1, 2, 3), 1, 6), (5, (1, 2, 4, 5), 1, 8), (5, (1, 2, 3, 4, 5), 1, 10),
    (2, (1, 2), 2, 16)])
def test_reach_is_counted_in_factors(depth: int, adapt: tuple, steps: int,
                                     factors: int) -> None:
    """One step adapting r layers puts r gradients, each one factor Σ̂ or E, on each side
    of the loss: 2r factors; two layers for two steps (a gradient of the adapted net holds
    the first step's two) reach 16. Beyond MAX_FACTORS = 8: refused before enumerating."""
    words, got, raw = ee.structure_size("deep", (depth, adapt, steps, False))
    assert got == factors and words > 0 and raw > 0
    if factors > ee.MAX_FACTORS:
        c = _case(1, m=1)
        kw = dict(W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"], sigma=0.5, n=4,
                  alpha=0.2)
        ws = [np.eye(3)] * (depth - 1) + [np.ones((1, 3))]
        with pytest.raises(TermLimitError, match=rf"holds {factors} factors .*reaches 8; "
                                                 rf"{raw:,} raw .*monte_carlo_deep_loss"):
            expected_deep_loss(ws, adapt=adapt, steps=steps, **kw)


def test_bad_arguments_raise_package_errors() -> None:
    c = _case(0, m=1)
    kw = dict(W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"], sigma=0.5, n=4, alpha=0.2)
    with pytest.raises(InvalidArgumentError, match="steps"):
        expected_loss(c["W"], steps=0, **kw)
    with pytest.raises(ShapeError, match="unbatched"):
        expected_loss(np.stack([c["W"], c["W"]]), steps=2,
                      **{**kw, "W_bar": np.stack([c["W_bar"]] * 2)})
    with pytest.raises(InvalidArgumentError, match="adapt"):
        expected_deep_loss([np.eye(3), np.ones((1, 3))], adapt=5, **kw)


@pytest.mark.parametrize("steps", [2])
def test_k_step_preconditioner_ordering(steps: int) -> None:
    rng = np.random.default_rng(7)
    d = 3
    q = _rotation(rng, d)
    S = (q * np.array([0.4, 1.0, 2.5])) @ q.T
    La = _rotation(rng, d) @ np.diag([0.5, 0.2, 0.05]) @ _rotation(rng, d).T
    La = 0.5 * (La + La.T)
    La = La @ La.T
    sigma, n = 0.5, 6
    full = optimal_preconditioner(S, La, sigma, n, "full", steps=steps, restarts=2)
    diag = optimal_preconditioner(S, La, sigma, n, "diagonal", steps=steps, restarts=2)
    scal = optimal_preconditioner(S, La, sigma, n, "scalar", steps=steps)
    assert full.method == diag.method == scal.method == "numeric"
    assert full.loss <= diag.loss + 1e-12 <= scal.loss + 2e-12
    # the full optimum is symmetric PSD and beats the one-step optimum used k times
    P = np.asarray(full.P)
    assert np.allclose(P, P.T) and np.linalg.eigvalsh(P).min() > -1e-10
    one = optimal_preconditioner(S, La, sigma, n, "full").P
    assert full.loss <= float(k_step_loss(one, S, La, sigma, n, steps)) + 1e-12
    assert full.loss == pytest.approx(float(k_step_loss(P, S, La, sigma, n, steps)), rel=1e-12)
    # α_k* is the best scalar: lower than its neighbours and than the one-step α*
    a = scal.alpha
    assert a is not None
    for b in (a * 0.97, a * 1.03, optimal_preconditioner(S, La, sigma, n, "scalar").alpha):
        assert scal.loss <= float(k_step_loss(b * np.eye(d), S, La, sigma, n, steps)) + 1e-14


def test_disk_cache_round_trip(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A derivation written to the disk cache is read back (same value, bit for bit); a
    corrupt file is derived anew; ``MAML_DEPTH_CACHE=off`` writes nothing."""
    c = _case(2, m=2)
    kw = dict(W_bar=c["W_bar"], Sigma=c["Sigma"], Lam=c["Lam"], sigma=0.5, n=4, alpha=0.2)
    ws = [np.eye(3) + 0.1 * c["R"], c["L"] @ np.ones((2, 3)) / 3]
    monkeypatch.setenv("MAML_DEPTH_CACHE", str(tmp_path))
    monkeypatch.setattr(ee, "_DISK_MIN_SECONDS", 0.0)
    ee.clear_caches()
    v1 = expected_deep_loss(ws, adapt="all", **kw)
    files = list((tmp_path / "exact").glob("deep-*.pkl"))
    assert len(files) == 1
    ee.clear_caches()
    with monkeypatch.context() as mp:  # read from the file: deriving again would fail
        mp.setattr(ee, "expect", lambda *a, **k: pytest.fail("derived instead of loaded"))
        assert expected_deep_loss(ws, adapt="all", **kw) == v1
    files[0].write_bytes(b"not a pickle")
    ee.clear_caches()
    assert expected_deep_loss(ws, adapt="all", **kw) == v1
    off = tmp_path / "off"
    monkeypatch.setenv("MAML_DEPTH_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(off))
    ee.clear_caches()
    assert expected_deep_loss(ws, adapt="all", **kw) == v1
    assert not off.exists()
    ee.clear_caches()


def test_bad_memo_budget_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAML_DEPTH_STEIN_MEMO_MB", "lots")
    ee.clear_caches()
    try:
        with pytest.raises(InvalidArgumentError, match="MAML_DEPTH_STEIN_MEMO_MB"):
            ee._stein_engine()
    finally:
        monkeypatch.delenv("MAML_DEPTH_STEIN_MEMO_MB")
        ee.clear_caches()
