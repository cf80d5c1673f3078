"""Exact expected losses beyond one step: a Wick/Isserlis engine on matrix words and traces.

The adapted map after ``k`` inner steps of a (deep) linear network is a polynomial in the
task data — the support inputs ``X`` (``d × n``, columns ``N(0, Σ)``), the label noise ``N``
(``m × n``, entries ``N(0, σ²)``) and the task offset ``Z`` (``m × d``, rows ``N(0, Λ)``) —
through ``Σ̂ = XXᵀ/n`` and ``E = NXᵀ/n`` (docs/theory/exact-expectation.md#data). The
population query loss ``½ tr((W' − W_t) Σ (W' − W_t)ᵀ) + ½ m σ²`` is a sum of traces of
*words* (products of letters), each letter a fixed matrix or one of the Gaussian matrices
``X, N, Z`` (or a transpose). Its expectation is a finite Wick sum (eq. 4): every perfect
matching of the occurrences of each Gaussian matrix contributes the product of the traces of
the cycles it closes, ``E[Y_ia Y_jb] = U_ij V_ab`` gluing row ports with ``U`` and column
ports with ``V`` (``X``: Σ, I_n; ``N``: σ² I_m, I_n; ``Z``: I_m, Λ). Cycles made of
``n × n`` identities only give a factor ``n`` each, so every term is exact and rational in
``n``: ``n^{c − j}`` with ``c`` such cycles and ``j`` factors Σ̂, E (eq. 5). Grouping the
samples by set partitions instead gives the falling-factorial form
``n(n−1)…(n−b+1)/n^j`` (eq. 6), the same polynomial (``n^c = Σ_b S(c, b) n^{(b)}``);
:func:`expect` computes either (``mode``).

Three stages, the first two cached per *structure* (letters, steps, adapted layers — not
their values):

1. **Words** (:class:`MatPoly`): the error ``W' − W_t`` as an integer combination of words,
   built by running the update rule itself on words (equal words are collected, so
   ``k`` steps of ``W ← W − αLGR`` stay ``2(k + 1) + k`` words, eq. 7). The step size is
   folded into the Gaussians: ``α Σ̂`` and ``α E`` are ``Σ̂`` and ``E`` for inputs of
   covariance ``αΣ`` and noise of variance ``ασ²`` (eq. 8), so the words carry integer
   coefficients only.
2. **Pairings** (:func:`expect`): for every pair of words, the matchings of ``Z`` and
   ``N``; then each distinct product in ``X`` by the memoised Stein recursion of
   :mod:`maml_depth.theory.stein`; cycles canonicalised (rotation and reversal with
   transposition) and equal terms collected.
3. **Evaluation** (:class:`Derivation`): the distinct cycles' traces (float64 numpy, or
   torch — differentiable) and one weighted sum.

Every entry point refuses — with a one-line :class:`TermLimitError` (an
:class:`~maml_depth.errors.InvalidArgumentError`) naming ``monte_carlo_loss`` /
``monte_carlo_deep_loss`` — a structure beyond the reach (more than :data:`MAX_FACTORS`
factors ``Σ̂``, ``E`` in one trace product: counted before any enumeration) and an
expectation with more than ``max_terms`` distinct terms; it never samples. Slow derivations
are kept in a disk cache (docs/theory/exact-expectation.md#reach).

References: docs/theory/exact-expectation.md; Isserlis (1918); Arnold, Iqbal, Sha
(AISTATS 2021), §3.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import os
import pickle
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from maml_depth import _checks
from maml_depth._io import atomic_write_bytes
from maml_depth.errors import InvalidArgumentError
from maml_depth.theory.moments import set_partitions
from maml_depth.theory.stein import SteinRecursion, TooManyTerms

__all__ = [
    "Derivation",
    "MatPoly",
    "TermLimitError",
    "count_pairings",
    "deep_error_words",
    "expect",
    "loss_derivation",
    "shallow_error_words",
]

Word = tuple[str, ...]

#: Gaussian letters and the (row, column) dimensions of their ports
GAUSSIAN_DIMS: dict[str, tuple[str, str]] = {"X": ("d", "n"), "N": ("m", "n"), "Z": ("m", "d")}
#: covariance letters ``(U, V)`` of ``E[Y_ia Y_jb] = U_ij V_ab`` ("" = identity); N's
#: ``U = ασ² I_m`` is the scalar counted by the σ-power of a term
GAUSSIAN_COV: dict[str, tuple[str, str]] = {"X": ("Sa", ""), "N": ("", ""), "Z": ("", "Lam")}
#: letters that are symmetric matrices (their transpose is themselves)
SYMMETRIC = frozenset({"S", "Sa", "Lam"})
#: private switch of the broken-variant tests: drop the pairing of the first ``X`` with the
#: last one in every step of the Stein recursion (call :func:`clear_caches` after changing)
_DROP_LAST_X_PAIRING = False


class TermLimitError(InvalidArgumentError):
    """The exact expectation is beyond the engine's reach (:data:`MAX_FACTORS`) or has more
    terms than ``max_terms`` allows."""


# ---------------------------------------------------------------------------------------
# words
# ---------------------------------------------------------------------------------------
def tp(letter: str) -> str:
    """The transposed letter: ``A`` ↔ ``A'`` (symmetric letters are their own)."""
    if letter in SYMMETRIC:
        return letter
    return letter[:-1] if letter.endswith("'") else letter + "'"


def tp_word(w: Word) -> Word:
    """``(A_1 ⋯ A_r)ᵀ = A_rᵀ ⋯ A_1ᵀ``."""
    return tuple(tp(a) for a in reversed(w))


