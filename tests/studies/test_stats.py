"""The statistics of the verdict, on data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memtune.studies import stats


def test_mean_interval_is_the_student_t_interval():
    interval = stats.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half_width = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * s / sqrt(n)
    assert interval.mean == 3.0
    assert interval.low == pytest.approx(3.0 - half_width, rel=1e-6)
    assert interval.high == pytest.approx(3.0 + half_width, rel=1e-6)


def test_mean_interval_is_undefined_for_one_value_or_a_diverged_run():
    assert stats.mean_interval([0.7]).low is None
    interval = stats.mean_interval([0.5, math.inf])
    assert interval.mean == math.inf and interval.low is None


def test_mean_interval_of_identical_values_is_the_point():
    interval = stats.mean_interval([0.25, 0.25, 0.25])
    assert (interval.low, interval.high) == (0.25, 0.25)


def test_wilcoxon_p_matches_the_exact_distribution():
    # 8 positive differences with distinct ranks: only 1 of 2^8 sign patterns is as extreme
    # on each side, so the two-sided exact p is 2 / 256.
    assert stats.wilcoxon_p([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(2 / 256)


def test_wilcoxon_p_with_three_pairs_cannot_go_below_a_quarter():
    assert stats.wilcoxon_p([0.1, 0.2, 0.3]) == pytest.approx(0.25)


def test_wilcoxon_p_is_none_when_undefined():
    assert stats.wilcoxon_p([0.0, 0.0, 0.0]) is None
    assert stats.wilcoxon_p([1.0]) is None


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = stats.paired_bootstrap_interval(rng.normal(1.0, 1.0, 10))
    large = stats.paired_bootstrap_interval(rng.normal(1.0, 1.0, 1000))
    assert small.low < small.mean < small.high
    assert large.low < 1.0 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_bootstrap_interval_is_reproducible_and_degenerate_data_is_a_point():
    data = [0.1, -0.3, 0.4, 0.2, 0.0]
    assert stats.paired_bootstrap_interval(data) == stats.paired_bootstrap_interval(data)
    point = stats.paired_bootstrap_interval([0.5, 0.5, 0.5])
    assert (point.low, point.high) == (0.5, 0.5)


@pytest.mark.parametrize(
    ("mode", "target", "expected"),
    [("max", 0.9, 2.0), ("max", 0.99, math.inf), ("min", 0.3, 3.0), ("max", None, math.inf)],
)
def test_time_to_target_is_the_first_epoch_that_reaches_it(mode, target, expected):
    curve = [(1.0, 0.8), (2.0, 0.92), (3.0, 0.25), (4.0, 0.95)]
    assert stats.time_to_target(curve, target, mode) == expected
