"""Exact k-step and several-layer expected losses against an independent Monte Carlo, and
broken variants of the engine rejected by the same samples.

The Monte Carlo here is written from the definitions only (no theory/ or numerics/ code):
tasks ``W_t = W̄ + Z``, support inputs ``x ~ N(0, Σ)``, labels ``y = W_t x + ε``,
``G = (WX − Y)Xᵀ/n``, the update rules themselves, and the exact population query loss
``½ tr((W' − W_t)Σ(W' − W_t)ᵀ) + ½ m σ²`` of each sampled task.

Statistical criterion: each exact value ``v`` is accepted when ``|v − mean| ≤ Z_FW · SE``
with ``SE`` the sample standard error over ``T`` tasks. ``Z_FW`` is a Bonferroni bound for
the family of all ``FAMILY`` acceptance checks in this file (fast and slow): family-wise
confidence 99.9 %, i.e. each check at two-sided level ``1 − 0.001/FAMILY``. A broken variant
is *rejected* when ``|v_broken − mean| > Z_FW · SE`` on the very same samples. ``T`` is
2·10⁵ tasks (3·10⁵ for k = 3); seeds are fixed.
"""

from __future__ import annotations

import zlib
from statistics import NormalDist

import numpy as np
import pytest
import torch

from maml_depth.theory import exact_expectation as ee
from maml_depth.theory import expected_deep_loss, expected_loss
from maml_depth.theory.expected_loss import _exact_steps

#: acceptance checks in this file: 8 fast cases + 2 slow ones
FAMILY = 11
FW_LEVEL = 0.999
Z_FW = NormalDist().inv_cdf(1 - (1 - FW_LEVEL) / (2 * FAMILY))


def _spd(rng: np.random.Generator, d: int, scale: float) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return scale * (q * np.geomspace(0.5, 1.5, d)) @ q.T


def _family(seed: int, d: int, m: int) -> dict:
    rng = np.random.default_rng(seed)
    return dict(Sigma=_spd(rng, d, 1.0), Lam=_spd(rng, d, 0.4), W_bar=rng.standard_normal((m, d))
                * 0.5, sigma=1.0, rng=rng)