def base(letter: str) -> str:
    return letter[:-1] if letter.endswith("'") else letter


class MatPoly:
    """An integer combination of words ``Σ c_w w`` (a matrix-valued polynomial), with ``+``,
    ``−``, ``@`` (word concatenation) and ``.T``; equal words are collected."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict[Word, int] | None = None) -> None:
        self.terms: dict[Word, int] = {w: c for w, c in (terms or {}).items() if c != 0}

    @classmethod
    def letter(cls, *letters: str) -> MatPoly:
        """The word of ``letters`` (a product of matrix letters) with coefficient 1."""
        return cls({tuple(letters): 1})

    def __add__(self, other: MatPoly) -> MatPoly:
        out = dict(self.terms)
        for w, c in other.terms.items():
            out[w] = out.get(w, 0) + c
        return MatPoly(out)

    def __neg__(self) -> MatPoly:
        return MatPoly({w: -c for w, c in self.terms.items()})

    def __sub__(self, other: MatPoly) -> MatPoly:
        return self + (-other)

    def scale(self, c: int) -> MatPoly:
        """Every coefficient multiplied by the integer ``c``."""
        return MatPoly({w: c * v for w, v in self.terms.items()})

    def __matmul__(self, other: MatPoly) -> MatPoly:
        out: dict[Word, int] = {}
        for w1, c1 in self.terms.items():
            for w2, c2 in other.terms.items():
                out[w1 + w2] = out.get(w1 + w2, 0) + c1 * c2
        return MatPoly(out)

    @property
    def T(self) -> MatPoly:
        """The transpose: each word reversed with its letters transposed, ``(AB)ᵀ = BᵀAᵀ``."""
        return MatPoly({tp_word(w): c for w, c in self.terms.items()})

    def __len__(self) -> int:
        return len(self.terms)

    def __repr__(self) -> str:
        return " ".join(f"{c:+d}·{'·'.join(w) or 'I'}" for w, c in self.terms.items())


#: ``α Σ̂ = X Xᵀ / n`` and ``α E = N Xᵀ / n`` with the step size folded into X and N (eq. 8)
SHAT = MatPoly.letter("X", "X'")
ENOISE = MatPoly.letter("N", "X'")


def gradient(err: MatPoly, *, noise: bool = True) -> MatPoly:
    """``α G = α (W − W_t) Σ̂ − α E`` for the error word ``err = W − W_t`` (eq. 2)."""
    g = err @ SHAT
    return g - ENOISE if noise else g


def shallow_error_words(steps: int, *, has_L: bool, has_R: bool,
                        _omit_noise_step: int | None = None) -> MatPoly:
    """``W_k − W_t`` after ``k`` steps ``W ← W − α L G R`` from ``W_0 − W_t = D − Z`` (eq. 7).

    Letters: ``D = W − W̄``, ``Z``, ``L``, ``R`` (absent = identity) and the Gaussians of
    ``α Σ̂``, ``α E``. ``_omit_noise_step`` (private, for the broken-variant tests) drops
    the label noise from that step's gradient.
    """
    err = MatPoly.letter("D") - MatPoly.letter("Z")
    Lp = MatPoly.letter("L") if has_L else MatPoly({(): 1})
    Rp = MatPoly.letter("R") if has_R else MatPoly({(): 1})
    for s in range(1, steps + 1):
        err = err - Lp @ gradient(err, noise=s != _omit_noise_step) @ Rp
    return err


class _TooManyWords(Exception):
    """Internal: the word expansion passed its cap (the structure is out of reach)."""


def _prod(polys: Sequence[MatPoly], cap: int = 10**9) -> MatPoly:
    """``polys[-1] @ … @ polys[0]`` (layer 1 first in the list, applied first)."""
    out = polys[0]
    for p in polys[1:]:
        if len(p) * len(out) > cap:
            raise _TooManyWords
        out = p @ out
    return out


def deep_error_words(depth: int, adapt: tuple[int, ...], steps: int, *,
                     sequential: bool = False, cap: int = 10**9) -> MatPoly:
    """``W' − W_t`` of the deep linear net ``W_L ⋯ W_1`` adapting layers ``adapt`` (eq. 9).

    Each step ``W_j ← W_j − α A_jᵀ G B_jᵀ`` for ``j ∈ adapt``, ``A_j = W_L ⋯ W_{j+1}``,
    ``B_j = W_{j−1} ⋯ W_1``, all gradients at the same point (``sequential=True``, private:
    top layer first, each gradient at the partly updated net — the broken variant of the
    tests). Letters ``W1 … WL``, ``D = W_L ⋯ W_1 − W̄`` and ``Z``; the error keeps the form
    ``D − Z + U`` with ``U`` the change of the end-to-end map.
    """
    layers = [MatPoly.letter(f"W{j}") for j in range(1, depth + 1)]
    start = _prod(layers)
    base_err = MatPoly.letter("D") - MatPoly.letter("Z")
    cur = list(layers)
    for _ in range(steps):
        if sequential:
            for j in sorted(adapt, reverse=True):
                err = base_err + _prod(cur, cap) - start
                G = gradient(err)
                A = _prod(cur[j:], cap) if j < depth else MatPoly({(): 1})
                B = _prod(cur[: j - 1], cap) if j > 1 else MatPoly({(): 1})
                cur[j - 1] = cur[j - 1] - A.T @ G @ B.T
        else:
            err = base_err + _prod(cur, cap) - start
            G = gradient(err)
            new = list(cur)
            for j in adapt:
                A = _prod(cur[j:], cap) if j < depth else MatPoly({(): 1})
                B = _prod(cur[: j - 1], cap) if j > 1 else MatPoly({(): 1})
                new[j - 1] = cur[j - 1] - A.T @ G @ B.T
            cur = new
    return base_err + _prod(cur, cap) - start


# ---------------------------------------------------------------------------------------
# Wick pairings
# ---------------------------------------------------------------------------------------
def _double_factorial(k: int) -> int:
    """``(k − 1)!!`` matchings of ``k`` items (0 when ``k`` is odd)."""
    if k % 2:
        return 0
    return math.prod(range(k - 1, 0, -2)) if k else 1


def count_pairings(words: Iterable[Word]) -> int:
    """Number of Wick matchings of one trace product: ``Π_Y (#Y − 1)!!``."""
    cnt: Counter[str] = Counter()
    for w in words:
        for a in w:
            b = base(a)
            if b in GAUSSIAN_DIMS:
                cnt[b] += 1
    return math.prod(_double_factorial(c) for c in cnt.values())


def _matchings(items: list[int]) -> Iterator[list[tuple[int, int]]]:
    """All perfect matchings of ``items`` (first item paired with each other, recursively)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for k in range(len(rest)):
        pair = (first, rest[k])
        for m in _matchings(rest[:k] + rest[k + 1:]):
            yield [pair, *m]


def _canonical(cycle: list[str]) -> Word:
    """Canonical form of a trace word under rotation and reversal-with-transposition."""
    w = tuple(cycle)
    r = tp_word(w)
    k = len(w)
    return min(min(w[i:] + w[:i] for i in range(k)), min(r[i:] + r[:i] for i in range(k)))


def _falling(n: int, b: int) -> int:
    return math.prod(range(n - b + 1, n + 1))


Key = tuple[tuple[Word, ...], int]  # (sorted canonical cycles, power of ασ²)


def expect(
    products: Iterable[tuple[int, Sequence[Word]]],
    *,
    mode: Literal["wick", "direct", "partitions"] = "wick",
    n: int | None = None,
    max_terms: int | None = None,
    progress: str | None = None,
    _ff_as_power: bool = False,
) -> dict[Key, dict[int, Fraction | int]]:
    """Exact ``E[Σ c Π_i tr(w_i)]`` over the Gaussian letters (eq. 4–6).

    ``products``: ``(c, (w_1, w_2, …))`` — integer coefficient and trace words. Returns
    ``{(cycles, s): {p: coefficient}}``: the term ``coefficient · n^p · (ασ²)^s ·
    Π tr(cycle)`` (cycles canonical, ``("#m",)``/``("#d",)`` the traces of identities).

    ``mode="wick"`` (default, eq. 5 and 13): conditionally on ``X`` first — the matchings
    of ``Z`` and ``N`` — then, for each *distinct* remaining product of traces in ``X``
    (collected), the Wick sum over ``X`` by Stein's recursion (pair the first ``X`` with
    each other one; equal sub-products memoised). ``mode="direct"``: every joint matching
    of ``X, N, Z`` enumerated and traced (eq. 5). Both weight a matching by ``n^{c − j}``
    (``c`` cycles of ``n × n`` identities, ``j`` factors Σ̂, E) — a Laurent polynomial in
    ``n``. ``mode="partitions"`` (eq. 6; needs a numeric ``n``): set partitions of the
    ``j`` factors Σ̂, E into ``b`` distinct support samples with weight
    ``n(n−1)…(n−b+1)/n^j`` and the matchings of the sample vectors inside each block — an
    independent enumeration of the same number (``_ff_as_power``, private: the broken
    ``n^b`` weight of the tests). All three agree exactly (tested).

    ``max_terms`` (wick mode): stop with :class:`TermLimitError` as soon as the expectation
    has more distinct terms than this (the result, or one memoised sub-expectation of the
    recursion). ``progress``: a label for a progress bar on stderr over the distinct
    products in ``X`` (shown only when the derivation takes more than a few seconds).
    """
    out: dict[Key, dict[int, Fraction | int]] = {}

    def add(key: Key, p: int, c: Fraction | int) -> None:
        slot = out.setdefault(key, {})
        slot[p] = slot.get(p, 0) + c

    if mode == "wick":
        staged: dict[tuple[Word, ...], Counter[tuple[tuple[Word, ...], int, int]]] = {}
        for coef, words in products:
            if coef == 0:
                continue
            for (cyc, sp), p, w in _expect_one(tuple(words), "wick", None, False,
                                                active=("N", "Z")):
                xs = tuple(sorted(c for c in cyc if _has_x(c)))
                fs = tuple(c for c in cyc if not _has_x(c))
                staged.setdefault(xs, Counter())[(fs, sp, p)] += coef * int(w)
        engine = _stein_engine()
        engine.max_result = max_terms
        names: dict[int, Word] = {}
        # fewest X first: the small sub-expectations are memoised before the large ones
        order = sorted(staged, key=lambda xs: sum(map(_count_x, xs)))
        for xs in tqdm(order, desc=progress or "", disable=progress is None, delay=3,
                       leave=False, unit="product", file=sys.stderr):
            entries = staged[xs]
            try:
                res = engine.expect([engine.encode(c) for c in xs])
            except TooManyTerms as exc:
                raise TermLimitError(
                    f"the exact expectation has more than max_terms = {max_terms:,} terms "
                    f"(one sub-expectation alone has {exc.args[0]:,})") from None
            inner: dict[tuple[tuple[Word, ...], int], int] = {}
            for ids, p2, c2 in engine.terms(res):
                for i in ids:
                    if i not in names:
                        names[i] = _canonical(list(engine.decode(engine.cycles[i])))
                inner[(tuple(names[i] for i in ids), p2)] = c2
            for (fs, sp, p1), c1 in entries.items():
                if c1 == 0:
                    continue
                for (fs2, p2), c2 in inner.items():
                    add((tuple(sorted(fs + fs2)), sp), p1 + p2, c1 * c2)
            if max_terms is not None and len(out) > max_terms:
                raise TermLimitError(
                    f"the exact expectation has more than max_terms = {max_terms:,} terms")
    else:
        for coef, words in products:
            if coef == 0:
                continue
            for key, p, w in _expect_one(tuple(words), mode, n, _ff_as_power):
                add(key, p, coef * w)
    return {k: {p: c for p, c in v.items() if c != 0} for k, v in out.items()
            if any(c != 0 for c in v.values())}


_ENGINE: list[SteinRecursion] = []


def _stein_engine() -> SteinRecursion:
    """The memoised Stein recursion shared by every derivation (reset by
    :func:`clear_caches`)."""
    if not _ENGINE:
        memo_mb = _checks.finite_float(
            "MAML_DEPTH_STEIN_MEMO_MB (MiB)", os.environ.get("MAML_DEPTH_STEIN_MEMO_MB", "1000"),
            positive=True)
        _ENGINE.append(SteinRecursion(tp, drop_last=_DROP_LAST_X_PAIRING, memo_mb=memo_mb))
    return _ENGINE[0]


def _has_x(cycle: Word) -> bool:
    return any(a in ("X", "X'") for a in cycle)


def _count_x(cycle: Word) -> int:
    return sum(1 for a in cycle if a in ("X", "X'"))


def _expect_one(words: tuple[Word, ...], mode: str, n: int | None, ff_as_power: bool,
                active: tuple[str, ...] = ("N", "X", "Z"),
                ) -> Iterator[tuple[Key, int, Fraction]]:
    """Wick sum over the Gaussian letters in ``active`` (the others stay letters of the
    resulting cycles)."""
    fixed_cycles: list[Word] = []
    occ_base: list[str] = []     # base letter of each Gaussian occurrence
    occ_t: list[bool] = []       # transposed?
    # seg[port] = (other port, tokens read from port to other port)
    seg: dict[int, tuple[int, tuple[str, ...]]] = {}
    sample_of: list[int] = []    # support-sample factor (Σ̂ or E) of each X/N occurrence
    for w in words:
        pos = [i for i, a in enumerate(w) if base(a) in active]
        if not pos:
            fixed_cycles.append(w)
            continue
        ids = []
        for i in pos:
            ids.append(len(occ_base))
            occ_base.append(base(w[i]))
            occ_t.append(w[i].endswith("'"))
        r = len(pos)
        for k in range(r):
            i, inext = pos[k], pos[(k + 1) % r]
            toks = w[i + 1: inext] if inext > i else w[i + 1:] + w[:inext]
            a, b = 2 * ids[k] + 1, 2 * ids[(k + 1) % r]  # R port of k, L port of k+1
            seg[a] = (b, toks)
            seg[b] = (a, tp_word(toks))
    nocc = len(occ_base)
    sample_of = [-1] * nocc
    nsamples = 0
    for p in range(nocc):  # X X' and N X' adjacent through an n-port form one Σ̂ / E factor
        if occ_base[p] in ("X", "N") and sample_of[p] < 0:
            col = 2 * p + (0 if occ_t[p] else 1)
            q = seg[col][0] // 2
            if seg[col][1] == () and occ_base[q] == "X" and sample_of[q] < 0:
                sample_of[p] = sample_of[q] = nsamples
                nsamples += 1
    fixed_key = [_canonical(list(c)) for c in fixed_cycles]
    n_xn = sum(1 for b in occ_base if b in ("X", "N"))
    jpow = n_xn // 2
    if mode != "wick" and nsamples * 2 != n_xn:
        raise AssertionError("Gaussian X/N letters must appear as X X' (Σ̂) or N X' (E)")
    groups: dict[str, list[int]] = {}
    for p, letter in enumerate(occ_base):
        groups.setdefault(letter, []).append(p)
    if any(len(v) % 2 for v in groups.values()):
        return
    sigma_pow = len(groups.get("N", [])) // 2

    def port_dim(port: int) -> str:
        p = port // 2
        row, col = GAUSSIAN_DIMS[occ_base[p]]
        is_left = port % 2 == 0
        return row if is_left != occ_t[p] else col

    def cycles_of(pairs: list[tuple[int, int]], drop_n: bool
                  ) -> tuple[list[Word], int]:
        pe: dict[int, tuple[int, str]] = {}
        for p, q in pairs:
            U, V = GAUSSIAN_COV[occ_base[p]]
            rp = 2 * p + (1 if occ_t[p] else 0)
            rq = 2 * q + (1 if occ_t[q] else 0)
            cp, cq = rp ^ 1, rq ^ 1
            pe[rp], pe[rq] = (rq, U), (rp, U)
            pe[cp], pe[cq] = (cq, V), (cp, V)
        seen: set[int] = set()
        cyc: list[Word] = []
        ncyc = 0
        for start in pe:
            if start in seen:
                continue
            toks: list[str] = []
            port = start
            dim = port_dim(start)
            while True:
                seen.add(port)
                other, letter = pe[port]
                seen.add(other)
                if letter:
                    toks.append(letter)
                nxt, stoks = seg[other]
                toks.extend(stoks)
                port = nxt
                if port == start:
                    break
            if toks:
                cyc.append(_canonical(toks))
            elif dim == "n":
                ncyc += 1
            else:
                cyc.append(("#" + dim,))
        if drop_n:
            ncyc = 0
        return cyc, ncyc

    def key_of(cyc: list[Word]) -> Key:
        return (tuple(sorted(fixed_key + cyc)), sigma_pow)

    lists = [groups[b] for b in sorted(groups)]
    if mode in ("wick", "direct"):
        for combo in _product_matchings(lists):
            cyc, ncyc = cycles_of(combo, drop_n=False)
            yield key_of(cyc), ncyc - jpow, Fraction(1)
        return
    if n is None:
        raise InvalidArgumentError("expect(mode='partitions') needs a numeric n")
    zs = groups.get("Z", [])
    for part in set_partitions(list(range(nsamples))):
        b = len(part)
        weight = Fraction(n**b if ff_as_power else _falling(n, b), n**jpow)
        if weight == 0:
            continue
        block_lists: list[list[int]] = []
        ok = True
        for block in part:
            bs = set(block)
            for letter in ("X", "N"):
                members = [p for p in range(nocc) if occ_base[p] == letter
                           and sample_of[p] in bs]
                if len(members) % 2:
                    ok = False
                if members:
                    block_lists.append(members)
        if not ok:
            continue
        if zs:
            block_lists.append(zs)
        for combo in _product_matchings(block_lists):
            # each matching inside blocks: the n-ports are the block's sample index, fixed by
            # the partition (no factor n from the cycles)
            cyc, _ = cycles_of(combo, drop_n=True)
            yield key_of(cyc), 0, weight


def _product_matchings(lists: list[list[int]]) -> Iterator[list[tuple[int, int]]]:
    if not lists:
        yield []
        return
    for m in _matchings(lists[0]):
        for rest in _product_matchings(lists[1:]):
            yield m + rest


# ---------------------------------------------------------------------------------------
# the loss as trace products, derivation and evaluation
# ---------------------------------------------------------------------------------------
def loss_products(err: MatPoly) -> list[tuple[int, tuple[Word, ...]]]:
    """``tr(err · S · errᵀ)`` as trace products (``(u, v)`` and ``(v, u)`` merged, eq. 10)."""
    items = sorted(err.terms.items())
    out: list[tuple[int, tuple[Word, ...]]] = []
    for i, (u, cu) in enumerate(items):
        for v, cv in items[i:]:
            word = (*u, "S", *tp_word(v))
            if count_pairings([word]) == 0:
                continue
            out.append(((1 if u == v else 2) * cu * cv, (word,)))
    return out


class Derivation:
    """The cached outcome of stages 1–2: distinct cycles and weighted terms (eq. 11).

    ``value(letters, n, sigma2a)`` evaluates ``Σ coef · n^p · (ασ²)^s · Π tr(cycle)`` with
    ``letters`` mapping letter names to numpy arrays or torch tensors (transposes are taken
    here; ``Sa`` = αΣ). Exact in ``n``: the rational weights are summed per term first.
    """

    def __init__(self, terms: dict[Key, dict[int, Fraction | int]], pairings: int) -> None:
        cycles: dict[Word, int] = {}
        rows: list[tuple[tuple[int, ...], int, dict[int, Fraction | int]]] = []
        for (cyc, s), poly in terms.items():
            idx = tuple(cycles.setdefault(c, len(cycles)) for c in cyc)
            rows.append((idx, s, poly))
        self._setup(list(cycles), rows, pairings, 0.0)

    def _setup(self, cycles: list[Word],
               rows: list[tuple[tuple[int, ...], int, dict[int, Fraction | int]]],
               pairings: int, seconds: float) -> None:
        self.cycles: list[Word] = cycles
        self.rows = rows
        self.pairings = pairings
        #: seconds the derivation took (0 when read from the disk cache)
        self.seconds = seconds
        width = max((len(r[0]) for r in self.rows), default=0)
        pad = len(self.cycles)
        self.index = np.full((len(self.rows), max(width, 1)), pad, dtype=np.int64)
        for i, (idx, _, _) in enumerate(self.rows):
            self.index[i, : len(idx)] = idx
        self.spow = np.array([r[1] for r in self.rows], dtype=np.int64)
        self._weights: dict[int, np.ndarray] = {}
        self._plan: _TracePlan | None = None

    def state(self) -> tuple[Any, ...]:
        """Plain data (for the disk cache): cycles, rows, raw pairings, seconds."""
        return (self.cycles, self.rows, self.pairings, self.seconds)

    @classmethod
    def from_state(cls, state: tuple[Any, ...]) -> Derivation:
        """The derivation of :meth:`state`'s data."""
        cycles, rows, pairings, seconds = state
        der = cls.__new__(cls)
        der._setup(list(cycles), list(rows), int(pairings), float(seconds))
        return der

    def __len__(self) -> int:
        return len(self.rows)

    def weights(self, n: int) -> np.ndarray:
        """Each term's exact rational weight ``Σ_p c_p n^p`` at this ``n``, as float64
        (summed exactly in rationals, then rounded once; memoised per ``n``)."""
        if n not in self._weights:
            self._weights[n] = np.array([_exact_float(poly, n) for _, _, poly in self.rows])
        return self._weights[n]

    def value(self, letters: dict[str, Any], n: int, sigma2a: Any, *, m: int, d: int) -> Any:
        """``E ℒ`` of (4.12): ``½ Σ_terms coef·n^p·(ασ²)^s·Π tr(cycle)`` with the letters bound
        to matrices (numpy, or torch and then differentiable), ``sigma2a = ασ²``; the noise
        floor ``½mσ²`` is added by the caller.

        References: docs/theory/exact-expectation.md#eq-4.12."""
        torch_mode = any(isinstance(v, Tensor) for v in letters.values()) or isinstance(
            sigma2a, Tensor)
        like = next((v for v in letters.values() if isinstance(v, Tensor)), None)
        if like is None and isinstance(sigma2a, Tensor):
            like = sigma2a
        if self._plan is None:
            self._plan = _TracePlan(self.cycles)
        vals = _trace_values(self._plan, letters, m=m, d=d, like=like if torch_mode else None)
        w = self.weights(n)
        if torch_mode:
            assert like is not None
            vt = torch.cat([vals, torch.ones(1, dtype=like.dtype, device=like.device)])
            idx = torch.from_numpy(self.index).to(like.device)
            prods = vt[idx].prod(dim=1)
            sp_ = torch.as_tensor(sigma2a, dtype=like.dtype, device=like.device)
            spow = torch.from_numpy(self.spow).to(like.device)
            factor = sp_ ** spow.to(like.dtype) if self.spow.any() else 1.0
            return (prods * factor * torch.as_tensor(w, dtype=like.dtype,
                                                     device=like.device)).sum()
        ve = np.concatenate([vals, [1.0]])
        prods = ve[self.index].prod(axis=1)
        np_factor = float(sigma2a) ** self.spow
        return float(np.sum(prods * np_factor * w))


