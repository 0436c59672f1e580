"""The verdict from trial records: best config, diverged runs, paired comparisons."""

from __future__ import annotations

import math

from memtune.studies.records import EpochResult, TrialRecord, TrialState
from memtune.studies.spec import parse_spec
from memtune.studies.verdict import Verdict, build_verdict, format_verdict

SPEC = parse_spec(
    {
        "task": "digits_mlp",
        "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
        "seeds": [0, 1, 2, 3, 4, 5, 6, 7],
        "target": 0.9,
    }
)


def _record(arm, phase, seed, accuracies, state=TrialState.COMPLETED, config=None):
    epochs = [
        EpochResult(
            epoch=i + 1,
            train_loss=0.1,
            metrics={"val_accuracy": a},
            diverged=False,
            epoch_time_s=1.0,
            mean_step_time_s=0.01,
            training_time_s=float(i + 1),
            optimizer_state_bytes=100,
            peak_memory_mb=10.0,
        )
        for i, a in enumerate(accuracies)
    ]
    return TrialRecord(
        f"{arm}-{phase}-{seed}-{accuracies}", arm, phase, seed, config or {}, state, epochs
    )


def _records(am_gain: float):
    records = [
        _record("sgd", "search", 0, [0.5, 0.8], config={"lr": 0.1}),
        _record("sgd", "search", 0, [0.6, 0.85], config={"lr": 0.05}),
        _record("am_sgd", "search", 0, [0.7, 0.9], config={"lr": 0.3}),
        _record("am_sgd", "search", 0, [0.1], state=TrialState.DIVERGED, config={"lr": 9.0}),
    ]
    for seed in SPEC.seeds:
        base = 0.8 + 0.01 * seed
        records.append(_record("sgd", "seed", seed, [0.5, base]))
        records.append(_record("am_sgd", "seed", seed, [0.5, base + am_gain + 0.001 * seed]))
    return records


def test_best_config_is_the_best_finished_search_trial():
    verdict = build_verdict(SPEC, _records(0.05))
    arms = {a.arm: a for a in verdict.arms}
    assert arms["sgd"].best_config == {"lr": 0.05}
    assert arms["am_sgd"].best_config == {"lr": 0.3}
    assert arms["am_sgd"].search_diverged == 1


def test_clear_gain_over_eight_seeds_is_better():
    (comparison,) = build_verdict(SPEC, _records(0.05)).comparisons
    assert comparison.outcome == "better"
    assert comparison.pairs == 8
    assert comparison.mean_difference > 0.05 and comparison.ci_low > 0
    assert comparison.wilcoxon_p < 0.05


def test_clear_loss_is_worse_and_no_gain_is_no_clear_difference():
    assert build_verdict(SPEC, _records(-0.05)).comparisons[0].outcome == "worse"
    records = [r for r in _records(0.0)]
    for r in records:  # alternate signs: no direction
        if r.arm == "am_sgd" and r.phase == "seed":
            r.epochs[-1].metrics["val_accuracy"] += 0.01 * (-1) ** r.seed
    assert build_verdict(SPEC, records).comparisons[0].outcome == "no clear difference"


def test_diverged_seed_run_counts_as_the_worst_value():
    records = _records(0.05)
    diverged = next(r for r in records if r.arm == "am_sgd" and r.phase == "seed")
    diverged.state = TrialState.DIVERGED
    arm = {a.arm: a for a in build_verdict(SPEC, records).arms}["am_sgd"]
    assert arm.seeds_diverged == 1
    assert arm.seed_values[diverged.seed] == -math.inf
    assert arm.mean == -math.inf and arm.ci_low is None


def test_time_to_target_is_the_median_over_seeds():
    arms = {a.arm: a for a in build_verdict(SPEC, _records(0.12)).arms}
    assert arms["am_sgd"].time_to_target_s == 2.0  # every am_sgd seed passes 0.9 at epoch 2
    assert arms["am_sgd"].target_hit_rate == 1.0
    assert arms["sgd"].time_to_target_s is None  # no sgd seed reaches 0.9
    assert arms["sgd"].target_hit_rate == 0.0


def test_verdict_table_names_arms_and_outcome():
    text = format_verdict(build_verdict(SPEC, _records(0.05)))
    assert "am_sgd" in text and "sgd *" in text and "-> better" in text


def test_verdict_read_back_from_json_strings_keeps_numbers_and_names():
    """The API writes non-finite numbers as "inf"/"nan"; only number fields become numbers
    again (an arm named "inf" stays a name)."""
    from memtune.studies.nonfinite import to_json

    records = _records(0.05)
    for r in records:
        if r.arm == "am_sgd":
            r.arm = "inf"
    spec = parse_spec(
        {
            **SPEC.model_dump(),
            "arms": [
                {"optimizer": "sgd", "baseline": True},
                {"optimizer": "am_sgd", "name": "inf"},
            ],
        }
    )
    next(r for r in records if r.arm == "inf" and r.phase == "seed").state = TrialState.DIVERGED
    verdict = build_verdict(spec, records)
    back = Verdict.from_dict(to_json(verdict.to_dict()))
    arm = back.arms[1]
    assert arm.arm == "inf" and arm.mean == -math.inf
    assert back == Verdict.from_dict(verdict.to_dict())
