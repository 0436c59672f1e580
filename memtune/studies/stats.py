"""The statistics of a verdict: intervals over seeds and paired comparisons (scipy does the math)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Interval", "mean_interval", "paired_bootstrap_interval", "time_to_target", "wilcoxon_p"]


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval; the bounds are None when n < 2 or not finite."""

    mean: float
    low: float | None
    high: float | None
    n: int


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean. A non-finite value (a diverged run) makes the mean
    non-finite and the interval undefined: that is the honest summary."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean()) if len(data) else math.nan
    if len(data) < 2 or not np.isfinite(data).all():
        return Interval(mean, None, None, len(data))
    if np.ptp(data) == 0:  # zero spread: the interval is the point
        return Interval(mean, mean, mean, len(data))
    low, high = stats.t.interval(confidence, len(data) - 1, loc=mean, scale=stats.sem(data))
    return Interval(mean, float(low), float(high), len(data))


def paired_bootstrap_interval(
    differences: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean paired difference (scipy.stats.bootstrap)."""
    data = np.asarray(differences, dtype=float)
    mean = float(data.mean()) if len(data) else math.nan
    if len(data) < 2 or not np.isfinite(data).all():
        return Interval(mean, None, None, len(data))
    if np.ptp(data) == 0:
        return Interval(mean, mean, mean, len(data))
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Interval(mean, float(interval.low), float(interval.high), len(data))


def wilcoxon_p(differences: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences; None when it is
    undefined (fewer than two pairs, or every difference zero)."""
    data = np.asarray(differences, dtype=float)
    data = data[~np.isnan(data)]
    if len(data) < 2 or not np.any(data != 0):
        return None
    return float(stats.wilcoxon(data, zero_method="wilcox", alternative="two-sided").pvalue)


def time_to_target(curve: Sequence[tuple[float, float]], target: float | None, mode: str) -> float:
    """Training seconds at which the metric first reached ``target``; inf if never.

    ``curve`` is (cumulative training seconds, metric) per epoch, in order.
    """
    if target is None:
        return math.inf
    for seconds, value in curve:
        if (value >= target) if mode == "max" else (value <= target):
            return seconds
    return math.inf