def _exact_float(poly: dict[int, Any], n: int) -> float:
    """``Σ_p c_p n^p`` summed exactly (integers, or rationals), rounded once to float64."""
    if all(isinstance(c, int) for c in poly.values()):
        low = min(poly)
        num = sum(c * n ** (p - low) for p, c in poly.items())
        return float(num * n**low) if low >= 0 else num / n ** (-low)
    return float(sum((c * Fraction(n) ** p for p, c in poly.items()), Fraction(0)))


class _TracePlan:
    """The prefix trie of a derivation's cycles, level by level, for batched evaluation.

    Every cycle ``w`` is a node; node ``w[:ℓ]`` at level ℓ is ``node(w[:ℓ−1]) @ letter(w[ℓ−1])``.
    Level ``ℓ`` holds ``parent`` (index into level ℓ − 1; level 1: none) and ``letter`` (index
    into :attr:`tokens`); a cycle is ``(level, index)`` (``#m``/``#d``: level 0).
    """

    def __init__(self, cycles: list[Word]) -> None:
        self.tokens: list[str] = []
        tok: dict[str, int] = {}
        nodes: list[dict[Word, int]] = [{}]
        self.parent: list[np.ndarray] = []
        self.letter: list[np.ndarray] = []
        par: list[list[int]] = []
        let: list[list[int]] = []

        def node(w: Word) -> int:
            lvl = len(w)
            while len(nodes) <= lvl:
                nodes.append({})
                par.append([])
                let.append([])
            got = nodes[lvl].get(w)
            if got is not None:
                return got
            p = node(w[:-1]) if lvl > 1 else -1
            t = tok.setdefault(w[-1], len(tok))
            if t == len(self.tokens):
                self.tokens.append(w[-1])
            i = len(nodes[lvl])
            nodes[lvl][w] = i
            par[lvl - 1].append(p)
            let[lvl - 1].append(t)
            return i

        self.where: list[tuple[int, int]] = []
        for c in cycles:
            if c in (("#m",), ("#d",)):
                self.where.append((0, 0 if c == ("#m",) else 1))
            else:
                self.where.append((len(c), node(c)))
        self.parent = [np.array(x, dtype=np.int64) for x in par]
        self.letter = [np.array(x, dtype=np.int64) for x in let]
        self.level = np.array([lv for lv, _ in self.where], dtype=np.int64)
        self.index = np.array([i for _, i in self.where], dtype=np.int64)


