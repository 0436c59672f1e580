"""The runner end to end on a local Ray: searches, seed re-runs, divergence, resume, cancel.

One Ray for the module (starting one costs about 5 s); studies at smoke size.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from ray import tune

from memtune.service.cli import DEMO_SPEC
from memtune.studies import stats
from memtune.studies.spec import SpecError, load_spec, parse_spec
from memtune.studies.verdict import decide
from memtune.tuning.cluster import node_inventory
from memtune.tuning.launch import pending_trials
from memtune.tuning.runner import StudyCancelled, StudyRunner
from memtune.tuning.sinks import JsonFileSink, ResultsSink
from tests.tuning.flaky import crash_once_after_two_epochs, log_environment, log_reports
from tests.tuning.recording import KeptTrials

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("local_ray"),
]


def _spec(**changes):
    base = {
        "name": "test",
        "task": "digits_mlp",
        "smoke": True,
        "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
        "budget": {"searches": 1, "trials_per_search": 2, "epochs": 2},
        "seeds": [1, 2],
    }
    return parse_spec({**base, **changes})


def test_two_arm_study_searches_reruns_seeds_and_gives_a_verdict(tmp_path, monkeypatch):
    from ray.tune.execution import tune_controller

    pending: list[int] = []  # how many trials Tune may start before one is running
    real = tune_controller._get_max_pending_trials
    monkeypatch.setattr(
        tune_controller,
        "_get_max_pending_trials",
        lambda alg: pending.append(real(alg)) or pending[-1],
    )
    started = time.monotonic()
    runner = StudyRunner(_spec(), JsonFileSink(tmp_path / "study.json"))
    verdict = runner.run()
    elapsed = time.monotonic() - started
    assert pending and set(pending) == {2}  # both first trials start at once (Tune alone: 1)
    assert "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ

    phases = [(r.arm, r.phase) for r in runner.records.values()]
    assert sorted(phases) == sorted(
        [("sgd", "search")] * 2
        + [("am_sgd", "search")] * 2
        + [("sgd", "seed")] * 2
        + [("am_sgd", "seed")] * 2
    )
    assert all(
        r.state == "completed" and [e.epoch for e in r.epochs] == [1, 2]
        for r in runner.records.values()
    )
    arms = {a.arm: a for a in verdict.arms}
    assert set(arms["am_sgd"].seed_values) == {1, 2}
    assert set(arms["am_sgd"].searches[0].config) == {"lr", "lam", "warmup_fraction"}
    # The search never sees the test split; each seed re-run reports it once, at its end.
    search = [r for r in runner.records.values() if r.phase == "search"]
    assert all(not k.startswith("test_") for r in search for e in r.epochs for k in e.metrics)
    seeded = [r for r in runner.records.values() if r.phase == "seed"]
    assert all("test_accuracy" in r.epochs[-1].metrics for r in seeded)
    assert all("test_accuracy" not in r.epochs[0].metrics for r in seeded)
    spec = runner.spec  # each arm's one search trains on its own seed, never a re-run seed
    assert {(r.arm, r.seed) for r in search} == {
        (arm.label, s.seed) for arm in spec.arms for s in spec.searches(arm)
    }
    assert {r.seed for r in seeded} == {1, 2}
    assert verdict.headline_metric == "test_accuracy"
    assert arms["sgd"].step_impl == "fused"
    assert arms["am_sgd"].step_impl == "compiled"  # the CPU kernels, at any size
    (comparison,) = verdict.comparisons
    assert comparison.pairs == 2 and comparison.baseline == "sgd"
    assert comparison.outcome == "underpowered"  # two seeds can never reach p < 0.05
    assert comparison.scope == "config"  # one search per arm: configs, not optimizers
    document = json.loads((tmp_path / "study.json").read_text())
    assert document["status"] == "completed" and len(document["trials"]) == 8
    assert document["verdict"]["arms"][0]["arm"] == "sgd"
    print(f"two-arm smoke study: {elapsed:.1f} s")  # the issue asks for under 2 minutes


def test_an_operators_own_pending_trial_limit_is_kept(monkeypatch):
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "7")
    with pending_trials(2):
        assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "7"
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "7"


def test_diverging_arm_ends_as_diverged_and_the_study_completes():
    absurd = {"optimizer": "sgd", "name": "absurd", "fixed": {"lr": 1e9}}
    runner = StudyRunner(_spec(arms=[{"optimizer": "sgd", "baseline": True}, absurd]))
    verdict = runner.run()
    diverged = [r for r in runner.records.values() if r.arm == "absurd"]
    assert diverged and all(r.state == "diverged" for r in diverged)
    arms = {a.arm: a for a in verdict.arms}
    assert arms["absurd"].search_diverged == 2 and arms["absurd"].searches[0].config is None
    (comparison,) = verdict.comparisons
    # its one search scored the worst value on both seeds: two seeds cannot call it (2 / 2^2)
    assert comparison.outcome == "underpowered" and "diverging" in comparison.reason
    assert arms["sgd"].mean is not None  # the other arm finished its seeds


def test_checkpointed_trial_resumes_at_the_next_epoch(tmp_path):
    marker = tmp_path / "attempts.log"
    spec = _spec(
        arms=[{"optimizer": "sgd", "fixed": {"lr": 0.05, "momentum": 0.9}}],
        budget={"searches": 1, "trials_per_search": 1, "epochs": 4},
        seeds=[1],
    )
    runner = StudyRunner(
        spec, trainable=tune.with_parameters(crash_once_after_two_epochs, marker=str(marker))
    )
    runner.run()
    assert marker.read_text().splitlines()[:2] == ["fresh", "resumed"]
    search = next(r for r in runner.records.values() if r.phase == "search")
    assert search.state == "completed"
    assert [e.epoch for e in search.epochs] == [1, 2, 3, 4]  # resumed at 3, not from 1


def test_trial_workers_start_without_tunes_lightning_runtime_env(tmp_path):
    # Tune's default runtime env (PL_DISABLE_FORK) would start each trial's worker through a
    # second Python process: the study's start pays it (bench/study_overhead.py).
    from ray.tune.execution import class_cache

    log = tmp_path / "environment.log"
    spec = _spec(
        arms=[{"optimizer": "sgd"}],
        budget={"searches": 1, "trials_per_search": 1, "epochs": 1},
        seeds=[1],
    )
    StudyRunner(spec, trainable=tune.with_parameters(log_environment, log=str(log))).run()
    assert log.read_text().split() == ["unset", "unset"]  # the search trial and the seed run
    assert class_cache.DEFAULT_ENV_VARS == {"PL_DISABLE_FORK": "1"}  # Tune's own, restored


class _EpochCounter(ResultsSink):
    def __init__(self) -> None:
        self.stored: list[tuple[str, int]] = []
        self.events: list[str] = []

    def epoch_reported(self, record, epoch) -> None:
        self.stored.append((record.trial_id, epoch.epoch))

    def trial_finished(self, record) -> None:
        self.events.append("finished")

    def before_snapshot(self) -> None:
        self.events.append("snapshot")


def test_short_epochs_are_reported_together_but_asha_sees_its_milestones_and_each_is_stored(
    tmp_path,
):
    log = tmp_path / "reports.log"
    spec = _spec(
        arms=[{"optimizer": "sgd", "fixed": {"lr": 0.05, "momentum": 0.9}}],
        budget={"searches": 1, "trials_per_search": 1, "epochs": 6},
        seeds=[1],
        scheduler="asha",  # milestones at epochs 1 and 4 for 6 epochs
    )
    sink = _EpochCounter()
    runner = StudyRunner(spec, sink, trainable=tune.with_parameters(log_reports, log=str(log)))
    runner.run()
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    by_phase = {
        phase: [r["epochs"] for r in reports if r["phase"] == phase] for phase in ("search", "seed")
    }
    print("reports (epochs each carried):", by_phase)
    assert by_phase["search"] == [[1], [2, 3, 4], [5, 6]]  # ASHA's epochs at once, then the last
    assert by_phase["seed"] == [[1, 2, 3, 4, 5, 6]]  # no scheduler: only the last epoch forces one
    for record in runner.records.values():
        assert [e.epoch for e in record.epochs] == [1, 2, 3, 4, 5, 6]
    assert sorted(sink.stored) == sorted(set(sink.stored)) and len(sink.stored) == 12
    # Tune's snapshots reach the sink (buffering sinks write then), the last one after every
    # trial's end, so a resume never finds the store behind the snapshot.
    assert sink.events.count("finished") == 2 and sink.events[-1] == "snapshot"


class _CancelAfterFirstResult(ResultsSink):
    def __init__(self) -> None:
        self.results = 0

    def epoch_reported(self, record, metrics) -> None:
        self.results += 1

    def cancel_requested(self) -> bool:
        return self.results > 0


def test_cancel_stops_the_running_trials():
    # Smoke epochs take about a millisecond and a report waits up to REPORT_EVERY_S (2 s), so
    # the trials are given far more epochs than fit in the time the cancel takes to arrive.
    sink = _CancelAfterFirstResult()
    runner = StudyRunner(
        _spec(budget={"searches": 1, "trials_per_search": 4, "epochs": 20_000}), sink
    )
    with pytest.raises(StudyCancelled):
        runner.run()
    epochs = [len(r.epochs) for r in runner.records.values()]
    print("epochs stored per trial when the cancel took effect:", epochs)
    assert epochs and all(n < 20_000 for n in epochs)
    assert not any(r.phase == "seed" for r in runner.records.values())


def test_a_time_limit_ends_the_study_with_a_verdict_of_what_finished():
    """Tune's time budget stops the running trials without telling the callbacks: their
    records stayed running, and the runner took the study for one Ctrl-C interrupted."""
    sink = KeptTrials()
    spec = _spec(
        budget={"searches": 2, "trials_per_search": 2, "epochs": 20_000, "time_limit_s": 6.0}
    )
    verdict = StudyRunner(spec, sink).run()
    states = sorted(r.state for r in sink.records.values())
    print("trial states at the time limit:", states)
    assert sink.records and "stopped" in states and sink.failed is None
    assert all(r.state.ended for r in sink.records.values())
    # 20,000 smoke epochs outlast the limit: no search got its seed re-runs, so none has a
    # score, nothing is compared, and the verdict says why.
    assert all(s.score is None for arm in verdict.arms for s in arm.searches)
    assert verdict.comparisons and all(c.p_value is None for c in verdict.comparisons)
    assert sum("searches have no score" in w for w in verdict.warnings) == 2


def test_gpu_requested_on_a_cluster_without_one_names_the_field():
    with pytest.raises(SpecError) as error:
        StudyRunner(_spec(resources={"cpu": 1, "gpu": 1})).run()
    assert error.value.field == "resources.gpu"


def test_extended_study_reruns_only_what_is_new_and_recomputes_the_verdict():
    first = StudyRunner(_spec(seeds=[1]))
    first.run()
    extended_spec = _spec(
        seeds=[1, 2],
        arms=[
            {"optimizer": "sgd", "baseline": True},
            {"optimizer": "am_sgd"},
            {"optimizer": "adam"},
        ],
    )
    kept = StudyRunner.reusable(extended_spec, first.records.values())
    assert len(kept) == 6  # both arms' 2 search trials and their seed-1 runs
    second = StudyRunner(extended_spec, previous=first.records.values())
    verdict = second.run()
    new = [r for r in second.records.values() if r.trial_id not in first.records]
    ran = sorted((r.arm, r.phase, r.seed) for r in new)
    print(f"extension ran {len(new)} new trials, kept {len(kept)}")
    (adam_search,) = extended_spec.searches(extended_spec.arms[2])
    assert ran == sorted(
        [("sgd", "seed", 2), ("am_sgd", "seed", 2)]
        + [("adam", "search", adam_search.seed)] * 2
        + [("adam", "seed", 1), ("adam", "seed", 2)]
    )
    # the old arms' seed 2 re-runs the config their search chose the first time
    for arm in ("sgd", "am_sgd"):
        configs = {
            str(r.config) for r in second.records.values() if r.arm == arm and r.phase == "seed"
        }
        assert len(configs) == 1
    assert [c.pairs for c in verdict.comparisons] == [2, 2]


def test_each_search_trains_on_its_own_seed_and_gets_its_own_score():
    spec = _spec(
        arms=[{"optimizer": "sgd", "baseline": True}, {"optimizer": "sgd", "name": "twin"}],
        budget={"searches": 2, "trials_per_search": 1, "epochs": 1},
        seeds=[2],
    )
    runner = StudyRunner(spec)
    verdict = runner.run()
    search = sorted(
        (r.arm, r.repeat, r.seed) for r in runner.records.values() if r.phase == "search"
    )
    seeded = sorted((r.arm, r.repeat, r.seed) for r in runner.records.values() if r.phase == "seed")
    planned = sorted((arm.label, s.index, s.seed) for arm in spec.arms for s in spec.searches(arm))
    assert search == planned and len({seed for _, _, seed in search}) == 4
    # search r of every arm re-runs on the study's seed + r x 100,000: shared across arms
    assert seeded == sorted((arm, index, 2 + 100_000 * index) for arm, index, _ in planned)
    for arm in verdict.arms:
        assert [s.index for s in arm.searches] == [0, 1] and len(arm.scores) == 2
    (comparison,) = verdict.comparisons
    assert comparison.scope == "optimizer" and comparison.searches == 2
    assert comparison.outcome == "underpowered"  # 2 against 2 searches: p >= 1/3


def test_the_demo_study_end_to_end_reports_test_metrics_on_fresh_seeds_by_the_rules():
    spec = load_spec(DEMO_SPEC).model_copy(update={"smoke": True})
    runner = StudyRunner(spec)
    verdict = runner.run()
    search_seeds = {r.seed for r in runner.records.values() if r.phase == "search"}
    seed_seeds = {r.seed for r in runner.records.values() if r.phase == "seed"}
    assert search_seeds == set(spec.search_seeds) and not search_seeds & seed_seeds
    reruns = {seed for arm in spec.arms for s in spec.searches(arm) for seed in s.rerun_seeds}
    assert seed_seeds == reruns and verdict.scope == "optimizer"
    assert verdict.headline_metric == "test_accuracy"
    assert len(verdict.comparisons) == len(spec.arms) - 1
    baseline = verdict.arms[0]
    for comparison in verdict.comparisons:
        arm = next(a for a in verdict.arms if a.arm == comparison.arm)
        assert len(arm.scores) == spec.searches_per_arm
        shift = stats.hodges_lehmann(arm.scores, baseline.scores)
        expected, _ = decide(
            mode="max",
            p_adjusted=comparison.p_adjusted,
            direction=stats.rank_sum_direction(arm.scores, baseline.scores),
            interval=(shift.low, shift.high),
            min_p=comparison.min_attainable_p,
        )
        if arm.edge_note or baseline.edge_note:
            expected = "inconclusive"
        assert comparison.outcome == expected, comparison
        print(f"demo: {comparison.arm} {comparison.outcome} (Holm p {comparison.p_adjusted:.3g})")


def test_node_inventory_reports_each_nodes_resources_and_installed_names():
    (node,) = node_inventory()
    assert node["cpus"] == 2 and node["gpus"] == 0 and node["address"]
    assert "digits_mlp" in node["tasks"] and "adam_cm" in node["optimizers"]


_INTERRUPTED = """
import os, signal, sys
from memtune.tuning.cluster import configure_ray_environment, ray_cluster
configure_ray_environment()
from memtune.studies.spec import parse_spec
from memtune.tuning.runner import StudyRunner
from memtune.tuning.sinks import JsonFileSink

