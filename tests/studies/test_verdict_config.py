"""The verdict of a study with one search per arm (K = 1): its config against the baseline's,
paired by seed. The headline on the test split, labels that say "config" (never a claim about
the optimizer), divergences and failures counted, range edges, costs and time to target."""

from __future__ import annotations

import math

import pytest

from memtune.studies.nonfinite import to_json
from memtune.studies.records import Phase, TrialRecord, TrialState
from memtune.studies.spec import parse_spec
from memtune.studies.verdict import Verdict, build_verdict, format_verdict
from tests.studies.epochs import epoch as _epoch

SEEDS = [1, 2, 3, 4, 5, 6, 7, 8]
SPEC = parse_spec(
    {
        "task": "digits_mlp",
        "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
        "seeds": SEEDS,
        "budget": {"searches": 1},
    }
)


def _record(arm, phase, seed, accuracies, *, test=None, state=TrialState.COMPLETED, config=None):
    epochs = [_epoch(i + 1, {"val_accuracy": a}) for i, a in enumerate(accuracies)]
    if test is not None and epochs:
        epochs[-1].metrics["test_accuracy"] = test
    return TrialRecord(
        f"{arm}-{phase}-{seed}-{accuracies}", arm, phase, seed, config or {}, state, epochs
    )


def _records(gain: float, spec=SPEC, arm="am_sgd", config=None):
    records = [
        _record("sgd", Phase.SEARCH, 0, [0.5, 0.8], config={"lr": 0.1}),
        _record(arm, Phase.SEARCH, 0, [0.7, 0.9], config=config or {"lr": 0.3}),
        _record(arm, Phase.SEARCH, 0, [0.1], state=TrialState.DIVERGED, config={"lr": 9.0}),
    ]
    for seed in spec.seeds:
        base = 0.8 + 0.01 * seed
        records.append(
            _record("sgd", Phase.SEED, seed, [0.5, base], test=base - 0.02, config={"lr": 0.1})
        )
        records.append(
            _record(
                arm,
                Phase.SEED,
                seed,
                [0.5, base + gain],
                test=base - 0.02 + gain + 0.001 * seed,
                config=config or {"lr": 0.3},
            )
        )
    return records


def _comparison(records, spec=SPEC):
    (comparison,) = build_verdict(spec, records).comparisons
    return comparison


def test_headline_is_the_test_split_and_the_config_is_the_seed_runs_own():
    verdict = build_verdict(SPEC, _records(0.05))
    assert verdict.headline_metric == "test_accuracy" and verdict.held_out
    arms = {a.arm: a for a in verdict.arms}
    assert arms["am_sgd"].searches[0].config == {"lr": 0.3}
    assert arms["am_sgd"].search_diverged == 1
    assert arms["sgd"].mean == pytest.approx(0.8 + 0.045 - 0.02)  # test, not validation
    assert arms["sgd"].validation_mean == pytest.approx(0.845)


def test_clear_gain_over_eight_seeds_is_config_better_never_an_optimizer_label():
    verdict = build_verdict(SPEC, _records(0.05))
    (comparison,) = verdict.comparisons
    assert comparison.outcome == "config better" and comparison.reason is None
    assert comparison.scope == verdict.scope == "config"
    assert "search not replicated" in comparison.statement
    assert comparison.pairs == 8 and comparison.p_value == pytest.approx(2 / 256)
    assert comparison.p_adjusted == comparison.p_value  # one comparison: Holm changes nothing
    assert comparison.difference == pytest.approx(0.0545) and comparison.ci_low > 0
    assert comparison.relative_difference_pct == pytest.approx(100 * 0.0545 / 0.825)


def test_clear_loss_is_worse_and_alternating_signs_are_no_clear_difference():
    assert _comparison(_records(-0.05)).outcome == "config worse"
    records = _records(0.0)
    for r in records:
        if r.arm == "am_sgd" and r.phase == Phase.SEED:
            r.epochs[-1].metrics["test_accuracy"] += 0.02 * (-1) ** r.seed - 0.001 * r.seed
    assert _comparison(records).outcome == "no clear difference"


def test_worse_on_every_seed_with_one_diverged_seed_is_worse():
    records = _records(-0.05)
    diverged = next(r for r in records if r.arm == "am_sgd" and r.phase == Phase.SEED)
    diverged.state = TrialState.DIVERGED
    verdict = build_verdict(SPEC, records)
    arm = {a.arm: a for a in verdict.arms}["am_sgd"]
    assert arm.seeds_diverged == 1 and arm.seed_values[diverged.seed] == -math.inf
    assert math.isfinite(arm.mean)  # the mean is over the finite seeds, the count beside it
    (comparison,) = verdict.comparisons
    assert comparison.pairs == 8 and comparison.finite_pairs == 7
    assert comparison.outcome == "config worse"