def _trace_values(plan: _TracePlan, letters: dict[str, Any], *, m: int, d: int,
                  like: Tensor | None) -> Any:
    """``tr`` of each cycle word: the trie's prefixes multiplied level by level in batches,
    every letter zero-padded to the largest dimension (padding changes no product's trace)."""
    mats = []
    for t in plan.tokens:
        b = base(t)
        if b not in letters:
            raise KeyError(f"no value for letter {b!r}")
        a = letters[b]
        if t.endswith("'"):
            a = a.transpose(-1, -2) if isinstance(a, Tensor) else a.T
        mats.append(a)
    size = max([int(x.shape[-1]) for x in mats] + [int(x.shape[-2]) for x in mats] + [1])
    torch_mode = like is not None
    if torch_mode:
        assert like is not None
        stack = torch.stack([torch.nn.functional.pad(
            (x if isinstance(x, Tensor) else torch.as_tensor(x)).to(like.dtype).to(like.device),
            (0, size - int(x.shape[-1]), 0, size - int(x.shape[-2]))) for x in mats])
    else:
        stack_np = np.zeros((len(mats), size, size))
        for i, x in enumerate(mats):
            stack_np[i, : x.shape[0], : x.shape[1]] = x
    traces: list[Any] = []
    prev: Any = None
    cur: Any
    flat: Any
    for lvl, (par, let) in enumerate(zip(plan.parent, plan.letter, strict=True), start=1):
        if torch_mode:
            cur = stack[torch.from_numpy(let).to(stack.device)]
            if lvl > 1:
                cur = prev[torch.from_numpy(par).to(stack.device)] @ cur
            traces.append(torch.diagonal(cur, dim1=-2, dim2=-1).sum(-1))
        else:
            cur = stack_np[let]
            if lvl > 1:
                cur = np.matmul(prev[par], cur)
            traces.append(np.einsum("nii->n", cur))
        prev = cur
    if torch_mode:
        assert like is not None
        flat = torch.cat([torch.tensor([float(m), float(d)], dtype=like.dtype,
                                       device=like.device), *traces])
    else:
        flat = np.concatenate([[float(m), float(d)], *traces])
    offsets = np.concatenate([[0, 2], 2 + np.cumsum([len(x) for x in plan.letter])])
    pos = np.where(plan.level == 0, plan.index, offsets[plan.level] + plan.index)
    if torch_mode:
        return flat[torch.from_numpy(pos).to(flat.device)]
    return flat[pos]


