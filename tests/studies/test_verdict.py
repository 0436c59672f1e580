"""The verdict over searches (K >= 2 per arm): each search's score, the exact rank-sum test and
Hodges-Lehmann interval of two arms' scores, Holm, range edges, what the labels say, and the
luck of the search inside the answer."""

from __future__ import annotations

import math

import pytest

from memtune.studies.records import Phase, TrialRecord, TrialState
from memtune.studies.spec import parse_spec
from memtune.studies.verdict import build_verdict, format_verdict
from tests.studies.epochs import epoch as _epoch

K, SEEDS = 6, [1, 2]


def _spec(arms=None, searches=K, **extra):
    return parse_spec(
        {
            "task": "digits_mlp",
            "arms": arms or [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
            "budget": {"searches": searches, "trials_per_search": 2},
            "seeds": SEEDS,
            **extra,
        }
    )


def _search(arm, index, score, config, *, seed_noise=0.0, validation=None, state=None):
    """One search's records: two searched trials (the second the best, its final validation
    value ``validation``) and its config re-run on SEEDS with test values around ``score``."""
    best = validation if validation is not None else score
    records = [
        TrialRecord(f"{arm}-{index}-s0", arm, Phase.SEARCH, 10**6 + index, {**config, "lr": 0.02},
                    TrialState.COMPLETED, [_epoch(1, {"val_accuracy": best - 0.1})], repeat=index),
        TrialRecord(f"{arm}-{index}-s1", arm, Phase.SEARCH, 10**6 + index, config,
                    TrialState.COMPLETED, [_epoch(1, {"val_accuracy": best})], repeat=index),
    ]  # fmt: skip
    for n, seed in enumerate(s + 100_000 * index for s in SEEDS):  # search r's own seeds
        value = score + seed_noise * (1 if n % 2 else -1)
        epochs = [_epoch(1, {"val_accuracy": best - 0.05}), _epoch(2, {"val_accuracy": best})]
        epochs[-1].metrics["test_accuracy"] = value
        records.append(
            TrialRecord(f"{arm}-{index}-seed{seed}", arm, Phase.SEED, seed, config,
                        state or TrialState.COMPLETED, epochs, repeat=index)
        )  # fmt: skip
    return records


def _study(scores: dict[str, list[float]], configs: dict[str, dict] | None = None, **kwargs):
    records = []
    for arm, values in scores.items():
        for index, score in enumerate(values):
            config = (configs or {}).get(arm, {"lr": 0.05 if arm == "sgd" else 0.3})
            records += _search(arm, index, score, config, **kwargs)
    return records


BASE = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90]


