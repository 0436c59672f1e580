"""The statistics of a verdict; scipy does the math, this module says which math and why.

Unpaired comparisons over searches (the verdict's unit of inference: each arm runs K
independent searches, and each search's score is its best config's mean over the study's
seeds):

- a two-sided exact Wilcoxon rank-sum (Mann-Whitney) test of the two arms' search scores:
  the exact permutation distribution of the rank sum, ties sharing mid-ranks (seeded Monte
  Carlo past 2^16 arrangements). A search scored the worst value (it
  diverged) ranks below every finite score, tied with the other arm's diverged searches;
- the Hodges-Lehmann shift (the median of the K x K differences) with its distribution-free
  interval, the order statistics of those differences that the same test's null distribution
  picks (Lehmann, *Nonparametrics*, 1975, ch. 2), so the interval and the test agree;
- Holm's adjustment across the arms compared with the baseline.

Paired comparisons over seeds (a study with one search per arm: its configs, not its
optimizers, compared; the same seeds for both):

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
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "ALPHA",
    "Interval",
    "Shift",
    "clopper_pearson",
    "expected_best",
    "hodges_lehmann",
    "holm",
    "mcnemar_p",
    "mean_interval",
    "min_attainable_p",
    "min_attainable_rank_sum_p",
    "rank_sum_direction",
    "rank_sum_p",
    "searches_for_power",
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
    # arm and epoch, and scipy's t.interval is slow by comparison (docs/benchmarks.md).
    half = _t_quantile(confidence, len(data) - 1) * float(data.std(ddof=1)) / math.sqrt(len(data))
    return Interval(mean, mean - half, mean + half, len(data))


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two samples' pooled standard deviation over their finite values; None with fewer than
    three values (one in each) or none of spread."""
    a, b = [v for v in a if math.isfinite(v)], [v for v in b if math.isfinite(v)]
    if len(a) + len(b) < 3 or len(a) < 1 or len(b) < 1:
        return None
    squares = sum((v - statistics.fmean(a)) ** 2 for v in a)
    squares += sum((v - statistics.fmean(b)) ** 2 for v in b)
    sd = math.sqrt(squares / (len(a) + len(b) - 2))
    return sd if sd > 0 else None


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


def rank_sum_p(arm: Sequence[float], baseline: Sequence[float], seed: int = 0) -> float | None:
    """Two-sided p of the rank-sum test of two independent samples (NaN dropped); None when
    either sample is empty. Infinite values rank beyond the finite; ties share mid-ranks.

    Exact up to 2^16 arrangements of the pooled values: every way to deal them into the two
    samples, enumerated; two-sided is twice the smaller tail. Without ties that is scipy's exact Mann-Whitney p, and with
    ties scipy's exact permutation test of the same statistic (tests/studies/test_stats.py
    holds the three together); enumerated here because scipy's generic permutation test is
    two orders of magnitude slower and the calibration simulations ask for tens of thousands
    (figures in docs/benchmarks.md). Beyond 2^16, scipy's seeded Monte Carlo permutation test.
    """
    a, b = _present(arm), _present(baseline)
    if len(a) == 0 or len(b) == 0:
        return None
    pooled = np.concatenate([a, b])
    if math.comb(len(pooled), len(a)) > 2**_EXACT_MAX_N:
        result = stats.permutation_test(
            (a, b),
            _rank_sum,
            permutation_type="independent",
            vectorized=True,
            n_resamples=2**_EXACT_MAX_N,
            alternative="two-sided",
            rng=np.random.default_rng(seed),
        )
        return float(min(1.0, result.pvalue))
    ranks = stats.rankdata(pooled)
    sums = ranks[_dealings(len(pooled), len(a))].sum(axis=1)
    observed = ranks[: len(a)].sum()
    # Two-sided as scipy's: twice the smaller tail (with tied mid-ranks the distribution need
    # not be symmetric).
    lower, upper = np.mean(sums <= observed + 1e-9), np.mean(sums >= observed - 1e-9)
    return float(min(1.0, 2 * min(lower, upper)))


@functools.cache
def _dealings(total: int, first: int) -> np.ndarray:
    """Every choice of ``first`` of ``total`` positions, one row each (C(total, first) rows)."""
    return np.array(list(itertools.combinations(range(total), first)), dtype=np.intp)


def _present(values: Sequence[float]) -> np.ndarray:
    """The values without NaN; infinities stay (scipy ranks them beyond every finite value)."""
    data = np.asarray(values, dtype=float)
    return data[~np.isnan(data)]


