"""The statistics of a verdict; scipy does the math, this module says which math and why.

Paired comparisons over seeds (an arm against the baseline, the same seeds for both):

- the mean difference over the seeds where both runs are finite, with a Student-t interval;
- a two-sided exact signed-rank test of the differences: scipy's exact Wilcoxon when the
  absolute differences have no ties, otherwise the exact sign-flip permutation distribution of
  the same statistic (Monte Carlo, seeded, past 2^16 sign patterns). A diverged seed is not
  dropped: its difference is infinite, ranked beyond every finite one, so it counts as a loss
  for the arm that diverged (and as no difference when both diverged);
- Holm's adjustment across the arms compared with the baseline;
- for a binary outcome per run (escaped or not): exact McNemar on the paired outcomes and
  Clopper-Pearson intervals for each arm's rate.

The label rule built on these lives in ``memtune.studies.verdict``; ``tests/studies`` checks
its false-positive rate and its power by simulation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "ALPHA",
    "Interval",
    "clopper_pearson",
    "expected_best",
    "holm",
    "mcnemar_p",
    "mean_interval",
    "min_attainable_p",
    "seeds_for_power",
    "signed_rank_direction",
    "signed_rank_p",
    "time_to_target",
]

ALPHA = 0.05  # the level of every "better" / "worse" in memtune

# Exact enumeration of the sign flips up to this many nonzero differences (2^16 patterns).
_EXACT_MAX_N = 16


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval; the bounds are None when n < 2 or not finite."""

    mean: float
    low: float | None
    high: float | None
    n: int


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean. A non-finite value makes the mean non-finite and the
    interval undefined; callers pass the finite values and count the others beside."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean()) if len(data) else math.nan
    if len(data) < 2 or not np.isfinite(data).all():
        return Interval(mean, None, None, len(data))
    if np.ptp(data) == 0:  # zero spread: the interval is the point
        return Interval(mean, mean, mean, len(data))
    # The t quantile is cached per (confidence, n): the dashboard asks for one interval per
    # arm and epoch, and scipy's t.interval costs ~0.5 ms a call.
    half = _t_quantile(confidence, len(data) - 1) * float(data.std(ddof=1)) / math.sqrt(len(data))
    return Interval(mean, mean - half, mean + half, len(data))


@functools.cache
def _t_quantile(confidence: float, degrees_of_freedom: int) -> float:
    return float(stats.t.ppf((1 + confidence) / 2, degrees_of_freedom))


def _rank_infinities(differences: np.ndarray) -> np.ndarray:
    """Infinite differences (one side diverged) become finite values beyond every finite
    one, with their sign: ranks are all the signed-rank test reads."""
    finite = differences[np.isfinite(differences)]
    beyond = 2.0 * (np.abs(finite).max() if len(finite) else 1.0) + 1.0
    return np.where(np.isinf(differences), np.sign(differences) * beyond, differences)


def _signed_rank_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(np.sign(x) * stats.rankdata(np.abs(x), axis=axis), axis=axis)


def signed_rank_p(differences: Sequence[float], seed: int = 0) -> float | None:
    """Two-sided p of the signed-rank test of paired differences (NaN pairs dropped, zeros
    dropped as in Wilcoxon's original method); None when no nonzero difference is left.

    Exact: scipy's exact Wilcoxon without ties; with ties, the sign-flip permutation test of
    the signed-rank sum, exact up to 16 nonzero differences and seeded Monte Carlo beyond.
    """
    data = np.asarray(differences, dtype=float)
    data = _rank_infinities(data[~np.isnan(data)])
    data = data[data != 0]
    if len(data) == 0:
        return None
    if len(np.unique(np.abs(data))) == len(data):
        return float(stats.wilcoxon(data, method="exact", alternative="two-sided").pvalue)
    result = stats.permutation_test(
        (data,),
        _signed_rank_sum,
        permutation_type="samples",  # one sample: the null flips the signs
        vectorized=True,
        n_resamples=np.inf if len(data) <= _EXACT_MAX_N else 2**_EXACT_MAX_N,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def signed_rank_direction(differences: Sequence[float]) -> int:
    """+1 when the signed ranks lean positive, -1 negative, 0 balanced (infinities ranked)."""
    data = np.asarray(differences, dtype=float)
    data = _rank_infinities(data[~np.isnan(data)])
    data = data[data != 0]
    return int(np.sign(_signed_rank_sum(data))) if len(data) else 0


def mcnemar_p(arm: Sequence[bool], baseline: Sequence[bool]) -> float | None:
    """Exact McNemar: a two-sided binomial test on the discordant pairs; None without pairs."""
    b = sum(1 for a, z in zip(arm, baseline, strict=True) if a and not z)
    c = sum(1 for a, z in zip(arm, baseline, strict=True) if z and not a)
    if b + c == 0:
        return 1.0 if len(arm) else None
    return float(stats.binomtest(b, b + c, 0.5).pvalue)


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """The exact binomial interval of a rate."""
    if n == 0:
        return Interval(math.nan, None, None, 0)
    ci = stats.binomtest(successes, n).proportion_ci(confidence, method="exact")
    return Interval(successes / n, float(ci.low), float(ci.high), n)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error), None entries left out of the family.

    Sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(present)
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def min_attainable_p(seeds: int, comparisons: int) -> float:
    """The smallest Holm-adjusted p an exact two-sided signed-rank (or McNemar) test can give
    with ``seeds`` pairs and no ties: every pair on one side, ``comparisons`` x 2 / 2^seeds."""
    return min(1.0, max(comparisons, 1) * 2.0 / 2.0**seeds)


def seeds_for_power(comparisons: int, alpha: float = ALPHA) -> int:
    """The fewest seeds whose best case reaches p < ``alpha`` after Holm: 6 for one
    comparison, 7 for two or three, 8 for four or five."""
    seeds = 1
    while min_attainable_p(seeds, comparisons) >= alpha:
        seeds += 1
    return seeds


def time_to_target(
    curve: Sequence[tuple[float, float]], target: float | None, mode: str
) -> tuple[float, int | None]:
    """(x, epoch index) at which the metric first reached ``target``; (inf, None) if never.

    ``curve`` is (cumulative cost, metric) per epoch, in order: seconds of training or
    gradient evaluations.
    """
    if target is not None:
        for index, (cost, value) in enumerate(curve):
            if (value >= target) if mode == "max" else (value <= target):
                return cost, index
    return math.inf, None


def expected_best(values: Sequence[float], mode: str) -> list[float]:
    """Expected best of n search trials drawn from ``values``, for n = 1..len(values)
    (Dodge et al., 2019: the expected maximum of n draws with replacement from the empirical
    distribution). ``values`` must be finite; callers decide what a diverged trial counts as.
    """
    data = np.sort(np.asarray(values, dtype=float))
    if mode == "min":
        data = -data[::-1]
    total = len(data)
    below = np.arange(total + 1) / total  # P(draw <= v_(i)) for i = 0..N
    curve = []
    for n in range(1, total + 1):
        weights = below[1:] ** n - below[:-1] ** n
        best = float(np.dot(weights, data))
        curve.append(-best if mode == "min" else best)
    return curve