def test_an_arm_whose_every_search_beats_every_baseline_search_is_better():
    spec = _spec()
    verdict = build_verdict(spec, _study({"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE]}))
    assert verdict.scope == "optimizer" and verdict.searches_per_arm == K
    (comparison,) = verdict.comparisons
    assert comparison.outcome == "better" and comparison.scope == "optimizer"
    assert comparison.p_value == pytest.approx(2 / math.comb(12, 6))  # 0.0022: all 6 above
    assert comparison.difference == pytest.approx(0.13)  # the median of the 36 differences
    assert 0 < comparison.ci_low <= 0.13 <= comparison.ci_high
    assert comparison.searches == comparison.baseline_searches == K
    assert comparison.statement == (
        "am_sgd better than sgd, each tuned by 2-trial searches (6 against 6 searches)"
    )
    arms = {a.arm: a for a in verdict.arms}
    assert arms["sgd"].scores == pytest.approx(BASE)
    assert arms["sgd"].mean == pytest.approx(0.85)  # the mean of the search scores


def test_the_luck_of_one_search_is_not_a_difference_between_optimizers():
    """Search 0 of the arm found a far better config than search 0 of the baseline, and its
    seeds agree (the seed-level test of that one pair of configs would call it), but the
    other searches interleave: the optimizers are not told apart."""
    arm = [0.95, 0.81, 0.83, 0.85, 0.87, 0.89]
    verdict = build_verdict(_spec(), _study({"sgd": BASE, "am_sgd": arm}, seed_noise=0.001))
    (comparison,) = verdict.comparisons
    assert comparison.outcome == "no clear difference" and comparison.p_value > 0.5
    assert comparison.ci_low < 0 < comparison.ci_high


def test_a_search_score_is_its_configs_mean_over_the_seeds():
    verdict = build_verdict(_spec(), _study({"sgd": BASE, "am_sgd": BASE}, seed_noise=0.01))
    search = verdict.arms[1].searches[0]
    assert search.seed_values == {1: pytest.approx(0.79), 2: pytest.approx(0.81)}
    assert verdict.arms[1].searches[1].seed_values.keys() == {100_001, 100_002}
    assert search.score == pytest.approx(0.80) and search.config == {"lr": 0.3}
    assert search.seed == _spec().searches(_spec().arms[1])[0].seed
    assert search.best_validation == pytest.approx(0.80) and search.trials == 2


def test_a_diverged_or_failed_seed_makes_its_search_score_the_worst():
    records = _study({"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE]})
    seed_runs = [r for r in records if r.arm == "am_sgd" and r.phase == Phase.SEED]
    seed_runs[0].state = TrialState.DIVERGED
    seed_runs[2].state, seed_runs[2].error = TrialState.ERROR, "RuntimeError: boom"
    verdict = build_verdict(_spec(), records)
    arm = verdict.arms[1]
    assert [s.score for s in arm.searches[:2]] == [-math.inf, -math.inf]
    assert "failed" in arm.searches[1].note and arm.seeds_errored == 1
    (comparison,) = verdict.comparisons
    assert comparison.outcome != "better"  # two of its six searches now rank last
    assert comparison.ci_low == -math.inf


def test_an_arm_whose_every_search_diverged_is_worse():
    records = [r for r in _study({"sgd": BASE, "am_sgd": BASE}) if not (
        r.arm == "am_sgd" and r.phase == Phase.SEED)]  # fmt: skip
    for r in records:
        if r.arm == "am_sgd":
            r.state = TrialState.DIVERGED
    verdict = build_verdict(_spec(), records)
    assert verdict.arms[1].scores == [-math.inf] * K and "diverging" in verdict.arms[1].note
    (comparison,) = verdict.comparisons
    assert comparison.outcome == "worse" and comparison.difference == -math.inf


def test_holm_across_arms_and_the_budget_each_label_holds_at():
    spec = _spec(
        [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}, {"optimizer": "adam"}]
    )
    records = _study(
        {"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE], "adam": [v + 0.005 for v in BASE]},
        configs={"adam": {"lr": 0.003}},
    )
    verdict = build_verdict(spec, records)
    comparisons = {c.arm: c for c in verdict.comparisons}
    assert comparisons["am_sgd"].p_adjusted == pytest.approx(2 * 2 / 924)
    assert comparisons["am_sgd"].outcome == "better"
    assert comparisons["adam"].outcome == "no clear difference"
    assert verdict.budget == (
        "6 independent searches of 2 trials per arm, each search's config re-run on 2 seeds"
    )


def test_too_few_searches_are_underpowered():
    spec = _spec(searches=3)
    records = _study({"sgd": BASE[:3], "am_sgd": [v + 0.2 for v in BASE[:3]]})
    (comparison,) = build_verdict(spec, records).comparisons
    assert comparison.outcome == "underpowered" and comparison.min_attainable_p == 0.1
    assert any("budget.searches: with 3 searches" in w for w in spec.warnings)


def test_a_soft_edge_in_more_than_half_the_searches_makes_it_inconclusive():
    records = _study({"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE]})
    at_edge = 0
    for r in records:  # am_sgd's lam at 0.98 of [0.01, 1] in four of its six searches
        if r.arm == "am_sgd" and r.repeat < 4:
            r.config = {"lr": 0.3, "lam": 0.98}
            at_edge += 1
    verdict = build_verdict(_spec(), records)
    (comparison,) = verdict.comparisons
    assert comparison.outcome == "inconclusive"
    assert "lam within 5% of a soft edge of [0.01, 1] in 4 of 6 searches" in comparison.reason
    assert verdict.arms[1].searches[0].edges == ["lam at 0.98, upper edge of [0.01, 1]"]


def test_a_soft_edge_in_half_the_searches_is_not_enough():
    records = _study({"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE]})
    for r in records:
        if r.arm == "am_sgd" and r.repeat < 3:
            r.config = {"lr": 0.3, "lam": 0.98}
    (comparison,) = build_verdict(_spec(), records).comparisons
    assert comparison.outcome == "better"


def test_a_baseline_at_a_soft_edge_voids_every_comparison():
    spec = _spec(
        [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}, {"optimizer": "adam"}]
    )
    records = _study(
        {"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE], "adam": BASE},
        configs={"sgd": {"lr": 0.99}, "adam": {"lr": 0.003}},
    )
    comparisons = build_verdict(spec, records).comparisons
    assert [c.outcome for c in comparisons] == ["inconclusive", "inconclusive"]
    assert all(c.reason.startswith("the baseline's range edge: lr") for c in comparisons)


def test_searches_set_aside_by_an_extension_are_shown_not_compared():
    spec = _spec([{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd", "set_aside": 6}])
    records = _study({"sgd": BASE, "am_sgd": [v - 0.5 for v in BASE]})  # under the old range
    for index, score in enumerate([v + 0.13 for v in BASE]):
        records += _search("am_sgd", 6 + index, score, {"lr": 0.3})
    verdict = build_verdict(spec, records)
    arm = verdict.arms[1]
    assert len(arm.searches) == 12 and sum(s.set_aside for s in arm.searches) == 6
    assert arm.scores == pytest.approx([v + 0.13 for v in BASE])
    assert verdict.comparisons[0].outcome == "better"
    assert any("set aside" in w for w in verdict.warnings)


def test_an_unfinished_search_is_left_out_with_its_counterpart_in_the_baseline():
    """A time limit that cut am_sgd's sixth search short: the baseline's sixth is left out
    too, so the arm whose searches came first or ended early gains nothing."""
    records = _study({"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE]})
    records = [r for r in records if not (r.arm == "am_sgd" and r.repeat == 5 and r.seed % 10 == 2)]
    verdict = build_verdict(_spec(), records)
    assert verdict.arms[1].searches[5].score is None and len(verdict.arms[1].scores) == 5
    (comparison,) = verdict.comparisons
    assert comparison.searches == comparison.baseline_searches == 5
    assert comparison.min_attainable_p == pytest.approx(2 / math.comb(10, 5))


def test_the_default_target_is_the_median_of_every_searchs_best_validation_value():
    records = _study({"sgd": BASE, "am_sgd": [v + 0.1 for v in BASE]})
    verdict = build_verdict(_spec(), records)
    assert verdict.target == pytest.approx(0.90)  # the median of 0.80..0.90 and 0.90..1.00
    assert "12 searches, all arms" in verdict.target_source
    arms = {a.arm: a for a in verdict.arms}
    assert arms["am_sgd"].target_hit_rate == 1.0 and arms["sgd"].target_hit_rate == 1 / 6


def test_the_text_shows_every_search_score_and_what_the_label_holds_for():
    text = format_verdict(
        build_verdict(_spec(), _study({"sgd": BASE, "am_sgd": [v + 0.13 for v in BASE]}))
    )
    assert "0.8 0.82 0.84 0.86 0.88 0.9" in text  # the baseline's scores, sorted
    assert "-> better" in text and "each tuned by 2-trial searches" in text
    assert "Budget: 6 independent searches of 2 trials per arm" in text
    assert "exact rank-sum" in text and "Hodges-Lehmann" in text