def _rank_sum(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """The first sample's sum of mid-ranks in the pooled sample (ties share their rank)."""
    pooled = np.concatenate([a, b], axis=axis)
    ranks = stats.rankdata(pooled, axis=axis)
    return np.sum(np.take(ranks, np.arange(a.shape[axis]), axis=axis), axis=axis)


def rank_sum_direction(arm: Sequence[float], baseline: Sequence[float]) -> int:
    """+1 when the arm's values rank above the baseline's (its rank sum is above what the
    null expects), -1 below, 0 balanced; NaN dropped, infinities ranked."""
    a, b = _present(arm), _present(baseline)
    if len(a) == 0 or len(b) == 0:
        return 0
    expected = len(a) * (len(a) + len(b) + 1) / 2
    return int(np.sign(float(_rank_sum(a, b)) - expected))


@dataclass(frozen=True)
class Shift:
    """The Hodges-Lehmann shift of an arm over the baseline and its confidence interval.
    Bounds may be infinite (diverged searches) and are None when the samples are too small
    for the confidence asked (no order statistic qualifies)."""

    estimate: float
    low: float | None
    high: float | None
    confidence: float  # the interval's exact coverage under the null's distribution


def hodges_lehmann(
    arm: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> Shift | None:
    """The median of the m x n differences arm - baseline and the distribution-free interval
    [D_(k), D_(mn+1-k)] of their order statistics, k the largest with 2 P(U <= k - 1) <=
    1 - confidence under the rank-sum null (U the Mann-Whitney count): the set of shifts
    the two-sided rank-sum test at that level does not reject. Both diverged (both -inf or
    both +inf) is a difference of 0; None when a sample is empty."""
    a, b = _present(arm), _present(baseline)
    if len(a) == 0 or len(b) == 0:
        return None
    with np.errstate(invalid="ignore"):
        differences = np.subtract.outer(a, b).ravel()
    differences = np.sort(np.where(np.isnan(differences), 0.0, differences))
    estimate = float(np.median(differences))
    counts = _rank_sum_null_counts(len(a), len(b))
    total, alpha = math.comb(len(a) + len(b), len(a)), 1.0 - confidence
    below, k = 0, 0  # k - 1: the largest U whose lower tail stays within alpha / 2
    for u, count in enumerate(counts):
        if 2 * (below + count) > alpha * total:
            break
        below += count
        k = u + 1
    if k == 0:
        return Shift(estimate, None, None, 1.0)
    coverage = 1.0 - 2 * below / total
    low, high = float(differences[k - 1]), float(differences[len(differences) - k])
    return Shift(estimate, low, high, coverage)


@functools.cache
def _rank_sum_null_counts(m: int, n: int) -> tuple[int, ...]:
    """For two samples of sizes m and n under the null, how many of the C(m + n, m) equally
    likely orderings give each Mann-Whitney count U = 0..mn (pairs where the first sample's
    value is the larger). Mann & Whitney's (1947) recursion on who holds the largest value:
    the first sample's beats all n of the second's, the second's beats none."""
    if m == 0 or n == 0:
        return (1,)
    counts = [0] * (m * n + 1)
    for u, count in enumerate(_rank_sum_null_counts(m - 1, n)):
        counts[u + n] += count
    for u, count in enumerate(_rank_sum_null_counts(m, n - 1)):
        counts[u] += count
    return tuple(counts)


def min_attainable_rank_sum_p(
    searches: int, comparisons: int, baseline: int | None = None
) -> float:
    """The smallest Holm-adjusted p a two-sided exact rank-sum test can give with ``searches``
    scores in the arm and ``baseline`` (default: as many) in the baseline, no ties: every score
    of one arm above every score of the other, ``comparisons`` x 2 / C(m + n, m)."""
    m, n = searches, baseline if baseline is not None else searches
    if m == 0 or n == 0:
        return 1.0
    return min(1.0, max(comparisons, 1) * 2.0 / math.comb(m + n, m))


def searches_for_power(comparisons: int, alpha: float = ALPHA) -> int:
    """The fewest searches per arm whose best case reaches p < ``alpha`` after Holm: 4 for one
    comparison, 5 for two to six, 6 for seven to twenty-three, 7 for up to 85."""
    searches = 1
    while min_attainable_rank_sum_p(searches, comparisons) >= alpha:
        searches += 1
    return searches


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