def _tasks(f: dict, T: int, n: int, m: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    d = f["Sigma"].shape[0]
    cS = torch.from_numpy(np.linalg.cholesky(f["Sigma"]))
    ev, U = np.linalg.eigh(f["Lam"])
    sL = torch.from_numpy(U * np.sqrt(np.clip(ev, 0, None)))
    X = torch.randn(T, n, d, generator=g, dtype=torch.float64) @ cS.T
    Z = torch.randn(T, m, d, generator=g, dtype=torch.float64) @ sL.T
    Wt = torch.from_numpy(f["W_bar"]) + Z
    Y = X @ Wt.transpose(1, 2) + f["sigma"] * torch.randn(T, n, m, generator=g,
                                                         dtype=torch.float64)
    return X, Y, Wt


def _grad(W: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    n = X.shape[1]
    return (X @ W.transpose(-1, -2) - Y).transpose(1, 2) @ X / n


def _losses(Wp: torch.Tensor, Wt: torch.Tensor, f: dict) -> torch.Tensor:
    E = Wp - Wt
    S = torch.from_numpy(f["Sigma"])
    m = Wt.shape[1]
    return 0.5 * torch.einsum("tmi,ij,tmj->t", E, S, E) + 0.5 * m * f["sigma"] ** 2


def _mc_shallow(f: dict, W: np.ndarray, L: np.ndarray | None, R: np.ndarray | None,
                alpha: float, steps: int, n: int, T: int, seed: int) -> tuple[float, float]:
    out = []
    for c in range(0, T, 50_000):
        X, Y, Wt = _tasks(f, min(50_000, T - c), n, W.shape[0], seed + c)
        Wc = torch.from_numpy(W).expand(X.shape[0], *W.shape)
        Lt = None if L is None else torch.from_numpy(L)
        Rt = None if R is None else torch.from_numpy(R)
        for _ in range(steps):
            G = _grad(Wc, X, Y)
            step = G if Lt is None else Lt @ G
            step = step if Rt is None else step @ Rt
            Wc = Wc - alpha * step
        out.append(_losses(Wc, Wt, f))
    v = torch.cat(out)
    return float(v.mean()), float(v.std() / np.sqrt(len(v)))


def _mc_deep(f: dict, ws: list[np.ndarray], adapt: tuple[int, ...], alpha: float, n: int,
             T: int, seed: int) -> tuple[float, float]:
    """One step, every adapted layer's gradient A_jᵀ G B_jᵀ at the same point."""
    out = []
    depth = len(ws)
    for c in range(0, T, 50_000):
        X, Y, Wt = _tasks(f, min(50_000, T - c), n, ws[-1].shape[0], seed + c)
        cur = [torch.from_numpy(w) for w in ws]
        W = cur[0]
        for w in cur[1:]:
            W = w @ W
        G = _grad(W.expand(X.shape[0], *W.shape), X, Y)
        new = []
        for j in range(1, depth + 1):
            if j not in adapt:
                new.append(cur[j - 1])
                continue
            A = _chain(cur[j:], ws[j - 1].shape[0])
            B = _chain(cur[: j - 1], ws[0].shape[1])
            new.append(cur[j - 1] - alpha * A.T @ G @ B.T)
        Wp = new[0]
        for w in new[1:]:
            Wp = w @ Wp
        out.append(_losses(Wp, Wt, f))
    v = torch.cat(out)
    return float(v.mean()), float(v.std() / np.sqrt(len(v)))


def _chain(ws: list[torch.Tensor], size: int) -> torch.Tensor:
    """``ws[-1] ⋯ ws[0]`` (identity of ``size`` when empty)."""
    out = torch.eye(size, dtype=torch.float64)
    for w in ws:
        out = w @ out
    return out


def _accept(v: float, mean: float, se: float) -> bool:
    return abs(v - mean) <= Z_FW * se


def _msg(what: str, v: float, mean: float, se: float, T: int) -> str:
    return (f"{what}: exact {v:.6g} vs Monte Carlo {mean:.6g} ± {se:.2g} "
            f"(z = {(v - mean) / se:+.2f}, bound {Z_FW:.2f}: Bonferroni over {FAMILY} checks, "
            f"family-wise {FW_LEVEL:.1%}, {T} tasks)")


SHALLOW_CASES = [  # (name, steps, m, has L, has R)
    ("k2-m1-R", 2, 1, False, True),
    ("k2-m2-LR", 2, 2, True, True),
    ("k3-m1-R", 3, 1, False, True),
    ("k3-m2-LR", 3, 2, True, True),
]


@pytest.mark.parametrize("case", SHALLOW_CASES, ids=[c[0] for c in SHALLOW_CASES])
def test_k_steps_match_monte_carlo(case: tuple) -> None:
    name, steps, m, has_L, has_R = case
    d, n, alpha = 3, 8, 0.3
    f = _family(zlib.crc32(name.encode()) % 1000, d, m)
    rng = f["rng"]
    W = f["W_bar"] + 0.4 * rng.standard_normal((m, d))
    L = np.eye(m) + 0.2 * rng.standard_normal((m, m)) if has_L else None
    R = np.eye(d) + 0.2 * rng.standard_normal((d, d)) if has_R else None
    T = 300_000 if steps == 3 else 200_000
    mean, se = _mc_shallow(f, W, L, R, alpha, steps, n, T, seed=1)
    kw = dict(W_bar=f["W_bar"], Sigma=f["Sigma"], Lam=f["Lam"], sigma=f["sigma"], n=n,
              alpha=alpha, L=L, R=R)
    v = expected_loss(W, steps=steps, **kw)
    assert _accept(v, mean, se), _msg(f"{name} exact", v, mean, se, T)
    # broken: the label noise of the second step omitted
    args = (W, f["W_bar"], f["Sigma"], f["Lam"], f["sigma"], n, alpha, L, R)
    bad = _exact_steps(*args, steps=steps, max_terms=10**6, _omit_noise_step=2)
    assert not _accept(bad, mean, se), _msg(f"{name} noise of step 2 omitted", bad, mean, se, T)
    if steps == 2:
        # broken: n^b in place of the falling factorial n(n−1)…(n−b+1)
        err = ee.shallow_error_words(steps, has_L=has_L, has_R=has_R)
        prods = ee.loss_products(err)
        der = ee.Derivation(ee.expect(prods, mode="partitions", n=n, _ff_as_power=True), 0)
        letters = {"D": W - f["W_bar"], "S": f["Sigma"], "Sa": alpha * f["Sigma"],
                   "Lam": f["Lam"], "L": L, "R": R}
        letters = {k: x for k, x in letters.items() if x is not None}
        bad_ff = ee.evaluate_loss(der, letters, n=n, sigma=f["sigma"], alpha=alpha, m=m, d=d)
        assert not _accept(bad_ff, mean, se), _msg(f"{name} n^b weights", bad_ff, mean, se, T)
        good = ee.Derivation(ee.expect(prods, mode="partitions", n=n), 0)
        v_part = ee.evaluate_loss(good, letters, n=n, sigma=f["sigma"], alpha=alpha, m=m, d=d)
        assert v_part == pytest.approx(v, rel=1e-12)


DEEP_CASES = [  # (name, widths d_0..d_L, adapt, steps)
    ("top-of-2-k2-m2", (3, 4, 2), (2,), 2),
    ("layers-1,3-of-3-m1", (3, 3, 4, 1), (1, 3), 1),
    ("all-of-2-m2", (3, 4, 2), (1, 2), 1),
    ("all-of-2-m1", (2, 3, 1), (1, 2), 1),
]


def _deep_setup(name: str, widths: tuple[int, ...]) -> tuple[dict, list[np.ndarray]]:
    f = _family(zlib.crc32(name.encode()) % 1000 + 7, widths[0], widths[-1])
    rng = f["rng"]
    ws = [rng.standard_normal((widths[j + 1], widths[j])) / np.sqrt(widths[j])
          for j in range(len(widths) - 1)]
    return f, ws


def _mc_deep_k(f: dict, ws: list[np.ndarray], adapt: tuple[int, ...], alpha: float,
               steps: int, n: int, T: int, seed: int) -> tuple[float, float]:
    if steps == 1:
        return _mc_deep(f, ws, adapt, alpha, n, T, seed)
    # one adapted layer j, k steps: A_j, B_j fixed, W ← W − α (A_jA_jᵀ) G (B_jᵀB_j)
    (j,) = adapt
    t = [torch.from_numpy(w) for w in ws]
    A = _chain(t[j:], ws[j - 1].shape[0]).numpy()
    B = _chain(t[: j - 1], ws[0].shape[1]).numpy()
    W = _chain(t, ws[0].shape[1]).numpy()
    return _mc_shallow(f, W, A @ A.T, B.T @ B, alpha, steps, n, T, seed)


@pytest.mark.parametrize("case", DEEP_CASES, ids=[c[0] for c in DEEP_CASES])
def test_deep_layers_match_monte_carlo(case: tuple) -> None:
    name, widths, adapt, steps = case
    n, alpha, T = 4, 0.3, 200_000
    f, ws = _deep_setup(name, widths)
    mean, se = _mc_deep_k(f, ws, adapt, alpha, steps, n, T, seed=3)
    kw = dict(W_bar=f["W_bar"], Sigma=f["Sigma"], Lam=f["Lam"], sigma=f["sigma"], n=n,
              alpha=alpha)
    v = expected_deep_loss(ws, adapt=adapt, steps=steps, **kw)
    assert _accept(v, mean, se), _msg(f"{name} exact", v, mean, se, T)
    if len(adapt) > 1:
        # the words path, with a pairing class dropped, is rejected by the same samples
        ee._DROP_LAST_X_PAIRING = True
        ee.clear_caches()
        try:
            bad = expected_deep_loss(ws, adapt=adapt, steps=steps, **kw)
        finally:
            ee._DROP_LAST_X_PAIRING = False
            ee.clear_caches()
        assert not _accept(bad, mean, se), _msg(f"{name} pairing dropped", bad, mean, se, T)
        assert expected_deep_loss(ws, adapt=adapt, steps=steps, **kw) == pytest.approx(v)


MANY_LAYER_CASES = [  # (name, widths, n, Monte Carlo seed)
    # depth 3, all three layers, one step: six factors Σ̂, E (724 019 raw pairings, ~2 s)
    ("all-of-3-m1", (3, 3, 3, 1), 4, 5),
    # depth 4, all four layers, one step: eight factors, the engine's reach (1 292 557 733
    # raw pairings; minutes to derive, then the disk cache); m = 2: matrix output words
    ("all-of-4-m2", (2, 3, 2, 3, 2), 3, 9),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", MANY_LAYER_CASES, ids=[c[0] for c in MANY_LAYER_CASES])
def test_all_adapted_layers_match_monte_carlo(case: tuple) -> None:
    name, widths, n, seed = case
    adapt = tuple(range(1, len(widths)))
    alpha, T = 0.3, 200_000
    f, ws = _deep_setup(name, widths)
    mean, se = _mc_deep(f, ws, adapt, alpha, n, T, seed=seed)
    v = expected_deep_loss(ws, adapt=adapt, W_bar=f["W_bar"], Sigma=f["Sigma"], Lam=f["Lam"],
                           sigma=f["sigma"], n=n, alpha=alpha)
    assert _accept(v, mean, se), _msg(f"{name} exact", v, mean, se, T)


@pytest.mark.slow
def test_sequential_layer_gradients_rejected() -> None:
    """Both layers of a depth-2 net adapted: gradients taken one after the other (top
    first, the second at the partly updated net) instead of at the same point. The exact
    value of that broken rule (139 564 895 raw pairings, ~35 s staged) is rejected by the samples
    that accept the same-point value."""
    name, widths, adapt = "all-of-2-m1", (2, 3, 1), (1, 2)
    n, alpha, T = 4, 0.3, 200_000
    f, ws = _deep_setup(name, widths)
    mean, se = _mc_deep(f, ws, adapt, alpha, n, T, seed=3)
    kw = dict(W_bar=f["W_bar"], Sigma=f["Sigma"], Lam=f["Lam"], sigma=f["sigma"], n=n,
              alpha=alpha)
    v = expected_deep_loss(ws, adapt=adapt, **kw)
    assert _accept(v, mean, se), _msg(f"{name} exact", v, mean, se, T)
    bad = expected_deep_loss(ws, adapt=adapt, _sequential=True, max_terms=10**9, **kw)
    assert not _accept(bad, mean, se), _msg(f"{name} sequential", bad, mean, se, T)
