"""Statistics helpers: the distribution-free interval of a median."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from maml_depth.validation.stats import median_interval


@given(n=st.integers(1, 60), level=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_median_interval_has_the_stated_coverage_and_is_the_tightest(n, level):
    """Coverage ``1 − 2 P(B ≤ k−1)`` ≥ the stated level, and the next tighter pair of order
    statistics would fall below the requested level (or there is none)."""
    x = np.arange(n, dtype=float)  # sorted already: the interval's ends are x[k-1], x[n-k]
    iv = median_interval(x, level)
    k = int(iv.low) + 1
    assert iv.high == n - k  # symmetric in the order statistics
    coverage = 1 - 2 * sps.binom.cdf(k - 1, n, 0.5)
    assert iv.level == pytest.approx(level if coverage >= level else coverage)
    assert coverage >= iv.level - 1e-12
    if k + 1 <= n - k:  # a tighter symmetric interval exists
        assert 1 - 2 * sps.binom.cdf(k, n, 0.5) < level
    assert iv.low <= iv.estimate <= iv.high and iv.n == n


def test_median_interval_covers_a_known_median_at_its_level():
    """Monte Carlo: 4000 samples of size 25 from an exponential law (median ln 2); the share
    of intervals that contain ln 2 is within 3 binomial standard errors of (or above) the
    exact coverage the function states."""
    rng = np.random.default_rng(0)
    reps, n = 4000, 25
    hits, stated = 0, None
    for _ in range(reps):
        iv = median_interval(rng.exponential(size=n), 0.95)
        hits += iv.low <= np.log(2) <= iv.high
        stated = iv.level
    exact = 1 - 2 * sps.binom.cdf(int(sps.binom.ppf(0.025, n, 0.5)) - 1, n, 0.5)
    assert stated == 0.95 and exact >= 0.95
    se = np.sqrt(exact * (1 - exact) / reps)
    assert abs(hits / reps - exact) <= 3 * se, (hits / reps, exact)


def test_median_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 1 sample"):
        median_interval([])
    with pytest.raises(ValueError, match="level"):
        median_interval([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="finite"):
        median_interval([1.0, float("nan"), 3.0])


def test_bad_arguments_raise_the_package_error_naming_the_field():
    """Bad input is an InvalidArgumentError (a ValueError) whose message names the field,
    in the shared layer and the peers alike (never a bare ValueError)."""
    from maml_depth.benchmarks.table import Table
    from maml_depth.common import stats as common_stats
    from maml_depth.common import strategies
    from maml_depth.errors import InvalidArgumentError, ShapeError

    with pytest.raises(InvalidArgumentError, match="level must lie in"):
        common_stats.median_interval([1.0, 2.0], level=1.5)
    with pytest.raises(InvalidArgumentError, match="max_condition must be ≥ 1"):
        strategies.spd_matrices(2, max_condition=0.5)
    with pytest.raises(ShapeError, match="columns"):
        Table("t", ["a", "b"]).add(1)


def test_mean_interval_cut_at_a_bound_keeps_its_coverage() -> None:
    """Errors near 0 (exponential, mean 0.05, 3 samples): the plain t-interval often dips
    below 0; cut at 0 it never does, covers the true mean as often (2000 draws, the same
    samples), and its method says so. A sample below the bound is an error."""
    from maml_depth.common.stats import mean_interval

    rng = np.random.default_rng(3)
    plain_cover = cut_cover = below = 0
    for _ in range(2000):
        x = rng.exponential(0.05, size=3)
        a, b = mean_interval(x), mean_interval(x, lower=0.0)
        below += a.low < 0
        assert b.low >= 0 and b.high == a.high
        plain_cover += a.low <= 0.05 <= a.high
        cut_cover += b.low <= 0.05 <= b.high
        if a.low < 0:
            assert "cut at 0" in b.method
    assert below > 100 and cut_cover == plain_cover
    with pytest.raises(Exception, match="below lower"):
        mean_interval([0.1, -0.2, 0.3], lower=0.0)