def clear_caches() -> None:
    """Forget every cached derivation held in memory (after toggling a private switch in
    the tests); the disk cache is keyed by the switches and stays valid."""
    _ENGINE.clear()
    _DERIVATIONS.clear()
    structure_size.cache_clear()


#: the reach of the engine (docs/theory/exact-expectation.md#reach): the most factors
#: ``Σ̂`` and ``E`` one trace product of the loss may hold. Eight factors (one step of four
#: adapted layers) derive in minutes; ten or more are refused whatever ``max_terms`` is.
MAX_FACTORS = 8
#: the most error words a structure may expand into before it is refused unexpanded
MAX_WORDS = 20_000
#: derivations slower than this (seconds) are kept in the disk cache
_DISK_MIN_SECONDS = 2.0

_DERIVATIONS: dict[tuple[str, tuple[Any, ...]], Derivation] = {}


def _error_words(kind: str, spec: tuple[Any, ...]) -> MatPoly | None:
    """The error words of a structure, or ``None`` when they pass :data:`MAX_WORDS`."""
    if kind == "shallow":
        steps, has_L, has_R, omit = spec
        err = shallow_error_words(steps, has_L=has_L, has_R=has_R, _omit_noise_step=omit)
        return err if len(err) <= MAX_WORDS else None
    depth, adapt, steps, sequential = spec
    try:
        err = deep_error_words(depth, adapt, steps, sequential=sequential, cap=MAX_WORDS)
    except _TooManyWords:
        return None
    return err if len(err) <= MAX_WORDS else None