spec = parse_spec({
    "name": "interrupted", "task": "digits_mlp", "smoke": True,
    "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "adam"}],
    "budget": {"searches": 1, "trials_per_search": 4, "epochs": 20000}, "seeds": [1, 2],
})

def ctrl_c(runner):  # Ctrl-C as soon as a trial has reported
    os.kill(os.getpid(), signal.SIGINT)

with ray_cluster(num_cpus=2):
    try:
        StudyRunner(spec, JsonFileSink(sys.argv[1]), progress=ctrl_c).run()
    except KeyboardInterrupt:
        print("interrupted")
        sys.exit(130)
print("returned")
"""


def test_ctrl_c_interrupts_a_study_and_never_records_it_finished(tmp_path):
    """Tune's own SIGINT handler ended fit() normally, and a reproduction interrupted during a
    study stored it "completed" with the trials it had (0): a resume then kept it."""
    import subprocess
    import sys

    path = tmp_path / "study.json"
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED, str(path)],
        capture_output=True, text=True, timeout=240,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )  # fmt: skip
    assert done.returncode == 130 and "interrupted" in done.stdout, done.stderr[-3000:]
    document = json.loads(path.read_text())
    assert document["status"] != "completed" and "verdict" not in document


def test_only_a_dead_node_makes_an_actors_death_a_node_loss(monkeypatch):
    from types import SimpleNamespace

    from ray.exceptions import ActorDiedError, RayTaskError

    from memtune.tuning import preemption

    monkeypatch.setattr(preemption, "NODE_DEATH_WAIT_S", 0.3)
    nodes = [{"NodeID": "alive", "Alive": True}, {"NodeID": "gone", "Alive": False}]
    monkeypatch.setattr(preemption.ray, "nodes", lambda: nodes)

    def trial(node: str | None) -> SimpleNamespace:
        return SimpleNamespace(trial_id="t1", last_result={"node_id": node} if node else {})

    died = ActorDiedError()
    assert preemption.lost_its_node(trial("gone"), died)
    # The actor died on a node that lives on (killed for memory, a native crash): its own.
    assert not preemption.lost_its_node(trial("alive"), died)
    # The trial's own exception is never a node loss, whatever its node.
    raised = RayTaskError("train", "Traceback ...", ValueError("bad"))
    assert not preemption.lost_its_node(trial("gone"), raised)
    assert not preemption.lost_its_node(trial(None), died)  # no report yet: unknown, counted
    # Its actor left on the node's shutdown notice: a preemption at once, the node still up.
    noticed = trial("alive")
    noticed.last_result[preemption.SHUTDOWN_NOTICE] = "a1"
    left = ActorDiedError()
    left.actor_id = "a1"
    assert preemption.lost_its_node(noticed, left)
    assert not preemption.lost_its_node(noticed, raised)  # but never its own exception
    # Restarted from the checkpoint that carries the notice, a later actor that dies on a live
    # node is judged on its own: the notice was another actor's.
    later = ActorDiedError()
    later.actor_id = "a2"
    assert not preemption.lost_its_node(noticed, later)


def test_the_store_is_written_before_tune_writes_any_file_of_a_snapshot(monkeypatch):
    """Tune writes a snapshot's state file before it asks its callbacks for their state, and a
    copy to storage still running may read it: the sink is flushed before save_to_dir."""
    from types import SimpleNamespace

    from ray.tune.execution.tune_controller import TuneController

    from memtune.tuning.callbacks import store_before_snapshots

    order: list[str] = []
    monkeypatch.setattr(TuneController, "save_to_dir", lambda controller: order.append("save"))
    saved = TuneController.save_to_dir
    sink = SimpleNamespace(before_snapshot=lambda: order.append("flush"))
    with store_before_snapshots(SimpleNamespace(sink=sink)):
        TuneController.save_to_dir(object())
        TuneController.save_to_dir(object())
    assert order == ["flush", "save", "flush", "save"]
    assert TuneController.save_to_dir is saved  # Tune's own again after the study


def test_a_finished_trial_that_a_resume_runs_again_is_running_again():
    """A trial that ended after the snapshot a resume starts from runs again (no checkpoint
    follows a last epoch): its stored record must not read "completed" with partial epochs."""
    from types import SimpleNamespace

    from memtune.studies.records import Phase, TrialRecord, TrialState
    from memtune.tuning.callbacks import LIVE, _Recorder

    record = TrialRecord(trial_id="t1", arm="sgd", phase=Phase.SEARCH, seed=0, config={})
    record.state = TrialState.COMPLETED
    started: list[str] = []
    runner = SimpleNamespace(
        experiment_key="k",
        records={"t1": record},
        sink=SimpleNamespace(trial_started=started.append),
    )
    LIVE["k"] = runner
    try:
        _Recorder(runner).on_trial_start(0, [], SimpleNamespace(trial_id="t1"))
    finally:
        del LIVE["k"]
    assert record.state == TrialState.RUNNING and started == []
