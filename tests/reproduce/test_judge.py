"""The reproduction's judgement: checks measured from study documents, Holm across a claim,
and the one line per claim that follows from the numbers."""

from __future__ import annotations

import math
import random

import pytest

from memtune.reproduce import judge
from memtune.reproduce.claims import MODES, OVERHEAD_MARGIN, Check, build_claims
from memtune.studies import stats
from memtune.studies.verdict import ArmVerdict, SearchScore, Verdict

SEEDS = range(1, 10)


def _document(values: dict[str, dict[int, float]], mode: str = "max", errored=()) -> dict:
    arms = [
        ArmVerdict(
            arm=arm,
            optimizer=arm,
            baseline=index == 0,
            searches=[
                SearchScore(
                    index=0,
                    seed_values=by_seed,
                    seeds_errored=list(errored) if index == 0 else [],
                )
            ],
        )
        for index, (arm, by_seed) in enumerate(values.items())
    ]
    verdict = Verdict(study="s", task="t", metric="m", mode=mode, arms=arms, comparisons=[])
    return {"status": "completed", "verdict": verdict.to_dict(), "trials": {}}


def _claim(rows: list[dict]) -> dict:
    return {"number": 9, "checks": rows}


def _measured(check: Check, values: dict[str, dict[int, float]], mode: str = "max") -> dict:
    return judge.measure(check, {check.study: _document(values, mode)}, None)


def test_a_clear_gain_on_every_seed_is_supported_and_the_claim_reproduced():
    rng = random.Random(0)
    values = {
        "am": {s: 0.90 + 0.01 + rng.gauss(0, 0.001) for s in SEEDS},
        "ref": {s: 0.90 + rng.gauss(0, 0.001) for s in SEEDS},
    }
    row = _measured(Check("s", "am", "ref"), values)
    assert row["improvement"] == pytest.approx(0.01, abs=0.002)
    claim = judge.judge_claim(_claim([row]))
    assert row["outcome"] == "supported"
    assert claim["line"] == "reproduced"


def test_a_metric_to_minimize_counts_a_lower_value_as_the_improvement():
    values = {"am": {s: 1.0 + 0.001 * s for s in SEEDS}, "ref": {s: 2.0 for s in SEEDS}}
    row = _measured(Check("s", "am", "ref"), values, mode="min")
    assert row["improvement"] > 0.9
    assert judge.judge_claim(_claim([row]))["line"] == "reproduced"


def test_the_reference_better_everywhere_is_contradicted_and_not_reproduced():
    values = {"am": {s: 0.80 + 0.001 * s for s in SEEDS}, "ref": {s: 0.90 for s in SEEDS}}
    row = _measured(Check("s", "am", "ref"), values)
    claim = judge.judge_claim(_claim([row]))
    assert row["outcome"] == "contradicted"
    assert claim["line"] == "not reproduced"


def test_one_supported_and_one_contradicted_check_is_mixed():
    up = {"am": {s: 0.9 + 0.001 * s for s in SEEDS}, "ref": {s: 0.8 for s in SEEDS}}
    down = {"am": {s: 0.7 + 0.001 * s for s in SEEDS}, "ref": {s: 0.8 for s in SEEDS}}
    rows = [_measured(Check("s", "am", "ref"), up), _measured(Check("s", "am", "ref"), down)]
    assert judge.judge_claim(_claim(rows))["line"] == "mixed"


def test_holm_over_the_claim_turns_a_lone_significant_check_inconclusive():
    # 6 seeds all one way: p = 2 / 64 = 0.031 alone, 0.094 after Holm over 3 checks
    seeds = range(1, 7)
    gain = {"am": {s: 1.0 + 0.01 * s for s in seeds}, "ref": {s: 0.5 for s in seeds}}
    flat = {"am": {s: 1.0 + (-1) ** s * 0.01 * s for s in seeds}, "ref": {s: 1.0 for s in seeds}}
    alone = judge.judge_claim(_claim([_measured(Check("s", "am", "ref"), gain)]))
    assert alone["line"] == "reproduced"
    family = [_measured(Check("s", "am", "ref"), v) for v in (gain, flat, flat)]
    judged = judge.judge_claim(_claim(family))
    assert judged["checks"][0]["p_adjusted"] == pytest.approx(3 * judged["checks"][0]["p_value"])
    assert judged["checks"][0]["outcome"] == "inconclusive"
    assert judged["line"] == "inconclusive"