def _labels(kind: str) -> tuple[str, str]:
    if kind == "shallow":
        return "expected_loss", "maml_depth.numerics.monte_carlo_loss"
    return "expected_deep_loss", "maml_depth.numerics.monte_carlo_deep_loss"


def _factors(word: Word) -> int:
    """Factors ``Σ̂ = XXᵀ/n`` and ``E = NXᵀ/n`` in a word: ``(#X + #N) / 2``."""
    return sum(1 for a in word if base(a) in ("X", "N")) // 2


@functools.lru_cache(maxsize=256)
def structure_size(kind: Literal["shallow", "deep"], spec: tuple[Any, ...]
                   ) -> tuple[int, int, int]:
    """``(words, factors, pairings)`` of a structure, known before any enumeration: the
    number of error words, the most factors ``Σ̂``, ``E`` in one trace product of the loss
    (the engine's reach is :data:`MAX_FACTORS`), and the raw Wick pairings
    ``Σ Π_Y (#Y − 1)!!`` of all trace products (a measure of the problem: the staged engine
    enumerates far fewer). ``(-1, -1, -1)`` when the words pass :data:`MAX_WORDS`."""
    err = _error_words(kind, spec)
    if err is None:
        return -1, -1, -1
    items = list(err.terms)
    factors = 2 * max((_factors(w) for w in items), default=0)
    # the pairings of tr(u S vᵀ) depend on the Gaussian letter counts of u and v only:
    # count the unordered pairs u ≤ v by those counts
    sig = Counter(tuple(sum(1 for a in w if base(a) == y) for y in GAUSSIAN_DIMS)
                  for w in items)
    keys = sorted(sig)
    total = 0
    for i, a in enumerate(keys):
        for b in keys[i:]:
            pairs = sig[a] * (sig[a] + 1) // 2 if a == b else sig[a] * sig[b]
            total += pairs * math.prod(_double_factorial(x + y) for x, y in zip(a, b, strict=True))
    return len(items), factors, total


