"""Stein's recursion over the support inputs ``X``: the Wishart stage of the exact engine.

After the task offset ``Z`` and the label noise ``N`` are paired (stage 1 of
:func:`maml_depth.theory.exact_expectation.expect`), what is left is a product of traces
whose only Gaussian letter is ``X`` (``d × n``, columns ``N(0, αΣ)``; every ``X`` sits next
to an ``Xᵀ`` through an ``n``-index, i.e. the factors are ``αΣ̂ = XXᵀ/n``). Its expectation
is computed by Stein's identity ``E[X_ia f(X)] = Σ_j (αΣ)_ij E[∂f/∂X_ja]``: the first ``X``
is contracted with each other ``X`` (one Wick pair), the contraction is done on the words
themselves, and the (canonical) remainder is recursed on with memoisation
(docs/theory/exact-expectation.md#eq-13).

The contraction rules (``u = x·U`` rotated so that the contracted letter comes first,
``E[X_ia X_jb] = (αΣ)_ij δ_ab``, ``Sa = αΣ``) — for two different traces
``tr(x U) tr(y V)``::

    X , X  → tr(U Sa Vᵀ)        X , Xᵀ → tr(U Sa V)
    Xᵀ, X  → tr(V Sa U)         Xᵀ, Xᵀ → tr(Uᵀ Sa V)

and for one trace ``tr(x U₁ y U₂)``::

    X , X  → tr(U₁ Sa U₂ᵀ)      X , Xᵀ → tr(U₁) tr(Sa U₂)
    Xᵀ, X  → tr(U₂) tr(U₁ Sa)   Xᵀ, Xᵀ → tr(U₁ᵀ Sa U₂)

where an empty ``n × n`` word is ``tr I_n = n``. Each contraction carries the ``1/n`` of one
``Σ̂`` factor, so a term's power of ``n`` is (closed ``n``-cycles) − (contractions).

Words are tuples of small integers (letters interned once per :class:`SteinRecursion`),
canonical under rotation and reversal-with-transposition; cycles free of ``X`` are interned
too, so a memoised result is a dict ``{(sorted fixed-cycle ids, p): integer coefficient}``.
This is the same sum as the port-level Wick enumeration of the module above (tested equal),
with less bookkeeping per contraction.

References: docs/theory/exact-expectation.md#eq-13; Stein (1981); Isserlis (1918).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["SteinRecursion", "TooManyTerms"]

Word = tuple[str, ...]
IWord = tuple[int, ...]
#: a sub-expectation: ``(M, P, C)`` — row ``r`` is the term ``C[r] · n^{P[r]} · Π tr(cycle)``
#: over the X-free cycle ids ``M[r]`` (sorted, padded with ``_PAD``)
Result = tuple[np.ndarray, np.ndarray, np.ndarray]

#: the codes of X and Xᵀ: larger than every other letter, so that a canonical word starts
#: at a fixed letter and the contracted X is the one after the least fixed letter (this
#: choice halves the memoised states against X-first words)
_X, _XT = 1 << 30, (1 << 30) + 1
_PAD = np.iinfo(np.int32).max
_ONE: Result = (np.zeros((1, 0), dtype=np.int32), np.zeros(1, dtype=np.int64),
                np.ones(1, dtype=np.int64))


def _nbytes(r: Result) -> int:
    return int(r[0].nbytes + r[1].nbytes + r[2].nbytes) + 400  # + the arrays' headers


def _collect(blocks: list[Result], width: int) -> Result:
    """Equal terms of the blocks summed (rows with equal cycles and power of n); zero
    coefficients dropped."""
    M = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros((0, width), np.int32)
    P = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0, np.int64)
    C = np.concatenate([b[2] for b in blocks]) if blocks else np.zeros(0, np.int64)
    key = np.ascontiguousarray(np.concatenate([M, P[:, None].astype(np.int32)], axis=1))
    view = key.view(np.dtype((np.void, key.shape[1] * 4))).ravel()
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    total = np.zeros(len(first), dtype=np.int64)
    np.add.at(total, inverse.ravel(), C)
    keep = total != 0
    return M[first][keep], P[first][keep], total[keep]


class TooManyTerms(Exception):
    """A sub-expectation has more terms than :attr:`SteinRecursion.max_result` (its size is
    the argument)."""


class SteinRecursion:
    """Memoised ``E_X`` of products of traces in ``X`` (see the module docstring).

    Args:
        transpose: the transposed letter of a letter name (``"A"`` ↔ ``"A'"``; symmetric
            letters map to themselves).
        sa: the name of the covariance letter ``αΣ`` that each contraction inserts.
        drop_last: private switch of the broken-variant tests — omit the contraction of the
            first ``X`` with the last one in every step.
        progress: called with the number of computed sub-expectations every 10 000
            (``None``: silent).
        memo_mb: the memory (MiB) the memoised sub-expectations may hold; beyond it the
            least recently used are dropped (and recomputed when met again).
    """

    def __init__(self, transpose: Callable[[str], str], *, sa: str = "Sa",
                 drop_last: bool = False,
                 progress: Callable[[int], None] | None = None,
                 memo_mb: float = 1000.0) -> None:
        self._transpose = transpose
        self.drop_last = drop_last
        self.progress = progress
        self.names: list[str] = []
        self._ids: dict[str, int] = {"X": _X, "X'": _XT}
        self._tp: list[int] = []
        self._sa = self.letter(sa)
        self._canon: dict[IWord, IWord] = {}
        self.cycles: list[IWord] = []          # interned X-free cycles (canonical)
        self._cycle_ids: dict[IWord, int] = {}
        self._memo: OrderedDict[tuple[IWord, ...], Result] = OrderedDict()
        self._memo_bytes = 0
        #: the memoised sub-expectations are kept within this many bytes (least recently
        #: used first out); set by ``MAML_DEPTH_STEIN_MEMO_MB`` (default 1000)
        self.memo_bytes = memo_mb * 2**20
        #: sub-expectations computed (memoised or since evicted)
        self.states = 0
        self.contractions = 0
        #: stop (:class:`TooManyTerms`) when one sub-expectation has more terms than this
        self.max_result: int | None = None

    # -- letters and words --------------------------------------------------------------
    def letter(self, name: str) -> int:
        """The integer code of a letter (its transpose is interned with it)."""
        if name in self._ids:
            return self._ids[name]
        i = len(self.names)
        self._ids[name] = i
        self.names.append(name)
        self._tp.append(i)
        t = self._transpose(name)
        if t != name:
            j = len(self.names)
            self._ids[t] = j
            self.names.append(t)
            self._tp.append(i)
            self._tp[i] = j
        return i

    def encode(self, word: Word) -> IWord:
        """A word of letter names as a tuple of codes."""
        return tuple(self.letter(a) for a in word)

    def decode(self, word: IWord) -> Word:
        """The letter names of a coded word."""
        return tuple("X" if a == _X else "X'" if a == _XT else self.names[a] for a in word)

    def _tpw(self, w: IWord) -> IWord:
        tp = self._tp
        return tuple(tp[a] if a < _X else (_XT if a == _X else _X) for a in reversed(w))

    def canonical(self, w: IWord) -> IWord:
        """Least rotation of ``w`` or of ``wᵀ`` (a trace is invariant under both)."""
        c = self._canon.get(w)
        if c is None:
            r = self._tpw(w)
            lo = min(w)
            lr = min(r)
            c = min([w[i:] + w[:i] for i, a in enumerate(w) if a == lo]
                    + [r[i:] + r[:i] for i, a in enumerate(r) if a == lr])
            self._canon[w] = c
        return c

    def cycle_id(self, w: IWord) -> int:
        """The interned id of a canonical ``X``-free cycle."""
        i = self._cycle_ids.get(w)
        if i is None:
            i = len(self.cycles)
            self._cycle_ids[w] = i
            self.cycles.append(w)
        return i

    # -- the recursion ------------------------------------------------------------------
    def expect(self, state: Sequence[IWord]) -> Result:
        """``E_X Π tr(w)`` for coded words ``state`` (each containing ``X``):
        ``{(sorted ids of X-free cycles, p): c}`` for ``Σ c · n^p · Π tr(cycle)``."""
        if any(_X not in w and _XT not in w for w in state):
            raise ValueError("every trace handed to SteinRecursion.expect must contain X")
        key = tuple(sorted(self.canonical(w) for w in state))
        return self._expect(key)

    def _expect(self, state: tuple[IWord, ...]) -> Result:
        got = self._memo.get(state)
        if got is not None:
            self._memo.move_to_end(state)
            return got
        if not state:
            return _ONE
        width = sum(w.count(_X) + w.count(_XT) for w in state) // 2
        blocks: list[Result] = []
        for new_cycles, ncyc in self._contractions(state):
            self.contractions += 1
            xs: list[IWord] = []
            fixed: list[int] = []
            for c in new_cycles:
                if _X in c or _XT in c:
                    xs.append(self.canonical(c))
                else:
                    fixed.append(self.cycle_id(self.canonical(c)))
            sM, sP, sC = self._expect(tuple(sorted(xs)))
            rows = len(sC)
            cols = [sM] + [np.full((rows, 1), f, dtype=np.int32) for f in fixed]
            pad = width - sM.shape[1] - len(fixed)
            if pad < 0:  # one contraction closes at most one cycle free of X
                raise AssertionError("more X-free cycles than contractions")
            if pad:
                cols.append(np.full((rows, pad), _PAD, dtype=np.int32))
            M = np.concatenate(cols, axis=1)
            if fixed:
                M.sort(axis=1)
            blocks.append((M, sP + (ncyc - 1), sC))
        out = _collect(blocks, width)
        if self.max_result is not None and len(out[2]) > self.max_result:
            raise TooManyTerms(len(out[2]))
        self._memo[state] = out
        self._memo_bytes += _nbytes(out)
        while self._memo_bytes > self.memo_bytes and len(self._memo) > 1:
            _, old = self._memo.popitem(last=False)  # least recently used
            self._memo_bytes -= _nbytes(old)
        self.states += 1
        if self.progress is not None and self.states % 10_000 == 0:
            self.progress(self.states)
        if len(self._canon) > 500_000:  # bounded memory: canonical forms are cheap
            self._canon.clear()
        return out

    def terms(self, result: Result) -> list[tuple[tuple[int, ...], int, int]]:
        """``(ids of the X-free cycles, power of n, coefficient)`` of each term of a
        result of :meth:`expect`."""
        M, P, C = result
        return [(tuple(int(x) for x in row if x != _PAD), int(p), int(c))
                for row, p, c in zip(M.tolist(), P.tolist(), C.tolist(), strict=True)]

    def _contractions(self, state: tuple[IWord, ...]
                      ) -> list[tuple[list[IWord], int]]:
        """Every contraction of the first ``X`` of ``state`` with another ``X``: the new
        list of cycles (the untouched ones included) and the number of closed empty
        ``n``-cycles."""
        w0 = state[0]
        i0 = next(i for i, a in enumerate(w0) if a >= _X)
        u = w0[i0:] + w0[:i0]
        x = u[0]
        sa = (self._sa,)
        tpw = self._tpw
        found: list[tuple[list[IWord], int]] = []
        # partners in the same trace
        for j in range(1, len(u)):
            y = u[j]
            if y < _X:
                continue
            U1, U2 = u[1:j], u[j + 1:]
            rest = list(state[1:])
            if x == _X and y == _X:
                found.append(([U1 + sa + tpw(U2), *rest], 0))
            elif x == _X:          # X … Xᵀ: tr(U₁) tr(Sa U₂)
                if U1:
                    found.append(([U1, sa + U2, *rest], 0))
                else:
                    found.append(([sa + U2, *rest], 1))
            elif y == _X:          # Xᵀ … X: tr(U₂) tr(U₁ Sa)
                if U2:
                    found.append(([U2, U1 + sa, *rest], 0))
                else:
                    found.append(([U1 + sa, *rest], 1))
            else:
                found.append(([tpw(U1) + sa + U2, *rest], 0))
        # partners in the other traces
        for wi in range(1, len(state)):
            w = state[wi]
            rest = [state[k] for k in range(1, len(state)) if k != wi]
            for j, y in enumerate(w):
                if y < _X:
                    continue
                V = w[j + 1:] + w[:j]
                U = u[1:]
                if x == _X and y == _X:
                    c = U + sa + tpw(V)
                elif x == _X:
                    c = U + sa + V
                elif y == _X:
                    c = V + sa + U
                else:
                    c = tpw(U) + sa + V
                found.append(([c, *rest], 0))
        if self.drop_last and found:
            found.pop()
        return found

    def __len__(self) -> int:
        return self.states
