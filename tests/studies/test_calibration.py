"""The verdict's label rule, checked by simulation: how often it says "better" or "worse" when
the arms do not differ (at most 6%), and how often it says "better" when one does (at least
70% at a shift of one standard deviation of the paired differences with 10 seeds).

The null is the one a study faces when an optimizer is compared with itself: the two arms'
values are exchangeable, so their paired differences are symmetric about 0, whatever the
shape of the values (normal, skewed, or discrete with ties like an accuracy on a small set).
"""

from __future__ import annotations

import numpy as np
import pytest

from memtune.studies import stats
from memtune.studies.verdict import decide

DRAWS = 2000
pytestmark = pytest.mark.slow


def _labels(differences: np.ndarray, comparisons: int = 1) -> list[str]:
    """The verdict's rule applied to each row of ``differences`` (one column per comparison
    when there are several, Holm across them)."""
    rows = differences if differences.ndim == 3 else differences[:, None, :]
    labels = []
    for family in rows:
        p_values = [stats.signed_rank_p(d) for d in family]
        for d, p_adjusted in zip(family, stats.holm(p_values), strict=True):
            outcome, _ = decide(
                mode="max",
                p_adjusted=p_adjusted,
                direction=stats.signed_rank_direction(d),
                interval=stats.mean_interval(d),
                min_p=stats.min_attainable_p(len(d), comparisons),
            )
            labels.append(outcome)
    return labels


def _rate(labels: list[str], outcomes: tuple[str, ...]) -> float:
    return sum(label in outcomes for label in labels) / len(labels)


NULLS = {
    "normal": lambda rng, shape: rng.normal(size=shape) - rng.normal(size=shape),
    "skewed (lognormal values)": lambda rng, shape: (
        rng.lognormal(0.0, 1.0, shape) - rng.lognormal(0.0, 1.0, shape)
    ),
    "ties (accuracy on 50 examples)": lambda rng, shape: (
        (rng.binomial(50, 0.9, shape) - rng.binomial(50, 0.9, shape)) / 50
    ),
}


@pytest.mark.parametrize("seeds", [3, 6, 10])
@pytest.mark.parametrize("null", list(NULLS))
def test_false_positive_rate_under_the_null_is_at_most_six_percent(null, seeds):
    rng = np.random.default_rng(seeds)
    labels = _labels(NULLS[null](rng, (DRAWS, seeds)))
    rate = _rate(labels, ("better", "worse"))
    print(f"null {null}, n={seeds}: 'better' or 'worse' in {rate:.2%} of {DRAWS} draws")
    assert rate <= 0.06


def test_family_wise_error_over_three_arms_is_at_most_six_percent():
    rng = np.random.default_rng(3)
    seeds = 8
    baseline = rng.normal(size=(DRAWS, 1, seeds))
    arms = rng.normal(size=(DRAWS, 3, seeds))  # three arms, each the baseline's equal
    labels = np.array(_labels(arms - baseline, comparisons=3)).reshape(DRAWS, 3)
    any_false = np.isin(labels, ("better", "worse")).any(axis=1).mean()
    print(f"three arms, n={seeds}: at least one false call in {any_false:.2%} of {DRAWS} draws")
    assert any_false <= 0.06


def test_power_at_one_standard_deviation_with_ten_seeds_is_at_least_seventy_percent():
    rng = np.random.default_rng(10)
    labels = _labels(rng.normal(1.0, 1.0, (DRAWS, 10)))
    power = _rate(labels, ("better",))
    print(f"shift of 1 sd, n=10: 'better' in {power:.2%} of {DRAWS} draws")
    assert power >= 0.70
    assert _rate(labels, ("worse",)) == 0.0
