"""The reproduction's judgement: checks measured from study documents, Holm across a claim,
and the one line per claim that follows from the numbers."""

from __future__ import annotations

import math
import random

import pytest

from memtune.reproduce import judge
from memtune.reproduce.claims import OVERHEAD_MARGIN, Check
from memtune.reproduce.document import BenchResult, CheckRow, ClaimEntry
from memtune.studies import stats
from memtune.studies.verdict import ArmVerdict, SearchScore, Verdict

SEEDS = range(1, 10)
K = 7  # claim 1's searches per arm


def _completed(searches: dict[str, list[SearchScore]], mode: str, **verdict: object) -> dict:
    """A completed study's document: per arm (the first the memory optimizer's), its searches."""
    arms = [
        ArmVerdict(arm=arm, optimizer=arm, baseline=index == 0, searches=arm_searches)
        for index, (arm, arm_searches) in enumerate(searches.items())
    ]
    built = Verdict(study="s", task="t", metric="m", mode=mode, arms=arms, comparisons=[],
                    **verdict)  # fmt: skip
    return {"status": "completed", "verdict": built.to_dict(), "trials": {}}


def _document(values: dict[str, dict[int, float]], mode: str = "max", errored=()) -> dict:
    """A completed study of fixed settings: one search per arm, its values by seed."""
    return _completed(
        {
            arm: [SearchScore(index=0, config={"lr": 0.1}, seed_values=by_seed,
                              seeds_errored=list(errored) if index == 0 else [])]
            for index, (arm, by_seed) in enumerate(values.items())
        },
        mode,
    )  # fmt: skip


def _searched(scores: dict[str, list[float]], mode: str = "max", edge: str | None = None) -> dict:
    """A completed study of K searches per arm with these search scores."""
    document = _completed(
        {
            arm: [SearchScore(index=i, config={"lr": 0.1}, score=score)
                  for i, score in enumerate(values)]
            for arm, values in scores.items()
        },
        mode,
        searches_per_arm=len(next(iter(scores.values()))), trials_per_search=3, seeds=[1, 2],
    )  # fmt: skip
    document["verdict"]["arms"][0]["edge_note"] = edge
    return document


def _claim(rows: list[CheckRow]) -> ClaimEntry:
    return ClaimEntry(
        number=9, title="t", statement="s", paper="p", design="d", budget="b", studies=[],
        checks=rows,
    )  # fmt: skip


def _judged(rows: list[CheckRow]) -> ClaimEntry:
    return judge.judge_claim(_claim(rows))


def _measured_seeds(check: Check, values: dict[str, dict[int, float]], mode="max") -> CheckRow:
    return judge.measure(check, {check.study: _document(values, mode)})


def _measured(check: Check, scores: dict[str, list[float]], mode="max", **kw) -> CheckRow:
    return judge.measure(check, {check.study: _searched(scores, mode, **kw)})


# --------------------------------------------------------------------------------------------
# Optimizer against optimizer: search scores
# --------------------------------------------------------------------------------------------


def test_every_search_of_the_memory_optimizer_ahead_is_supported_and_reproduced():
    rng = random.Random(0)
    scores = {
        "am": [0.91 + rng.gauss(0, 0.001) for _ in range(K)],
        "ref": [0.90 + rng.gauss(0, 0.001) for _ in range(K)],
    }
    row = _measured(Check("s", "am", "ref"), scores)
    assert row.unit == "searches" and (row.arm_n, row.reference_n) == (K, K)
    assert row.improvement == pytest.approx(0.01, abs=0.002)  # the Hodges-Lehmann shift
    assert row.p_value == pytest.approx(2 / math.comb(2 * K, K))
    assert row.confidence >= 0.95 and row.ci_low > 0
    claim = _judged([row])
    assert row.outcome == "supported" and claim.line == "reproduced"