def test_better_on_seven_seeds_but_diverged_on_one_is_not_better():
    records = _records(0.05)
    next(
        r for r in records if r.arm == "am_sgd" and r.phase == Phase.SEED
    ).state = TrialState.DIVERGED
    assert _comparison(records).outcome != "config better"


def test_min_mode_metric_lower_is_better():
    spec = parse_spec({**SPEC.model_dump(exclude={"metric", "mode"}), "metric": "val_loss"})
    records = []
    for seed in spec.seeds:
        for arm, loss in (("sgd", 0.5), ("am_sgd", 0.3)):
            record = TrialRecord(f"{arm}-{seed}", arm, Phase.SEED, seed, {"lr": 0.1})
            record.epochs = [_epoch(1, {"val_loss": loss, "test_loss": loss + 0.001 * seed})]
            record.state = TrialState.COMPLETED
            records.append(record)
    (comparison,) = build_verdict(spec, records).comparisons
    assert comparison.difference < 0 and comparison.outcome == "config better"


def test_holm_across_three_arms_adjusts_the_p_values():
    spec = parse_spec(
        {
            "task": "digits_mlp",
            "arms": [
                {"optimizer": "sgd", "baseline": True},
                {"optimizer": "am_sgd"},
                {"optimizer": "adam"},
                {"optimizer": "adamw"},
            ],
            "seeds": SEEDS,
            "budget": {"searches": 1},
        }
    )
    records = []
    for seed in SEEDS:
        base = 0.8 + 0.01 * seed
        records.append(_record("sgd", Phase.SEED, seed, [base], test=base))
        records.append(_record("am_sgd", Phase.SEED, seed, [base], test=base + 0.01 * seed))
        noise = 0.003 * (-1) ** seed * seed
        records.append(_record("adam", Phase.SEED, seed, [base], test=base + noise))
        records.append(_record("adamw", Phase.SEED, seed, [base], test=base - 0.002 * seed))
    comparisons = {c.arm: c for c in build_verdict(spec, records).comparisons}
    assert comparisons["am_sgd"].p_value == pytest.approx(2 / 256)
    assert comparisons["am_sgd"].p_adjusted == pytest.approx(3 * 2 / 256)
    assert comparisons["adamw"].p_adjusted == pytest.approx(3 * 2 / 256)
    assert comparisons["am_sgd"].outcome == "config better"
    assert comparisons["adamw"].outcome == "config worse"
    assert comparisons["adam"].p_adjusted >= comparisons["adam"].p_value
    assert comparisons["adam"].outcome == "no clear difference"


def test_three_seeds_are_underpowered_not_leaning():
    spec = parse_spec({**SPEC.model_dump(exclude={"seeds"}), "seeds": [1, 2, 3]})
    comparison = _comparison(_records(0.05, spec), spec)
    assert comparison.outcome == "underpowered" and comparison.min_attainable_p == 0.25


def test_an_arm_whose_search_never_trained_has_the_reason_and_no_config():
    spec = parse_spec({**SPEC.model_dump(), "budget": {"searches": 1, "trials_per_search": 2}})
    records = [r for r in _records(0.05) if not (r.arm == "am_sgd" and r.phase == Phase.SEED)]
    for r in records:
        if r.arm == "am_sgd":
            r.state = TrialState.DIVERGED
    verdict = build_verdict(spec, records)
    arm = {a.arm: a for a in verdict.arms}["am_sgd"]
    assert arm.searches[0].config is None and arm.searches[0].score == -math.inf
    assert "diverging" in arm.note and "diverging" in verdict.comparisons[0].reason


def test_a_seed_run_that_failed_counts_against_its_arm():
    """A failure after the retry is the arm's worst value, not a hole in the data: an arm that
    errors on one seed and wins the others is not called better."""
    records = _records(0.05)
    errored = next(r for r in records if r.arm == "am_sgd" and r.phase == Phase.SEED)
    errored.state, errored.error = TrialState.ERROR, "RuntimeError: boom"
    verdict = build_verdict(SPEC, records)
    arm = {a.arm: a for a in verdict.arms}["am_sgd"]
    assert arm.seeds_errored == 1 and arm.seed_values[errored.seed] == -math.inf
    (comparison,) = verdict.comparisons
    assert comparison.pairs == 8 and comparison.outcome != "config better"


