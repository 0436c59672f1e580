"""The verdict's label rules, checked by simulation: how often they call a difference when the
arms do not differ, and how often they call one when it is there.

Over searches (the default, K >= 2 searches per arm): a search's score is one draw of "the
optimizer, tuned by a search of this budget": a search-level effect (the config that search
happened to find) plus its config's mean over the study's seeds, whose effects are shared by
every search (common random numbers). The null is the same optimizer in two arms: the 2K
scores are exchangeable, whatever their shape. Over seeds (K = 1): the configs' paired
differences, symmetric about 0 under the null.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from memtune.studies import stats
from memtune.studies.spec import DEFAULT_SEARCHES, DEFAULT_SEEDS, parse_spec
from memtune.studies.stats import ALPHA
from memtune.studies.verdict import ArmVerdict, SearchScore, decide
from memtune.studies.verdict.inference import _comparisons

DRAWS = 2000
pytestmark = pytest.mark.slow


def _labels(differences: np.ndarray, comparisons: int = 1) -> list[str]:
    """The config rule (K = 1) applied to each row of paired differences."""
    rows = differences if differences.ndim == 3 else differences[:, None, :]
    labels = []
    for family in rows:
        p_values = [stats.signed_rank_p(d) for d in family]
        for d, p_adjusted in zip(family, stats.holm(p_values), strict=True):
            outcome, _ = decide(
                mode="max",
                p_adjusted=p_adjusted,
                direction=stats.signed_rank_direction(d),
                interval=(stats.mean_interval(d).low, stats.mean_interval(d).high),
                min_p=stats.min_attainable_p(len(d), comparisons),
                scope="config",
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
def test_config_rule_false_positive_rate_under_the_null_is_at_most_six_percent(null, seeds):
    rng = np.random.default_rng(seeds)
    labels = _labels(NULLS[null](rng, (DRAWS, seeds)))
    rate = _rate(labels, ("config better", "config worse"))
    print(
        f"null {null}, n={seeds}: 'config better' or 'config worse' in {rate:.2%} of {DRAWS} draws"
    )
    assert rate <= 0.06


def test_config_rule_family_wise_error_over_three_arms_is_at_most_six_percent():
    rng = np.random.default_rng(3)
    seeds = 8
    baseline = rng.normal(size=(DRAWS, 1, seeds))
    arms = rng.normal(size=(DRAWS, 3, seeds))  # three arms, each the baseline's equal
    labels = np.array(_labels(arms - baseline, comparisons=3)).reshape(DRAWS, 3)
    any_false = np.isin(labels, ("config better", "config worse")).any(axis=1).mean()
    print(f"three arms, n={seeds}: at least one false call in {any_false:.2%} of {DRAWS} draws")
    assert any_false <= 0.06


def test_config_rule_power_at_one_sd_with_ten_seeds_is_at_least_seventy_percent():
    rng = np.random.default_rng(10)
    labels = _labels(rng.normal(1.0, 1.0, (DRAWS, 10)))
    power = _rate(labels, ("config better",))
    print(f"shift of 1 sd, n=10: 'config better' in {power:.2%} of {DRAWS} draws")
    assert power >= 0.70
    assert _rate(labels, ("config worse",)) == 0.0


# --------------------------------------------------------------------------------------------
# Over searches: the default rule, through the verdict's own comparisons
# --------------------------------------------------------------------------------------------

# The defaults a study gets (memtune.studies.spec): K searches per arm, S seeds per config.
K, S = DEFAULT_SEARCHES, DEFAULT_SEEDS
# Under the null the rule's false-label rate is at most its exact size: the chance that two
# samples of K continuous exchangeable scores reach p < 0.05, 2 P(U <= 5) = 38 / 924 (4.1%) at
# K = 6 (ties only lower it). The simulated rate may exceed that by Monte-Carlo error only: two
# standard errors over DRAWS studies (5.0%).
SIZE = 2 * sum(stats._rank_sum_null_counts(K, K)[:6]) / math.comb(2 * K, K)
LIMIT = SIZE + 2 * math.sqrt(SIZE * (1 - SIZE) / DRAWS)
SEED_SD, INTERACTION_SD = 0.5, 0.5
# The sd of a search's score within a study: its search effect (1) and its config's own
# response to its S seeds; the seeds' shared luck moves every arm's r-th search alike.
SCORE_SD = math.sqrt(1 + INTERACTION_SD**2 / S)


def _scores(rng, arms: int, *, shape: str, shift: float = 0.0, diverge: float = 0.0):
    """(DRAWS, arms, K) search scores as a study makes them: a search-level effect of sd 1 (the
    config that search found), plus the mean over S seeds of the seeds' own luck, shared by the
    r-th search of every arm (its re-run seeds are the same), and of the config's own response
    to each seed; ``shift`` moves the first arm; a search diverges (scores -inf) with
    probability ``diverge``."""
    size = (DRAWS, arms, K)
    if shape == "normal":
        search = rng.normal(size=size)
    elif shape == "skewed":  # rare far better configs
        search = (rng.lognormal(0.0, 1.0, size) - math.exp(0.5)) / math.sqrt(
            (math.exp(1) - 1) * math.exp(1)
        )
    else:  # "ties": accuracy on 50 examples, few distinct values
        search = (rng.binomial(50, 0.9, size) - 45) / math.sqrt(50 * 0.09)
    shared = rng.normal(0.0, SEED_SD, (DRAWS, 1, K, S))  # search r's seeds, in every arm
    own = rng.normal(0.0, INTERACTION_SD, (*size, S))  # each config's response to each seed
    scores = search + (shared + own).mean(axis=-1)
    if shape == "ties":
        scores = np.round(scores * 2) / 2  # coarse, so equal scores are common
    scores[:, 0, :] += shift
    scores[rng.random(size) < diverge] = -math.inf
    return scores


def _spec(arms: int):
    return parse_spec(
        {
            "task": "digits_mlp",  # higher is better
            "arms": [{"optimizer": "adam", "name": f"arm{i}", "baseline": i == arms - 1}
                     for i in range(arms)],
        }
    )  # fmt: skip


def _search_labels(scores: np.ndarray) -> np.ndarray:
    """The verdict's own comparisons (memtune.studies.verdict.inference) over arms whose
    searches scored ``scores``: the last arm is the baseline, every other is compared with it,
    Holm across them. (DRAWS, arms - 1) labels."""
    spec = _spec(scores.shape[1])
    labels = []
    for study in scores:
        arms = [
            ArmVerdict(
                f"arm{i}",
                "adam",
                i == len(study) - 1,
                searches=[SearchScore(index=r, score=float(v)) for r, v in enumerate(values)],
            )
            for i, values in enumerate(study)
        ]
        labels.append([c.outcome for c in _comparisons(spec, arms)])
    return np.array(labels)


@pytest.mark.parametrize(
    ("shape", "diverge"), [("normal", 0.0), ("skewed", 0.0), ("ties", 0.0), ("normal", 0.15)]
)
def test_the_same_optimizer_in_two_arms_is_labelled_at_most_at_the_tests_size(shape, diverge):
    rng = np.random.default_rng(24)
    labels = _search_labels(_scores(rng, 2, shape=shape, diverge=diverge))
    rate = np.isin(labels, ("better", "worse")).mean()
    print(f"A/A over searches ({shape}, diverging {diverge:.0%}): labelled {rate:.2%} of {DRAWS}")
    assert rate <= LIMIT


def test_six_arms_of_one_optimizer_keep_the_family_wise_rate():
    rng = np.random.default_rng(6)
    labels = _search_labels(_scores(rng, 6, shape="normal"))
    any_false = np.isin(labels, ("better", "worse")).any(axis=1).mean()
    print(f"six arms of one optimizer: at least one label in {any_false:.2%} of {DRAWS} studies")
    assert any_false <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / DRAWS)


@pytest.mark.parametrize(("shift", "at_least"), [(2.0, 0.70), (3.0, 0.95)])
def test_power_at_two_and_three_search_level_standard_deviations(shift, at_least):
    """A shift of the sd of a search's score within a study (search effect and the config's
    response to its seeds; the seeds' shared luck cancels between arms)."""
    rng = np.random.default_rng(int(shift))
    labels = _search_labels(_scores(rng, 2, shape="normal", shift=shift * SCORE_SD))
    power = float((labels == "better").mean())
    print(f"shift of {shift:g} search-level sd, K={K}, S={S}: 'better' in {power:.2%}")
    assert power >= at_least and not (labels == "worse").any()


def test_one_search_per_arm_never_gives_an_optimizer_label():
    """K = 1: whatever the numbers, the label is about configs."""
    for p_adjusted, direction in ((0.001, 1), (0.001, -1), (0.5, 1)):
        outcome, _ = decide(
            mode="max",
            p_adjusted=p_adjusted,
            direction=direction,
            interval=None,
            min_p=0.001,
            scope="config",
        )
        assert outcome not in ("better", "worse")