def test_a_metric_to_minimize_counts_a_lower_score_as_the_improvement():
    scores = {"am": [1.0 + 0.001 * i for i in range(K)], "ref": [2.0 + 0.01 * i for i in range(K)]}
    row = _measured(Check("s", "am", "ref"), scores, mode="min")
    assert row.improvement > 0.9
    assert _judged([row]).line == "reproduced"


def test_the_reference_ahead_in_every_search_is_contradicted_and_not_reproduced():
    scores = {
        "am": [0.80 + 0.001 * i for i in range(K)],
        "ref": [0.90 + 0.001 * i for i in range(K)],
    }
    row = _measured(Check("s", "am", "ref"), scores)
    claim = _judged([row])
    assert row.outcome == "contradicted" and claim.line == "not reproduced"


def test_one_supported_and_one_contradicted_check_is_mixed():
    up = {"am": [0.9 + 0.001 * i for i in range(K)], "ref": [0.8 + 0.001 * i for i in range(K)]}
    down = {"am": [0.7 + 0.001 * i for i in range(K)], "ref": [0.8 + 0.001 * i for i in range(K)]}
    rows = [_measured(Check("s", "am", "ref"), up), _measured(Check("s", "am", "ref"), down)]
    assert _judged(rows).line == "mixed"


def test_holm_over_the_claim_turns_a_lone_significant_check_inconclusive():
    # 4 against 4 searches all one way: p = 2 / 70 = 0.029 alone, 0.086 after Holm over 3
    gain = {"am": [1.0 + 0.01 * i for i in range(4)], "ref": [0.5 + 0.01 * i for i in range(4)]}
    flat = {"am": [1.0, 0.5, 1.0, 0.5], "ref": [0.5, 1.0, 0.5, 1.0]}
    assert _judged([_measured(Check("s", "am", "ref"), gain)]).line == "reproduced"
    family = [_measured(Check("s", "am", "ref"), v) for v in (gain, flat, flat)]
    judged = _judged(family)
    assert judged.checks[0].p_adjusted == pytest.approx(3 * judged.checks[0].p_value)
    assert judged.checks[0].outcome == "inconclusive" and judged.line == "inconclusive"


def test_non_inferiority_within_the_margin_is_supported_beyond_it_contradicted():
    check = Check("s", "am", "ref", "non_inferior", margin=0.005)
    rng = random.Random(1)
    within = {  # 0.2 points worse in every search, the searches spread by 0.03 points
        "am": [0.898 + rng.gauss(0, 0.0003) for _ in range(K)],
        "ref": [0.900 + rng.gauss(0, 0.0003) for _ in range(K)],
    }
    row = _measured(check, within)
    assert row.improvement < 0
    assert _judged([row]).checks[0].outcome == "supported"
    beyond = {
        "am": [0.88 + 0.0001 * i for i in range(K)],
        "ref": [0.9 + 0.0001 * i for i in range(K)],
    }
    assert _judged([_measured(check, beyond)]).checks[0].outcome == "contradicted"


def test_a_perplexity_margin_is_a_ratio_on_the_log_scale():
    check = Check("s", "am", "ref", "non_inferior", margin=math.log(1.02), scale="log")
    # 1% worse perplexity than the reference's searches, which lie around 10
    base = [10.0 * (1 + 0.0005 * i) for i in range(K)]
    scores = {"am": [b * 1.01 for b in base], "ref": base}
    row = _measured(check, scores, mode="min")
    assert math.exp(-row.improvement) == pytest.approx(1.01, rel=2e-3)
    assert _judged([row]).checks[0].outcome == "supported"


def test_diverged_searches_of_the_memory_optimizer_count_against_it():
    scores = {  # better in the searches that trained, the worst value in three
        "am": [-math.inf] * 3 + [0.95] * (K - 3),
        "ref": [0.90 + 0.001 * i for i in range(K)],
    }
    row = _measured(Check("s", "am", "ref"), scores)
    assert row.arm_diverged == 3
    assert _judged([row]).checks[0].outcome != "supported"
    perplexity = {"am": [math.inf] * K, "ref": [10.0 + i for i in range(K)]}  # min, log scale
    row = _measured(Check("s", "am", "ref", scale="log"), perplexity, mode="min")
    assert row.direction == -1 and _judged([row]).checks[0].outcome == "contradicted"


