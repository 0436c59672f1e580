"""The report's numbers besides the checks: sweeps, performance profiles, time to result, and
the typed document they are written in."""

from __future__ import annotations

import math

import pytest

from memtune.reproduce import summaries
from memtune.reproduce.claims import Claim, Sweep
from memtune.reproduce.document import BenchResult, CheckRow, Profile, ProfileArm
from memtune.studies.spec import parse_spec
from memtune.studies.verdict import ArmVerdict, SearchScore, Verdict


def test_the_near_optimal_learning_rates_are_the_run_around_the_best_within_five_percent():
    lrs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    best, interval, width = summaries._near_optimal(lrs, [5.0, 2.0, 1.0, 1.04, 3.0], "min")
    assert (best, interval, width) == (1e-1, [1e-1, 1.0], pytest.approx(1.0))
    # A gap breaks the run: 1.03 at 1e-3 is near the best but not next to it.
    _, interval, _ = summaries._near_optimal(lrs, [1.03, 2.0, 1.0, None, 1.0], "min")
    assert interval == [1e-1, 1e-1]
    # A learning rate where a run failed is neither best nor near-optimal.
    best, interval, _ = summaries._near_optimal(
        lrs, [5.0, 2.0, 1.0, 1.04, 3.0], "min", [True, True, False, True, True]
    )
    assert (best, interval) == (1.0, [1.0, 1.0])
    # Accuracy: within one point, absolute.
    _, interval, width = summaries._near_optimal(lrs, [0.5, 0.89, 0.9, 0.895, 0.88], "max")
    assert interval == [1e-2, 1.0] and width == pytest.approx(2.0)


def _fixed_study(values: dict[str, list[float]], mode: str = "min") -> dict:
    arms = [
        ArmVerdict(
            arm=arm,
            optimizer=arm,
            baseline=False,
            searches=[SearchScore(index=0, config={}, seed_values=dict(enumerate(v, 1)))],
        )
        for arm, v in values.items()
    ]
    verdict = Verdict(study="s", task="t", metric="val_loss", mode=mode, arms=arms,
                      comparisons=[], headline_metric="test_loss")  # fmt: skip
    return {"status": "completed", "verdict": verdict.to_dict(), "trials": {}}


def test_a_sweep_counts_diverged_runs_and_leaves_them_out_of_the_mean():
    sweep = Sweep(
        "s-lr", "t", ("am", "ref"), {"am": (0.1, 1.0), "ref": (0.01, 0.1)}, ("s-0", "s-1")
    )
    documents = {
        "s-0": _fixed_study({"am": [1.0, 1.2, 1.1], "ref": [2.0, 2.0, 2.0]}),
        "s-1": _fixed_study({"am": [math.inf, 0.9, math.inf], "ref": [1.5, 1.5, 1.5]}),
    }
    result = summaries.sweep_result(sweep, documents)
    am = result.arms["am"]
    assert am.lrs == [0.1, 1.0] and am.diverged == [0, 2] and am.runs == [3, 3]
    assert am.mean == pytest.approx([1.1, 0.9])
    assert am.low[1] is None  # one finite run: no seed band
    assert am.best_lr == 0.1 and result.metric == "test_loss"  # not the lr where 2 diverged
    failing = Sweep(sweep.name, sweep.task, sweep.arms, sweep.lrs, sweep.studies, failure=1.15)
    assert summaries.sweep_result(failing, documents).arms["am"].failed == [1, 2]
    assert summaries.sweep_result(sweep, {"s-0": documents["s-0"]}) is None


def _trial(arm: str, phase: str, values: list[float], seconds: float = 1.0) -> dict:
    return {
        "arm": arm, "phase": phase, "seed": 1, "state": "completed",
        "epochs": [
            {"epoch": e, "val_loss": v, "gradient_evaluations": 10 * e, "training_time_s": seconds * e}
            for e, v in enumerate(values, 1)
        ],
    }  # fmt: skip


def _profiled_study(name: str, arms: dict[str, tuple[float, list[list[float]]]]) -> dict:
    """A searched study: per arm, its searches' selected validation value and its seed runs'
    validation curves."""
    verdict = Verdict(
        study=name, task="quadratic", metric="val_loss", mode="min", comparisons=[],
        arms=[
            ArmVerdict(arm=arm, optimizer=arm, baseline=False,
                       searches=[SearchScore(index=i, best_validation=best, score=1.0)
                                 for i in range(2)])
            for arm, (best, _) in arms.items()
        ],
    )  # fmt: skip
    trials = {
        f"{arm}-{i}": _trial(arm, "seed", curve)
        for arm, (_, curves) in arms.items()
        for i, curve in enumerate(curves)
    }
    return {"status": "completed", "verdict": verdict.to_dict(), "trials": trials}