def test_non_inferiority_within_the_margin_is_supported_beyond_it_contradicted():
    check = Check("s", "am", "ref", "non_inferior", margin=0.005)
    rng = random.Random(1)
    within = {
        "am": {s: 0.898 + rng.gauss(0, 0.0003) for s in SEEDS},  # 0.2 points worse
        "ref": {s: 0.900 for s in SEEDS},
    }
    row = _measured(check, within)
    assert row["improvement"] < 0
    assert judge.judge_claim(_claim([row]))["checks"][0]["outcome"] == "supported"
    beyond = {"am": {s: 0.88 + 0.0001 * s for s in SEEDS}, "ref": {s: 0.900 for s in SEEDS}}
    row = _measured(check, beyond)
    assert judge.judge_claim(_claim([row]))["checks"][0]["outcome"] == "contradicted"


def test_a_perplexity_margin_is_a_ratio_on_the_log_scale():
    check = Check("s", "am", "ref", "non_inferior", margin=math.log(1.02), scale="log")
    # 1% worse perplexity on every seed at two very different levels: within a 2% margin
    values = {
        "am": {s: (10.0 if s % 2 else 100.0) * 1.01 * (1 + 1e-4 * s) for s in SEEDS},
        "ref": {s: 10.0 if s % 2 else 100.0 for s in SEEDS},
    }
    row = _measured(check, values, mode="min")
    assert math.exp(-row["improvement"]) == pytest.approx(1.01, rel=1e-3)
    assert judge.judge_claim(_claim([row]))["checks"][0]["outcome"] == "supported"


def test_diverged_seeds_of_the_memory_optimizer_count_against_it():
    values = {
        "am": {s: (-math.inf if s <= 3 else 0.95) for s in SEEDS},  # better where it trained
        "ref": {s: 0.90 for s in SEEDS},
    }
    row = _measured(Check("s", "am", "ref"), values)
    assert row["arm_diverged"] == 3
    assert row["finite_pairs"] == 6
    judged = judge.judge_claim(_claim([row]))
    assert judged["checks"][0]["outcome"] != "supported"


def test_basin_and_escape_outcomes_are_compared_as_zero_one_with_mcnemar():
    seeds = range(1, 25)
    values = {
        "cm": {s: 3.0 if s <= 20 else 30.0 for s in seeds},  # 20 of 24 in the basin
        "adam": {s: 3.0 if s <= 4 else 30.0 for s in seeds},  # 4 of 24
    }
    row = _measured(
        Check("s", "cm", "adam", scale="binary", source="basin", threshold=10.0), values, "min"
    )
    assert (row["arm_rate"], row["reference_rate"]) == (20 / 24, 4 / 24)
    assert row["p_value"] == pytest.approx(
        stats.mcnemar_p([s <= 20 for s in seeds], [s <= 4 for s in seeds])
    )
    assert judge.judge_claim(_claim([row]))["line"] == "reproduced"


def test_an_errored_seed_or_a_missing_study_makes_the_check_inconclusive():
    values = {"am": {s: 1.0 + 0.01 * s for s in SEEDS}, "ref": {s: 0.5 for s in SEEDS}}
    check = Check("s", "am", "ref")
    errored = judge.measure(check, {"s": _document(values, errored=[3])}, None)
    missing = judge.measure(check, {}, None)
    judged = judge.judge_claim(_claim([errored, missing]))
    assert [c["outcome"] for c in judged["checks"]] == ["inconclusive", "inconclusive"]
    assert "errored" in judged["checks"][0]["reason"]
    assert "not run" in judged["checks"][1]["reason"]
    assert judged["line"] == "inconclusive"