def pairing_count(kind: Literal["shallow", "deep"], spec: tuple[Any, ...]) -> int:
    """The raw Wick pairings of a structure's loss (``-1`` beyond :data:`MAX_WORDS`)."""
    return structure_size(kind, spec)[2]


def _cache_dir() -> Path | None:
    """Where slow derivations are kept: ``$MAML_DEPTH_CACHE/exact`` (``off`` disables),
    else ``$XDG_CACHE_HOME/maml-depth/exact`` or ``~/.cache/maml-depth/exact``."""
    env = os.environ.get("MAML_DEPTH_CACHE")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "no", "false", "none"):
            return None
        return Path(env).expanduser() / "exact"
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "maml-depth" / "exact"


@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    """A hash of the deriving code's source (the Stein module and the functions of this one
    that build words and pair them): a changed derivation never reads an old file, while a
    change to the evaluation keeps the cache."""
    h = hashlib.sha256(Path(__file__).with_name("stein.py").read_bytes())
    for obj in (tp, MatPoly, gradient, shallow_error_words, deep_error_words, _canonical,
                expect, _expect_one, _stein_engine, loss_products, _error_words, Derivation):
        h.update(inspect.getsource(obj).encode())
    return h.hexdigest()[:16]


def _cache_file(kind: str, spec: tuple[Any, ...]) -> Path | None:
    folder = _cache_dir()
    if folder is None:
        return None
    key = repr((kind, spec, _DROP_LAST_X_PAIRING, _fingerprint()))
    return folder / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pkl"