def test_a_soft_edge_in_most_searches_makes_the_check_inconclusive():
    scores = {"am": [0.9 + 0.001 * i for i in range(K)], "ref": [0.8 + 0.001 * i for i in range(K)]}
    edge = "lam within 5% of a soft edge of [0.0001, 1] in 5 of 7 searches"
    row = _measured(Check("s", "am", "ref"), scores, edge=edge)
    judged = _judged([row]).checks[0]
    assert judged.outcome == "inconclusive" and edge in judged.reason


def test_only_searches_both_arms_finished_are_compared():
    document = _searched({"am": [0.9] * K, "ref": [0.8] * K})
    arms = document["verdict"]["arms"]
    for search in arms[0]["searches"][5:]:
        search["score"] = None  # cut short by a time limit
    row = judge.measure(Check("s", "am", "ref"), {"s": document})
    assert (row.arm_n, row.reference_n) == (5, 5)


def test_non_inferiority_at_its_margin_is_supported_at_most_five_percent_of_the_time():
    """The false-positive rate of 'supported' when every search of the memory optimizer lands
    exactly a margin worse in distribution (the null's boundary), by simulation: normal,
    skewed and tied search scores."""
    rng = random.Random(3)
    margin, draws = 0.005, 1000
    check = Check("s", "am", "ref", "non_inferior", margin=margin)
    for shape in ("normal", "lognormal", "tied"):
        supported = 0
        for _ in range(draws):
            if shape == "normal":
                noise = [rng.gauss(0, 0.004) for _ in range(2 * K)]
            elif shape == "lognormal":
                noise = [0.003 * (rng.lognormvariate(0, 1) - math.exp(0.5)) for _ in range(2 * K)]
            else:
                noise = [rng.choice((-0.004, 0.0, 0.004)) for _ in range(2 * K)]
            scores = {
                "am": [0.9 - margin + n for n in noise[:K]],
                "ref": [0.9 + n for n in noise[K:]],
            }
            row = _judged([_measured(check, scores)]).checks[0]
            supported += row.outcome == "supported"
        assert supported / draws <= 0.05, shape


# --------------------------------------------------------------------------------------------
# Fixed settings: paired by seed, by (lr, seed), by round
# --------------------------------------------------------------------------------------------


def test_basin_and_escape_outcomes_are_compared_as_zero_one_with_mcnemar():
    seeds = range(1, 25)
    values = {
        "cm": {s: 3.0 if s <= 20 else 30.0 for s in seeds},  # 20 of 24 in the basin
        "adam": {s: 3.0 if s <= 4 else 30.0 for s in seeds},  # 4 of 24
    }
    check = Check("s", "cm", "adam", scale="binary", source="basin", threshold=10.0)
    row = _measured_seeds(check, values, "min")
    assert (row.arm_rate, row.reference_rate) == (20 / 24, 4 / 24)
    assert row.p_value == pytest.approx(
        stats.mcnemar_p([s <= 20 for s in seeds], [s <= 4 for s in seeds])
    )
    assert _judged([row]).line == "reproduced"


def test_a_lower_final_value_on_every_start_is_supported():
    values = {"cm": {s: 1.0 + 0.001 * s for s in SEEDS}, "adam": {s: 2.0 for s in SEEDS}}
    row = _measured_seeds(Check("s", "cm", "adam", source="seeds"), values, "min")
    assert row.unit == "seeds" and row.pairs == len(SEEDS)
    assert _judged([row]).checks[0].outcome == "supported"


