"""The statistics of the verdict, on data whose answer is known."""

from __future__ import annotations

import math

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


def test_signed_rank_p_matches_the_exact_distribution():
    # 8 positive differences with distinct ranks: only 1 of 2^8 sign patterns is as extreme
    # on each side, so the two-sided exact p is 2 / 256.
    assert stats.signed_rank_p([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(2 / 256)
    assert stats.signed_rank_p([0.1, 0.2, 0.3]) == pytest.approx(0.25)


def test_signed_rank_p_with_ties_is_the_exact_sign_flip_distribution():
    # |d| = 1, 1, 2, 2, 3, 3 (ranks 1.5, 1.5, 3.5, 3.5, 5.5, 5.5), all positive: of the 64
    # sign patterns only all-positive and all-negative reach |sum| = 21, so p = 2 / 64.
    assert stats.signed_rank_p([1, 1, 2, 2, 3, 3]) == pytest.approx(2 / 64)


def test_a_diverged_seed_is_ranked_as_the_largest_loss_not_dropped():
    finite = [-0.01, -0.02, -0.03, -0.04, -0.05]
    with_diverged = [*finite, -math.inf]  # the arm diverged on the sixth seed
    assert stats.signed_rank_p(with_diverged) == pytest.approx(2 / 64)
    assert stats.signed_rank_direction(with_diverged) == -1
    assert stats.signed_rank_p([math.inf, -0.1, -0.2, -0.3]) == stats.signed_rank_p(
        [10.0, -0.1, -0.2, -0.3]
    )


def test_signed_rank_p_is_none_without_a_nonzero_difference():
    assert stats.signed_rank_p([0.0, 0.0, 0.0]) is None
    assert stats.signed_rank_p([]) is None


def test_holm_adjusts_three_p_values_as_the_textbook_does():
    # sorted 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04)
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]


def test_min_attainable_p_and_the_default_number_of_seeds():
    assert stats.min_attainable_p(3, 1) == pytest.approx(0.25)
    # k x 2 / 2^n < 0.05: three comparisons already reach it with 7 (3 x 2 / 128 = 0.047)
    assert [stats.seeds_for_power(k) for k in (1, 2, 3, 4, 5)] == [6, 7, 7, 8, 8]


def test_exact_mcnemar_counts_only_the_discordant_pairs():
    arm = [True] * 7 + [False, True, True]
    baseline = [False] * 7 + [False, True, True]
    assert stats.mcnemar_p(arm, baseline) == pytest.approx(2 / 2**7)
    assert stats.mcnemar_p([True, False], [True, False]) == 1.0


def test_clopper_pearson_is_the_exact_binomial_interval():
    interval = stats.clopper_pearson(0, 10)
    assert interval.low == 0.0 and interval.high == pytest.approx(1 - 0.025 ** (1 / 10))


def test_expected_best_of_n_trials_follows_dodge_et_al():
    # values 1, 2, 3: E[max of 1 draw] is the mean; of 2 draws 1/9 + 2 x 3/9 + 3 x 5/9.
    curve = stats.expected_best([3.0, 1.0, 2.0], "max")
    assert curve[0] == pytest.approx(2.0) and curve[1] == pytest.approx(22 / 9)
    assert stats.expected_best([3.0, 1.0, 2.0], "min")[1] == pytest.approx(4 - 22 / 9)


@pytest.mark.parametrize(
    ("mode", "target", "expected"),
    [("max", 0.9, 2.0), ("max", 0.99, math.inf), ("min", 0.3, 3.0), ("max", None, math.inf)],
)
def test_time_to_target_is_the_first_epoch_that_reaches_it(mode, target, expected):
    curve = [(1.0, 0.8), (2.0, 0.92), (3.0, 0.25), (4.0, 0.95)]
    assert stats.time_to_target(curve, target, mode)[0] == expected