def _load(kind: str, spec: tuple[Any, ...]) -> Derivation | None:
    path = _cache_file(kind, spec)
    if path is None or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            state = pickle.load(fh)
        return Derivation.from_state(state)
    except Exception:  # an unreadable or stale cache file is derived anew
        return None


def _store(kind: str, spec: tuple[Any, ...], der: Derivation) -> None:
    path = _cache_file(kind, spec)
    if path is None:
        return
    try:
        atomic_write_bytes(path, pickle.dumps(der.state(), protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:  # a read-only home loses only the cache
        pass


def loss_derivation(kind: Literal["shallow", "deep"], spec: tuple[Any, ...], *,
                    max_terms: int = 10**6) -> Derivation:
    """The derivation of ``E tr((W' − W_t) Σ (W' − W_t)ᵀ)`` for a structure (cached in
    memory, and on disk when it took more than a few seconds; see :func:`_cache_dir`).

    ``kind="shallow"``: ``spec = (steps, has_L, has_R, omit_noise_step)``;
    ``kind="deep"``: ``spec = (depth, adapt, steps, sequential)``.

    Refusals (:class:`TermLimitError`, one line naming the Monte Carlo estimator): before
    any enumeration, a structure beyond the reach — more than :data:`MAX_WORDS` error
    words, or more than :data:`MAX_FACTORS` factors ``Σ̂``, ``E`` in one trace product;
    during or after the derivation, an expectation with more than ``max_terms`` distinct
    terms (products of traces; the evaluation's cost is proportional to them).

    References: docs/theory/exact-expectation.md#reach.
    """
    what, mc = _labels(kind)
    words, factors, raw = structure_size(kind, spec)
    if words < 0:
        raise TermLimitError(
            f"{what}: beyond the exact engine's reach: the adapted map alone expands into "
            f"more than {MAX_WORDS:,} words; estimate it with {mc}")
    if factors > MAX_FACTORS:
        raise TermLimitError(
            f"{what}: beyond the exact engine's reach: one trace product of the loss holds "
            f"{factors} factors Σ̂, E (the engine reaches {MAX_FACTORS}; {raw:,} raw Wick "
            f"pairings); estimate it with {mc}")
    key = (kind, spec)
    der = _DERIVATIONS.get(key) or _load(kind, spec)
    if der is None:
        err = _error_words(kind, spec)
        assert err is not None
        t0 = time.perf_counter()
        try:
            terms = expect(loss_products(err), max_terms=max_terms,
                           progress=f"deriving {what} {spec}")
        except TermLimitError as exc:
            raise TermLimitError(f"{what}: {exc}; raise max_terms or estimate it with {mc}"
                                 ) from None
        der = Derivation(terms, raw)
        der.seconds = time.perf_counter() - t0
        if der.seconds > _DISK_MIN_SECONDS:
            _store(kind, spec, der)
    _DERIVATIONS[key] = der
    while len(_DERIVATIONS) > 64:
        _DERIVATIONS.pop(next(iter(_DERIVATIONS)))
    if len(der) > max_terms:
        raise TermLimitError(
            f"{what}: the exact expectation has {len(der):,} terms, more than max_terms = "
            f"{max_terms:,}; raise max_terms or estimate it with {mc}")
    return der


def evaluate_loss(der: Derivation, letters: dict[str, Any], *, n: int, sigma: Any, alpha: Any,
                  m: int, d: int) -> Any:
    """``½ E tr((W' − W_t) Σ (W' − W_t)ᵀ) + ½ m σ²`` from a derivation (eq. 10–11)."""
    sigma2a = alpha * sigma**2
    val = der.value(letters, n, sigma2a, m=m, d=d)
    return val / 2 + m * sigma**2 / 2



def shallow_value(D: Any, Sigma: Any, Lam: Any, sigma: float, n: int, alpha: Any,
                  L: Any | None, R: Any | None, *, steps: int, max_terms: int,
                  _omit_noise_step: int | None = None) -> Any:
    """``E ℒ_k`` of ``k`` steps ``W ← W − α L G R`` (validated inputs; eq. 7, 10–11).

    ``D = W − W̄`` ``(m, d)``; all matrices of one backend (numpy or torch).
    """
    der = loss_derivation("shallow", (steps, L is not None, R is not None, _omit_noise_step),
                          max_terms=max_terms)
    m, d = int(D.shape[-2]), int(D.shape[-1])
    letters = {"D": D, "S": Sigma, "Sa": alpha * Sigma, "Lam": Lam}
    if L is not None:
        letters["L"] = L
    if R is not None:
        letters["R"] = R
    return evaluate_loss(der, letters, n=n, sigma=sigma, alpha=alpha, m=m, d=d)


def deep_value(weights: Sequence[Any], D: Any, Sigma: Any, Lam: Any, sigma: float, n: int,
               alpha: Any, *, adapt: tuple[int, ...], steps: int, max_terms: int,
               _sequential: bool = False) -> Any:
    """``E ℒ_k`` of a deep linear net ``[W_1, …, W_L]`` adapting ``adapt`` (eq. 9–11)."""
    depth = len(weights)
    der = loss_derivation("deep", (depth, tuple(adapt), steps, _sequential),
                          max_terms=max_terms)
    m, d = int(D.shape[-2]), int(D.shape[-1])
    letters = {"D": D, "S": Sigma, "Sa": alpha * Sigma, "Lam": Lam}
    for j, w in enumerate(weights, start=1):
        letters[f"W{j}"] = w
    return evaluate_loss(der, letters, n=n, sigma=sigma, alpha=alpha, m=m, d=d)