def test_an_errored_seed_or_a_missing_study_makes_the_check_inconclusive():
    values = {"am": {s: 1.0 + 0.01 * s for s in SEEDS}, "ref": {s: 0.5 for s in SEEDS}}
    check = Check("s", "am", "ref", source="seeds")
    errored = judge.measure(check, {"s": _document(values, errored=[3])})
    missing = judge.measure(check, {})
    judged = _judged([errored, missing])
    assert [c.outcome for c in judged.checks] == ["inconclusive", "inconclusive"]
    assert "errored" in judged.checks[0].reason
    assert "not run" in judged.checks[1].reason
    assert judged.line == "inconclusive"


def _sweep_study(states: dict[str, dict[int, str]], finals: dict[str, float] | None = None) -> dict:
    """A completed sweep study: each seed run's state, and its final test perplexity (10, or
    ``finals[arm]``)."""
    trials = {
        f"{arm}-{seed}": {
            "arm": arm, "phase": "seed", "seed": seed, "state": state,
            "epochs": [{"test_perplexity": (finals or {}).get(arm, 10.0)}],
        }
        for arm, by_seed in states.items()
        for seed, state in by_seed.items()
    }  # fmt: skip
    trials["search"] = {"arm": "am", "phase": "search", "seed": 99, "state": "diverged"}
    seeds = sorted({seed for by_seed in states.values() for seed in by_seed})
    verdict = {"metric": "val_perplexity", "headline_metric": "test_perplexity"}
    return {"status": "completed", "verdict": verdict, "trials": trials, "spec": {"seeds": seeds}}


def test_stability_pairs_runs_by_learning_rate_and_seed_and_counts_failures_against_their_arm():
    seeds = range(1, 5)
    fine = dict.fromkeys(seeds, "completed")
    low = _sweep_study({"am": fine, "ref": fine})
    high = _sweep_study({"am": fine, "ref": dict.fromkeys(seeds, "diverged")})
    # Finite but worse than guessing every character alike: failed to train.
    top = _sweep_study({"am": fine, "ref": fine}, finals={"ref": 853.0})
    names = ("lr-0", "lr-1", "lr-2")
    check = Check("sweep", "am", "ref", scale="binary", source="stability", threshold=103.0,
                  pooled=names)  # fmt: skip
    row = judge.measure(check, dict(zip(names, (low, high, top), strict=True)))
    assert row.pairs == 12  # one pair per lr and seed; the search trial is not a sample
    assert (row.arm_diverged, row.reference_diverged) == (0, 8)
    assert row.p_value == pytest.approx(stats.mcnemar_p([True] * 12, [True] * 4 + [False] * 8))
    assert _judged([row]).checks[0].outcome == "supported"
    incomplete = judge.measure(check, {"lr-0": low, "lr-1": high})
    assert "lr-2" in incomplete.missing


def test_a_stability_pair_with_a_run_missing_or_errored_is_not_dropped_silently():
    seeds = range(1, 5)
    fine = dict.fromkeys(seeds, "completed")
    lost = _sweep_study({"am": fine, "ref": {1: "completed", 2: "completed"}})  # 3, 4 missing
    check = Check("sweep", "am", "ref", scale="binary", source="stability", pooled=("lr-0",))
    assert "seed runs missing" in judge.measure(check, {"lr-0": lost}).missing
    errored = _sweep_study({"am": {**fine, 4: "error"}, "ref": fine})
    row = _judged([judge.measure(check, {"lr-0": errored})]).checks[0]
    assert row.errored == [4] and row.outcome == "inconclusive"


def _bench(am: list[float], ref: list[float]) -> BenchResult:
    return BenchResult(
        settings={}, device="cpu", cpu="x", threads=2, seconds=1.0,
        iteration={"mlp": {"am": am, "ref": ref}},
        step={"mlp": {"am": [t / 4 for t in am], "ref": [t / 8 for t in ref]}},
        impls={"mlp": {"am": "compiled", "ref": "fused"}}, parameters={"mlp": 10},
    )  # fmt: skip