def _claim(names: list[str]) -> Claim:
    spec = {
        "task": "quadratic", "arms": [{"optimizer": "sgd"}, {"optimizer": "adam"}],
        "budget": {"searches": 2, "trials_per_search": 1, "epochs": 3}, "seeds": [1],
    }  # fmt: skip
    studies = tuple(parse_spec({**spec, "name": n}) for n in names)
    return Claim(1, "t", "s", "p", "d", studies, ())


def test_a_profile_holds_every_arm_on_every_workload_with_a_target_from_the_searches_alone():
    documents = {
        "a": _profiled_study("a", {"fast": (1.0, [[2.0, 0.9, 0.5]] * 3), "slow": (3.0, [[4.0, 3.5, 2.9]] * 3)}),
        "b": _profiled_study("b", {"never": (2.0, [[9.0, 9.0, 9.0]] * 3)}),
    }  # fmt: skip
    evaluations, seconds = summaries.profiles("family", _claim(["a", "b"]), documents)
    assert evaluations.unit == "gradient evaluations" and seconds.unit == "seconds"
    # Reached by three quarters of the searches' selected trials (1, 1, 2, 2, 3, 3): 3.
    assert evaluations.workloads == {"quadratic": 3.0}
    arms = evaluations.arms
    assert set(arms) == {"fast", "slow", "never"}  # both studies of the task: one workload
    assert arms["fast"].costs["quadratic"] == 10 and arms["slow"].costs["quadratic"] == 30
    assert arms["never"].costs["quadratic"] == math.inf  # a miss is never
    assert arms["slow"].ratios["quadratic"] == 3.0 and arms["never"].fraction[-1] == 0.0
    assert arms["fast"].fraction[0] == 1.0 and arms["slow"].fraction[0] == 0.0
    assert arms["slow"].fraction[evaluations.taus.index(2.95)] == 0.0
    assert arms["slow"].fraction[evaluations.taus.index(3.0)] == 1.0
    assert seconds.arms["slow"].costs["quadratic"] == 3.0 and len(evaluations.taus) == 61
    assert evaluations.taus[0] == 1.0 and evaluations.taus[-1] == 4.0
    # No seed run moves the target: it belongs to the search trials.
    documents["a"]["trials"]["fast-0"]["epochs"][0]["val_loss"] = 0.0
    assert summaries.profiles("family", _claim(["a", "b"]), documents)[0].workloads == {
        "quadratic": 3.0
    }


def test_time_to_result_multiplies_evaluations_by_the_iteration_time_measured_alone():
    profile = Profile(
        name="p", unit="gradient evaluations", workloads={"quadratic": 1.0},
        metric={"quadratic": "value"}, taus=[1.0],
        arms={arm: ProfileArm(workloads=1, ratios={}, costs={"quadratic": cost}, fraction=[])
              for arm, cost in {"am_sgd": 100.0, "sgd_m0.9": 200.0, "am_adamw": math.inf,
                                "adamw_b0.9": 50.0}.items()},
    )  # fmt: skip
    bench = BenchResult(
        settings={}, device="cpu", cpu="x", threads=2, seconds=1.0,
        iteration={"quadratic": {"am_sgd": [2e-3] * 3, "sgd": [1e-3] * 3,
                                 "am_adamw": [1e-3] * 3, "adamw": [1e-3] * 3}},
        step={}, impls={}, parameters={},
    )  # fmt: skip
    rows = {r.arm: r for r in summaries.time_to_result(profile, bench)}
    assert rows["am_sgd"].seconds == pytest.approx(0.2) and rows[
        "sgd_m0.9"
    ].seconds == pytest.approx(0.2)
    assert rows["am_sgd"].ratio == pytest.approx(1.0)  # half the evaluations at twice the cost
    assert rows["am_adamw"].seconds == math.inf and rows["am_adamw"].ratio == math.inf


def test_the_document_keeps_non_finite_numbers_through_json():
    row = CheckRow(label="l", study="s", arm="a", reference="r", hypothesis="superior",
                   scale="linear", source="searches", improvement=-math.inf, ci_high=math.nan)  # fmt: skip
    text = row.model_dump_json()
    assert '"-Infinity"' in text
    back = CheckRow.model_validate_json(text)
    assert back.improvement == -math.inf and math.isnan(back.ci_high)
    with pytest.raises(ValueError, match="unknown"):
        CheckRow.model_validate({**row.model_dump(), "unknown": 1})  # a typo is refused
