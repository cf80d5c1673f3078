"""Confidence intervals and verdicts: the one statistics module of the package.

Every statistical check states its confidence level and sample size; a verdict is
``pass`` only when the whole confidence interval lies inside the region the claim predicts,
``fail`` when it lies wholly outside, and ``inconclusive`` otherwise — never rounded into a
pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from maml_depth.errors import InvalidArgumentError

LEVEL = 0.95

#: the verdict of a check: a crash or a bad argument is ``error``, never ``fail``; a check
#: that cannot run in this setting is ``not available``
Verdict = Literal["pass", "fail", "inconclusive", "error", "not available"]
VERDICTS: tuple[str, ...] = ("pass", "fail", "inconclusive", "error", "not available")


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided confidence interval at ``level`` from ``n`` samples."""

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str

    def as_list(self) -> list[float]:
        """``[low, high]``."""
        return [self.low, self.high]

    def __str__(self) -> str:
        return (f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}] "
                f"({100 * self.level:.0f}% {self.method}, n={self.n})")


def mean_interval(x: Sequence[float] | np.ndarray, level: float = LEVEL, *,
                  lower: float | None = None) -> Interval:
    """Student-t interval of the mean of ``x`` (n ≥ 2).

    ``lower``: a bound the mean cannot pass (e.g. 0 for an error norm); the interval is cut
    there — the cut interval covers the mean at least as often, since the mean lies above
    the bound — and its method says so. Samples below ``lower`` are an error.
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    n = a.size
    if n < 2:
        raise InvalidArgumentError(f"a confidence interval needs at least 2 samples, got {n}")
    if lower is not None and (a < lower).any():
        raise InvalidArgumentError(
            f"mean_interval: a sample lies below lower = {lower:g} (min {a.min():g})")
    m = float(a.mean())
    se = float(a.std(ddof=1) / math.sqrt(n))
    h = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    if lower is not None and m - h < lower:
        return Interval(m, lower, m + h, level, n, f"t-interval cut at {lower:g}")
    return Interval(m, m - h, m + h, level, n, "t-interval")


def from_standard_error(estimate: float, se: float, n: int, level: float = LEVEL) -> Interval:
    """Normal interval ``estimate ± z·se`` (for means of many samples, n large)."""
    h = float(stats.norm.ppf(0.5 + level / 2)) * se
    return Interval(estimate, estimate - h, estimate + h, level, n, "normal interval")


def weighted_mean_interval(x: Sequence[float], se: Sequence[float], level: float = LEVEL
                           ) -> Interval:
    """Inverse-variance weighted mean of estimates ``x`` with known standard errors ``se``
    and its normal interval (``se_w = (Σ 1/se²)^{−½}``). Zero-variance entries carry no
    uncertainty and are left out of the average."""
    a, s = np.asarray(x, dtype=np.float64), np.asarray(se, dtype=np.float64)
    keep = s > 0
    if not keep.any():
        m = float(a.mean())
        return Interval(m, m, m, level, a.size, "exact")
    w = 1.0 / s[keep] ** 2
    m = float(np.sum(w * a[keep]) / np.sum(w))
    iv = from_standard_error(m, float(np.sqrt(1.0 / np.sum(w))), a.size, level)
    return Interval(iv.estimate, iv.low, iv.high, level, a.size, "inverse-variance weighted")


def paired_ratio_interval(num: np.ndarray, den: np.ndarray, level: float = LEVEL
                          ) -> Interval:
    """Interval of ``R = mean(num)/mean(den)`` for paired per-sample values (delta method:
    ``se(R) = sd(num − R·den) / (√n · mean(den))``, normal quantile)."""
    a, b = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    R = float(a.mean() / b.mean())
    se = float((a - R * b).std(ddof=1) / (math.sqrt(a.size) * abs(b.mean())))
    iv = from_standard_error(R, se, a.size, level)
    return Interval(R, iv.low, iv.high, level, a.size, "paired ratio, delta method")


def median_interval(x: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """Distribution-free interval of the median of ``x`` (n ≥ 1 i.i.d. samples of any
    continuous distribution): ``[x_(k), x_(n+1−k)]`` (order statistics, 1-based) with the
    largest ``k`` such that ``P(B < k) ≤ (1 − level)/2`` for ``B ~ Binomial(n, ½)``, the
    number of samples below the true median. Its coverage ``1 − 2 P(B < k)`` is at least
    ``level``. With too few samples for ``level`` (n < 6 at 95 %) it is ``[min, max]`` and
    the returned ``level`` is that interval's coverage ``1 − 2^{1−n}``.

    References: Conover, *Practical Nonparametric Statistics* (3rd ed.), §3.2."""
    a = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = a.size
    if n < 1:
        raise InvalidArgumentError("a median needs at least 1 sample, got 0")
    if not np.all(np.isfinite(a)):
        raise InvalidArgumentError(f"samples must be finite, got {int(np.sum(~np.isfinite(a)))} "
                         f"NaN/inf of {n}")
    if not 0.0 < level < 1.0:
        raise InvalidArgumentError(f"level must lie in (0, 1), got {level}")
    # P(B ≤ k − 1) ≤ (1 − level)/2 for k = 1..kmax (the cdf increases with k)
    cdf = stats.binom.cdf(np.arange(n), n, 0.5)  # cdf[i] = P(B ≤ i)
    k = int(np.searchsorted(cdf, (1.0 - level) / 2, side="right"))  # #{i: cdf[i] ≤ α/2}
    if k == 0:
        k, level = 1, 1.0 - 2.0 * 0.5 ** n
    return Interval(float(np.median(a)), float(a[k - 1]), float(a[n - k]), level, n,
                    "median, order statistics")


def ratio_interval(num: np.ndarray, den: float, level: float = LEVEL) -> Interval:
    """Interval of ``mean(num) / den`` for a known constant ``den ≠ 0``."""
    iv = mean_interval(num, level)
    lo, hi = sorted((iv.low / den, iv.high / den))
    return Interval(iv.estimate / den, lo, hi, level, iv.n, iv.method)


def clopper_pearson(failures: int, n: int, level: float = LEVEL) -> Interval:
    """Exact binomial interval of a failure rate (``failures`` out of ``n`` cases)."""
    k = failures
    lo = 0.0 if k == 0 else float(stats.beta.ppf((1 - level) / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.5 + level / 2, k + 1, n - k))
    return Interval(failures / n, lo, hi, level, n, "Clopper-Pearson")


def verdict_within(iv: Interval, low: float, high: float) -> str:
    """``pass`` if the interval lies in ``[low, high]``, ``fail`` if it misses it entirely,
    else ``inconclusive``."""
    if low <= iv.low and iv.high <= high:
        return "pass"
    if iv.high < low or iv.low > high:
        return "fail"
    return "inconclusive"


def verdict_above(iv: Interval, threshold: float) -> str:
    """``pass`` if the interval lies above ``threshold``, ``fail`` if wholly below."""
    if iv.low > threshold:
        return "pass"
    if iv.high < threshold:
        return "fail"
    return "inconclusive"


def verdict_below(iv: Interval, threshold: float) -> str:
    """``pass`` if the interval lies below ``threshold``, ``fail`` if wholly above."""
    if iv.high < threshold:
        return "pass"
    if iv.low > threshold:
        return "fail"
    return "inconclusive"


def verdict_all_seeds(ok: Sequence[bool]) -> str:
    """``pass`` if every seed meets the criterion, ``fail`` if none does, else
    ``inconclusive``."""
    if all(ok):
        return "pass"
    if not any(ok):
        return "fail"
    return "inconclusive"


def combine(verdicts: Sequence[str]) -> str:
    """All parts must pass: any fail → fail; else any inconclusive → inconclusive."""
    if any(v == "fail" for v in verdicts):
        return "fail"
    if any(v == "not available" for v in verdicts):
        return "not available"
    if any(v == "inconclusive" for v in verdicts):
        return "inconclusive"
    return "pass"


def mean_halfwidth(x: Sequence[float] | np.ndarray, level: float = LEVEL
                   ) -> tuple[float, float]:
    """``(mean, h)`` of the Student-t interval ``mean ± h`` of :func:`mean_interval`, with
    ``h = NaN`` for a single sample (no interval); for tables that print ``mean ± h``."""
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 1:
        return float(a[0]), float("nan")
    iv = mean_interval(a, level)
    return iv.estimate, iv.high - iv.estimate