def test_iteration_time_within_ten_percent_is_negligible_and_beyond_it_is_not():
    check = Check("bench-mlp", "am", "ref", "non_inferior", OVERHEAD_MARGIN, "log", "bench")
    rng = random.Random(2)
    ref = [1e-3 * (1 + rng.gauss(0, 0.01)) for _ in range(20)]
    close = judge.measure(check, {}, _bench([t * 1.03 for t in ref], ref))
    slow = judge.measure(check, {}, _bench([t * 2.5 for t in ref], ref))
    assert close.extra["iteration_ratio"] == pytest.approx(1.03)
    assert close.extra["step_ratio"] == pytest.approx(2.06)  # step() alone, shown beside
    judged = _judged([close, slow])
    assert [c.outcome for c in judged.checks] == ["supported", "contradicted"]
    assert "did not run" in judge.measure(check, {}, None).missing


# --------------------------------------------------------------------------------------------
# Power
# --------------------------------------------------------------------------------------------


def test_detectable_effect_shrinks_with_searches_and_seeds_and_is_none_below_holms_floor():
    assert judge.detectable_effect(3, 1) is None  # 2 / 8 > 0.05
    assert judge.detectable_effect(9, 12) > judge.detectable_effect(9, 1)  # Holm's level
    effects = [judge.detectable_effect(n, 4) for n in (8, 12, 20)]
    assert effects[0] > effects[1] > effects[2] > 0
    assert judge.detectable_effect(6, 24, unit="searches") is None  # 24 x 2 / 924 > 0.05
    searches = [judge.detectable_effect(n, 24, unit="searches") for n in (7, 10)]
    assert searches[0] > searches[1] > 0


def test_the_claim_states_the_smallest_effect_its_searches_detect():
    scores = {"am": [0.9 + 0.001 * i for i in range(K)], "ref": [0.8 + 0.001 * i for i in range(K)]}
    claim = _judged([_measured(Check("s", "am", "ref"), scores) for _ in range(24)])
    assert (claim.detectable.n, claim.detectable.unit, claim.detectable.checks) == (
        K,
        "searches",
        24,
    )
    assert claim.detectable.min_attainable_p == pytest.approx(24 * 2 / math.comb(2 * K, K))
    assert claim.detectable.standardized == pytest.approx(
        judge.detectable_effect(K, 24, unit="searches")
    )
    assert claim.line_reason.endswith("at b")  # the claim's budget, in its line


def test_the_same_optimizer_in_both_arms_is_labelled_at_most_five_percent_of_the_time():
    """A/A by simulation: both arms' search scores from one distribution (normal, skewed, with
    15% of searches diverged), and both arms of a sweep failing at one rate; every 'supported'
    or 'contradicted' is then false."""
    rng = random.Random(4)
    draws = 1000

    def score(shape: str) -> float:
        if shape == "normal":
            return rng.gauss(0.9, 0.01)
        if shape == "lognormal":
            return 0.9 + 0.003 * rng.lognormvariate(0, 1)
        return -math.inf if rng.random() < 0.15 else rng.gauss(0.9, 0.01)

    for shape in ("normal", "lognormal", "diverging"):
        labelled = 0
        for _ in range(draws):
            scores = {arm: [score(shape) for _ in range(K)] for arm in ("am", "ref")}
            row = _judged([_measured(Check("s", "am", "ref"), scores)]).checks[0]
            labelled += row.outcome != "inconclusive"
        assert labelled / draws <= 0.05, (shape, labelled)

    names = tuple(f"lr-{i}" for i in range(9))
    check = Check("sweep", "am", "ref", scale="binary", source="stability", pooled=names)
    labelled = 0
    for _ in range(draws):
        documents = {
            name: _sweep_study(
                {
                    arm: {s: "diverged" if rng.random() < 0.2 else "completed" for s in (1, 2, 3)}
                    for arm in ("am", "ref")
                }
            )
            for name in names
        }
        labelled += _judged([judge.measure(check, documents)]).checks[0].outcome != "inconclusive"
    assert labelled / draws <= 0.05, labelled