def test_a_best_value_on_a_soft_edge_of_its_range_makes_the_comparison_inconclusive():
    verdict = build_verdict(SPEC, _records(0.05, config={"lr": 9.8, "lam": 0.1}))
    arm = {a.arm: a for a in verdict.arms}["am_sgd"]
    assert arm.searches[0].edges == ["lr at 9.8, upper edge of [0.01, 10]"]
    assert "range edge: lr" in arm.edge_note and "1 of 1 searches" in arm.edge_note
    assert any(w.startswith("am_sgd: range edge") for w in verdict.warnings)
    assert arm.searched[0] == {
        "name": "lr", "low": 0.01, "high": 10.0, "log": True, "edges": ["soft", "soft"]
    }  # fmt: skip
    (comparison,) = verdict.comparisons
    assert comparison.outcome == "inconclusive" and "lr" in comparison.reason


def test_a_best_value_on_a_hard_edge_is_no_reason_to_doubt():
    """Momentum's 0.99 and a warmup of 0 are limits, not choices: not flagged."""
    spec = parse_spec(
        {
            **SPEC.model_dump(),
            "arms": [{"optimizer": "adam", "baseline": True}, {"optimizer": "sgd"}],
        }
    )
    records = _records(0.05, spec, arm="sgd", config={"lr": 0.1, "momentum": 0.99})
    for r in records:
        if r.arm == "sgd" and r.config == {"lr": 0.1}:  # _records' baseline: make it adam's
            r.arm, r.config = "adam", {"lr": 0.003}
    verdict = build_verdict(spec, records)
    arm = {a.arm: a for a in verdict.arms}["sgd"]
    assert arm.searches[0].edges == [] and arm.edge_note is None
    assert verdict.comparisons[0].outcome == "config better"


def test_without_a_target_the_median_of_every_searchs_best_sets_it():
    verdict = build_verdict(SPEC, _records(0.12))
    # the two searches' best finals: sgd 0.8, am_sgd 0.9 (its diverged trial does not count)
    assert (
        verdict.target == pytest.approx(0.85) and "median of every search" in verdict.target_source
    )
    arms = {a.arm: a for a in verdict.arms}
    assert arms["am_sgd"].time_to_target_s == 2.0 and arms["am_sgd"].target_hit_rate == 1.0
    assert arms["am_sgd"].time_to_target_evaluations == 20
    # sgd reaches 0.85 on seeds 5-8 only (0.81 + 0.01 seed): a median of "never"
    assert arms["sgd"].time_to_target_s is None and arms["sgd"].target_hit_rate == 0.5
    assert arms["am_sgd"].target_ratio == 1.0 and arms["sgd"].target_ratio == math.inf
    assert arms["sgd"].gradient_evaluations_per_step == 1.0 and arms["sgd"].step_impl == "fused"


def test_binary_outcome_uses_exact_mcnemar_and_clopper_pearson():
    spec = parse_spec(
        {
            "task": "sharp_flat",
            "arms": [{"optimizer": "adam", "baseline": True}, {"optimizer": "adam_cm"}],
            "seeds": list(range(1, 11)),
            "budget": {"searches": 1},
        }
    )
    records = []
    for seed in spec.seeds:
        for arm, escaped in (("adam", 0.0), ("adam_cm", 1.0 if seed <= 8 else 0.0)):
            record = TrialRecord(f"{arm}-{seed}", arm, Phase.SEED, seed, {"lr": 0.01})
            record.epochs = [_epoch(1, {"value": -1.0, "escaped": escaped})]
            record.state = TrialState.COMPLETED
            records.append(record)
    verdict = build_verdict(spec, records)
    arms = {a.arm: a for a in verdict.arms}
    assert arms["adam_cm"].mean == 0.8 and arms["adam_cm"].ci_low == pytest.approx(0.444, 1e-2)
    (comparison,) = verdict.comparisons
    assert comparison.test == "exact McNemar over seeds"
    assert comparison.p_value == pytest.approx(2 / 2**8)
    assert comparison.outcome == "config better" and not verdict.held_out


def test_tuning_curve_counts_a_diverged_search_trial_as_the_worst_finite_value():
    verdict = build_verdict(SPEC, _records(0.05))
    arm = {a.arm: a for a in verdict.arms}["am_sgd"]
    # search finals 0.9 and a diverged trial counted as 0.8 (the study's worst finite final)
    assert arm.tuning_curve == pytest.approx([0.85, 0.875])
    assert arm.n_hyperparameters == 3  # lr, lam and the schedule's warmup


