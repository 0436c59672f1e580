"""The verdict from trial records: the headline on the test split, labels by the written rules,
divergences and errors counted, ranges flagged, costs and time-to-target."""

from __future__ import annotations

import math

import pytest

from memtune.studies.nonfinite import to_json
from memtune.studies.records import EpochResult, Phase, TrialRecord, TrialState
from memtune.studies.spec import parse_spec
from memtune.studies.verdict import Verdict, build_verdict, format_verdict

SEEDS = [1, 2, 3, 4, 5, 6, 7, 8]
SPEC = parse_spec(
    {
        "task": "digits_mlp",
        "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
        "seeds": SEEDS,
    }
)


def _epoch(epoch: int, metrics: dict[str, float], diverged: bool = False) -> EpochResult:
    return EpochResult(
        epoch=epoch,
        train_loss=0.1,
        metrics=metrics,
        diverged=diverged,
        epoch_time_s=1.0,
        mean_step_time_s=0.01,
        training_time_s=float(epoch),
        optimizer_state_bytes=100,
        peak_memory_mb=10.0,
        steps=10 * epoch,
        gradient_evaluations=10 * epoch,
        optimizer_impl="fused",
        device="cpu",
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
    assert arms["am_sgd"].best_config == {"lr": 0.3}
    assert arms["am_sgd"].search_diverged == 1
    assert arms["sgd"].mean == pytest.approx(0.8 + 0.045 - 0.02)  # test, not validation
    assert arms["sgd"].validation_mean == pytest.approx(0.845)


def test_clear_gain_over_eight_seeds_is_better_with_effect_sizes():
    comparison = _comparison(_records(0.05))
    assert comparison.outcome == "better" and comparison.reason is None
    assert comparison.pairs == 8 and comparison.p_value == pytest.approx(2 / 256)
    assert comparison.p_adjusted == comparison.p_value  # one comparison: Holm changes nothing
    assert comparison.mean_difference == pytest.approx(0.0545) and comparison.ci_low > 0
    assert comparison.relative_difference_pct == pytest.approx(100 * 0.0545 / 0.825)


def test_clear_loss_is_worse_and_alternating_signs_are_no_clear_difference():
    assert _comparison(_records(-0.05)).outcome == "worse"
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
    assert comparison.outcome == "worse"


def test_better_on_seven_seeds_but_diverged_on_one_is_not_better():
    records = _records(0.05)
    next(
        r for r in records if r.arm == "am_sgd" and r.phase == Phase.SEED
    ).state = TrialState.DIVERGED
    assert _comparison(records).outcome != "better"


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
    assert comparison.mean_difference < 0 and comparison.outcome == "better"


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
    assert comparisons["am_sgd"].outcome == "better" and comparisons["adamw"].outcome == "worse"
    assert comparisons["adam"].p_adjusted >= comparisons["adam"].p_value
    assert comparisons["adam"].outcome == "no clear difference"


def test_three_seeds_are_underpowered_not_leaning():
    spec = parse_spec({**SPEC.model_dump(exclude={"seeds"}), "seeds": [1, 2, 3]})
    comparison = _comparison(_records(0.05, spec), spec)
    assert comparison.outcome == "underpowered" and comparison.min_attainable_p == 0.25


def test_an_arm_whose_search_never_trained_is_worse_with_the_reason():
    records = [r for r in _records(0.05) if not (r.arm == "am_sgd" and r.phase == Phase.SEED)]
    for r in records:
        if r.arm == "am_sgd":
            r.state = TrialState.DIVERGED
    comparison = _comparison(records)
    assert comparison.outcome == "worse" and "diverging" in comparison.reason


def test_an_errored_seed_run_makes_the_comparison_incomplete():
    records = _records(0.05)
    errored = next(r for r in records if r.arm == "am_sgd" and r.phase == Phase.SEED)
    errored.state, errored.error = TrialState.ERROR, "RuntimeError: boom"
    comparison = _comparison(records)
    assert comparison.outcome == "incomplete" and str(errored.seed) in comparison.reason
    assert comparison.pairs == 7


def test_a_best_value_on_the_edge_of_its_range_is_flagged():
    verdict = build_verdict(SPEC, _records(0.05, config={"lr": 9.8, "lam": 0.1}))
    arm = {a.arm: a for a in verdict.arms}["am_sgd"]
    (warning,) = arm.range_warnings
    assert warning.startswith("lr=9.8") and "upper edge of [0.01, 10]" in warning
    assert any(w.startswith("am_sgd: lr=9.8") for w in verdict.warnings)
    assert arm.searched[0] == {"name": "lr", "low": 0.01, "high": 10.0, "log": True}


def test_without_a_target_the_baselines_worst_seed_sets_it():
    verdict = build_verdict(SPEC, _records(0.12))
    assert verdict.target == pytest.approx(0.81) and "worst seed" in verdict.target_source
    arms = {a.arm: a for a in verdict.arms}
    assert arms["am_sgd"].time_to_target_s == 2.0 and arms["am_sgd"].target_hit_rate == 1.0
    assert arms["am_sgd"].time_to_target_evaluations == 20
    assert arms["sgd"].time_to_target_s == 2.0 and arms["sgd"].target_ratio == 1.0
    assert arms["sgd"].gradient_evaluations_per_step == 1.0 and arms["sgd"].step_impl == "fused"


def test_binary_outcome_uses_exact_mcnemar_and_clopper_pearson():
    spec = parse_spec(
        {
            "task": "sharp_flat",
            "arms": [{"optimizer": "adam", "baseline": True}, {"optimizer": "adam_cm"}],
            "seeds": list(range(1, 11)),
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
    assert comparison.test == "exact McNemar" and comparison.p_value == pytest.approx(2 / 2**8)
    assert comparison.outcome == "better" and not verdict.held_out


def test_tuning_curve_counts_a_diverged_search_trial_as_the_worst_finite_value():
    verdict = build_verdict(SPEC, _records(0.05))
    arm = {a.arm: a for a in verdict.arms}["am_sgd"]
    # search finals 0.9 and a diverged trial counted as 0.8 (the study's worst finite final)
    assert arm.tuning_curve == pytest.approx([0.85, 0.875])
    assert arm.n_hyperparameters == 3  # lr, lam and the schedule's warmup


def test_verdict_records_how_it_was_made():
    provenance = build_verdict(SPEC, _records(0.05)).provenance
    assert provenance["seeds"] == SEEDS and provenance["search_seeds"] == [0]
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


def test_verdict_table_states_the_labels_and_the_rules():
    text = format_verdict(build_verdict(SPEC, _records(0.05)))
    assert "am_sgd" in text and "sgd *" in text and "-> better" in text
    assert "test_accuracy" in text and "Holm" in text and "Rules:" in text