def test_step_time_ratio_within_ten_percent_is_negligible_and_beyond_it_is_not():
    check = Check("bench", "am", "ref", "non_inferior", OVERHEAD_MARGIN, "log", "bench")
    rng = random.Random(2)
    ref = [1e-3 * (1 + rng.gauss(0, 0.01)) for _ in range(20)]
    close = {"times": {"am": [t * 1.03 for t in ref], "ref": ref}}
    slow = {"times": {"am": [t * 2.5 for t in ref], "ref": ref}}
    rows = [judge.measure(check, {}, close), judge.measure(check, {}, slow)]
    judged = judge.judge_claim(_claim(rows))
    assert [c["outcome"] for c in judged["checks"]] == ["supported", "contradicted"]


def test_non_inferiority_at_its_margin_is_supported_at_most_five_percent_of_the_time():
    """The false-positive rate of 'supported' when the memory optimizer is exactly a margin
    worse (the null's boundary), by simulation: normal, skewed and tied improvements."""
    rng = random.Random(3)
    margin, draws = 0.005, 600
    check = Check("s", "am", "ref", "non_inferior", margin=margin)
    for shape in ("normal", "lognormal", "tied"):
        supported = 0
        for _ in range(draws):
            if shape == "normal":
                noise = [rng.gauss(0, 0.004) for _ in SEEDS]
            elif shape == "lognormal":
                raw = [rng.lognormvariate(0, 1) for _ in SEEDS]
                noise = [0.003 * (x - math.exp(0.5)) for x in raw]
            else:
                noise = [rng.choice((-0.004, 0.0, 0.004)) for _ in SEEDS]
            values = {
                "am": {s: 0.9 - margin + n for s, n in zip(SEEDS, noise, strict=True)},
                "ref": {s: 0.9 for s in SEEDS},
            }
            row = judge.judge_claim(_claim([_measured(check, values)]))["checks"][0]
            supported += row["outcome"] == "supported"
        assert supported / draws <= 0.05, shape


def test_detectable_effect_shrinks_with_seeds_and_is_none_below_holms_floor():
    assert judge.detectable_effect(3, 1) is None  # 2 / 8 > 0.05
    assert judge.detectable_effect(9, 12) > judge.detectable_effect(9, 1)  # Holm's level
    effects = [judge.detectable_effect(n, 4) for n in (8, 12, 20)]
    assert effects[0] > effects[1] > effects[2] > 0


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_every_claims_seeds_can_reach_significance_after_holm(mode):
    for claim in build_claims(mode):
        for spec in claim.studies:
            assert stats.min_attainable_p(len(spec.seeds), len(claim.checks)) < stats.ALPHA, (
                spec.name
            )


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_check_names_a_study_of_its_claim_whose_reference_arm_is_the_memory_optimizer(mode):
    for claim in build_claims(mode):
        studies = {spec.name: spec for spec in claim.studies}
        for check in claim.checks:
            if check.source == "bench":
                continue
            spec = next(
                (s for c in build_claims(mode) for s in c.studies if s.name == check.study), None
            )
            assert spec is not None, check.label
            assert spec.baseline_arm.label == check.arm, check.label
            assert check.reference in {arm.label for arm in spec.arms}
            if check.source != "step_time":
                assert check.study in studies  # judged on its own claim's studies
        for spec in claim.studies:  # fair: every arm the same budget and fresh seeds
            assert spec.budget.trials_per_search >= 1
            assert not set(spec.seeds) & set(spec.search_seeds)


@pytest.mark.parametrize("mode", list(MODES))
def test_the_fixed_arms_of_claims_four_and_five_pin_every_setting_the_report_names(mode):
    """Claims 4 and 5 run no search: their one trial per seed must train the papers' settings,
    not a random draw of whatever the lr left free (Adam+CM ran topc 11, decay 0.85 when only
    lr was pinned)."""
    expected = {
        "adam": {},
        "adam_cm": {"topc": 5, "decay": 0.7},
        "adam_cg": {"topc": 10, "decay": 0.7},
        "sam": {"base": "adam", "rho": 0.05},
    }
    for claim in build_claims(mode):
        if claim.number not in (4, 5):
            continue
        for spec in claim.studies:
            for arm in spec.arms:
                assert spec.searched(arm) == [], (spec.name, arm.label)  # nothing left to draw
                lr = arm.fixed["lr"]
                assert arm.fixed == {"lr": lr, **expected[arm.optimizer]}, (spec.name, arm.label)
            assert spec.searches_per_arm == 1  # configs compared over random starts
