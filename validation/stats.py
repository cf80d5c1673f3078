"""Re-export of :mod:`maml_depth.common.stats` (statistics and verdicts live in the shared
layer; this name stays importable for claim plug-ins: ``from maml_depth.validation import
claim, stats``)."""

from maml_depth.common.stats import (
    LEVEL,
    VERDICTS,
    Interval,
    Verdict,
    clopper_pearson,
    combine,
    from_standard_error,
    mean_halfwidth,
    mean_interval,
    median_interval,
    paired_ratio_interval,
    ratio_interval,
    verdict_above,
    verdict_all_seeds,
    verdict_below,
    verdict_within,
    weighted_mean_interval,
)

__all__ = [
    "LEVEL",
    "VERDICTS",
    "Interval",
    "Verdict",
    "clopper_pearson",
    "combine",
    "from_standard_error",
    "mean_halfwidth",
    "mean_interval",
    "median_interval",
    "paired_ratio_interval",
    "ratio_interval",
    "verdict_above",
    "verdict_all_seeds",
    "verdict_below",
    "verdict_within",
    "weighted_mean_interval",
]
