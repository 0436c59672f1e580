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


def test_rank_sum_p_is_scipys_exact_mann_whitney_without_ties():
    from scipy import stats as scipy_stats

    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.normal(size=6), rng.normal(size=5)
        expected = scipy_stats.mannwhitneyu(a, b, method="exact").pvalue
        assert stats.rank_sum_p(a, b) == pytest.approx(expected, abs=1e-12)
    # every score of one arm above every score of the other: 2 / C(12, 6)
    assert stats.rank_sum_p(range(6, 12), range(6)) == pytest.approx(2 / 924)


def test_rank_sum_p_with_ties_is_scipys_exact_permutation_test_of_the_rank_sum():
    from scipy import stats as scipy_stats

    def rank_sum(x, y, axis):
        ranks = scipy_stats.rankdata(np.concatenate([x, y], axis=axis), axis=axis)
        return np.sum(ranks[..., : x.shape[axis]], axis=axis)

    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = np.round(rng.normal(size=5)), np.round(rng.normal(size=6))
        expected = scipy_stats.permutation_test(
            (a, b), rank_sum, permutation_type="independent", vectorized=True, n_resamples=np.inf
        ).pvalue
        assert stats.rank_sum_p(a, b) == pytest.approx(expected, abs=1e-9)


def test_a_diverged_search_ranks_below_every_finite_score_and_ties_with_its_like():
    finite = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    with_diverged = [-math.inf, *finite[1:]]
    # a diverged search is the lowest rank, exactly as the lowest finite score would be
    assert stats.rank_sum_p(with_diverged, [1.1, 1.2, 1.3, 1.4, 1.5, 1.6]) == pytest.approx(2 / 924)
    assert stats.rank_sum_direction(with_diverged, [2.0] * 6) == -1
    # both arms diverged everywhere: nothing to tell apart
    assert stats.rank_sum_p([-math.inf] * 6, [-math.inf] * 6) == 1.0


def test_hodges_lehmann_interval_is_the_set_the_rank_sum_test_does_not_reject():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    shift = stats.hodges_lehmann(a, b)
    assert shift.estimate == -6.0  # the median of the 36 differences
    # C(12, 6) = 924 orderings; P(U <= 5) = 19 / 924 is the largest tail within 2.5%: the
    # interval runs from the 6th to the 31st of the sorted differences
    assert (shift.low, shift.high) == (-9.0, -3.0)
    assert shift.confidence == pytest.approx(1 - 2 * 19 / 924)
    # the test rejects a shift d exactly when d lies outside the interval
    for d in (-9.01, -8.99, -3.01, -2.99):
        p = stats.rank_sum_p([x - d for x in a], b)
        assert (p < 0.05) == (not shift.low < d < shift.high)


def test_hodges_lehmann_is_undefined_for_too_few_searches():
    shift = stats.hodges_lehmann([1.0, 2.0], [3.0])  # 3 orderings: no 95% interval exists
    assert shift.estimate == -1.5 and shift.low is None and shift.high is None


def test_min_attainable_rank_sum_p_and_the_searches_it_takes():
    assert stats.min_attainable_rank_sum_p(4, 1) == pytest.approx(2 / 70)
    assert stats.min_attainable_rank_sum_p(6, 5) == pytest.approx(5 * 2 / 924)
    assert stats.min_attainable_rank_sum_p(5, 1, baseline=6) == pytest.approx(2 / 462)
    assert [stats.searches_for_power(k) for k in (1, 2, 6, 7, 23, 24)] == [4, 5, 5, 6, 6, 7]