def test_verdict_records_how_it_was_made():
    provenance = build_verdict(SPEC, _records(0.05)).provenance
    assert provenance["seeds"] == SEEDS and provenance["searches_per_arm"] == 1
    assert provenance["searches"]["sgd"] == {"0": SPEC.searches(SPEC.arms[0])[0].seed}
    assert provenance["versions"]["torch"] and provenance["devices"] == ["cpu"]


def test_verdict_read_back_from_json_strings_keeps_numbers_and_names():
    """The API writes non-finite numbers as "inf"/"nan"; only number fields become numbers
    again (an arm named "inf" stays a name)."""
    spec = parse_spec(
        {
            **SPEC.model_dump(),
            "arms": [
                {"optimizer": "sgd", "baseline": True},
                {"optimizer": "am_sgd", "name": "inf"},
            ],
        }
    )
    records = _records(0.05, spec, arm="inf")
    next(r for r in records if r.arm == "inf" and r.phase == Phase.SEED).state = TrialState.DIVERGED
    verdict = build_verdict(spec, records)
    back = Verdict.from_dict(to_json(verdict.to_dict()))
    assert back.arms[1].arm == "inf" and back.arms[1].seed_values[1] == -math.inf
    assert back == Verdict.from_dict(verdict.to_dict())


def test_a_verdict_stored_by_schema_one_still_loads():
    old = {
        "study": "s",
        "task": "digits_mlp",
        "metric": "val_accuracy",
        "mode": "max",
        "target": None,
        "arms": [
            {"arm": "sgd", "optimizer": "sgd", "baseline": True, "best_config": None,
             "search_trials": 2, "search_diverged": 0, "seed_values": {"0": 0.9},
             "mean": 0.9, "ci_low": None, "ci_high": None, "seeds_diverged": 0,
             "time_to_target_s": None, "target_hit_rate": None, "mean_step_time_s": 0.001,
             "mean_epoch_time_s": 1.0, "state_bytes": 4.0, "peak_memory_mb": 300.0,
             "passes_per_step": 1, "mean_beta": None},
        ],
        "comparisons": [
            {"arm": "am_sgd", "baseline": "sgd", "pairs": 3, "mean_difference": 0.01,
             "ci_low": 0.0, "ci_high": 0.02, "wilcoxon_p": 0.25, "outcome": "leaning better"}
        ],
    }  # fmt: skip
    verdict = Verdict.from_dict(old)
    assert verdict.schema_version == 1 and verdict.arms[0].seed_values == {0: 0.9}
    assert (
        verdict.comparisons[0].p_value == 0.25 and "leaning better" in verdict.comparisons[0].reason
    )
    assert verdict.scope == "config" and verdict.comparisons[0].scope == "config"


def test_a_schema_two_verdict_is_served_as_config_against_config():
    """Stored before searches were replicated: its "better" compared two configs, and is
    served as "config better", with the rule that says why."""
    old = build_verdict(SPEC, _records(0.05)).to_dict()
    old["schema_version"] = 2
    (comparison,) = old.pop("comparisons")
    comparison["outcome"] = "better"
    comparison["mean_difference"] = comparison.pop("difference")
    for key in ("scope", "statement", "searches", "baseline_searches"):
        comparison.pop(key)
    for arm in old["arms"]:
        (search,) = arm.pop("searches")
        arm["best_config"] = search["config"]
        arm["seed_values"] = search["seed_values"]
        arm["seeds_errored"] = []
        arm["range_warnings"] = []
    for key in ("scope", "budget", "searches_per_arm", "trials_per_search", "seeds"):
        old.pop(key)
    verdict = Verdict.from_dict({**old, "comparisons": [comparison]})
    assert verdict.schema_version == 2 and verdict.scope == "config"
    (upgraded,) = verdict.comparisons
    assert (
        upgraded.outcome == "config better" and upgraded.difference == comparison["mean_difference"]
    )
    assert "config vs config" in upgraded.statement and "schema 2" in verdict.rules[0]
    assert verdict.arms[1].searches[0].config == {"lr": 0.3}


def test_verdict_table_states_the_labels_and_the_rules():
    text = format_verdict(build_verdict(SPEC, _records(0.05)))
    assert "am_sgd" in text and "sgd *" in text and "-> config better" in text
    assert "config vs config: search not replicated" in text
    assert "test_accuracy" in text and "Holm" in text and "Rules:" in text
