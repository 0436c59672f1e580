"""memtune on a cluster that loses things: a memtune worker, a Ray node, the database, the API.

Each test prints what it killed, what survived and the counts it checked. Ray runs on this one
machine: a worker's own local Ray, or ``ray.cluster_utils.Cluster`` with several nodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from sqlalchemy import func, select

from memtune.service import services
from memtune.service.store.models import Metric, Study, Trial
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.service.worker import stored_records
from memtune.studies.records import StudyStatus, TrialState
from memtune.studies.spec import StudySpec
from memtune.studies.verdict import Verdict, build_verdict
from tests.service.conftest import RunningServer, _postgres_database
from tests.tcp_proxy import BlinkingProxy

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = services.Caller(owner_id=None, owner="admin")
ENDED = {"completed", "failed", "cancelled"}


def _spec(name: str, trials: int = 2, epochs: int = 2, **extra) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "task": "digits_mlp",
            "smoke": True,
            "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
            "budget": {"searches": 1, "trials_per_search": trials, "epochs": epochs},
            "seeds": [1, 2],
            **extra,
        }
    )


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc): a worker's Ray daemons leave its process
    group, not its tree, and another worker's Ray may run beside it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


class Worker:
    """``memtune worker`` in its own session; ``kill()`` SIGKILLs it and the Ray it started."""

    def __init__(self, url: str, tmp: Path, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memtune", "worker"],
            env={
                **os.environ,
                "DATABASE_URL": url,
                "MEMTUNE_LEASE_S": "4",
                "MEMTUNE_STORAGE": str(tmp / "storage"),
                **env,
            },
            start_new_session=True,
            stdout=open(tmp / "worker.log", "a"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> int:
        tree = _descendants(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        leftover = 0  # Ray's daemons are not in the worker's group
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                leftover += 1
        return leftover

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _trials(db: Database, study_id: int) -> dict[str, Trial]:
    with db.session() as session:
        return {t.tune_trial_id: t for t in Repository(session).trials_of(study_id)}


def _status(db: Database, study_id: int) -> tuple[str, str | None]:
    with db.session() as session:
        study = Repository(session).find_study(study_id, None)
        return study.status.value, study.error


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _epoch_rows(db: Database, study_id: int) -> Counter:
    """(trial id, epoch) -> how many metric rows hold it, over every attempt."""
    with db.session() as session:
        rows = session.execute(
            select(Metric.trial_id, Metric.epoch, func.count())
            .join(Trial, Trial.id == Metric.trial_id)
            .where(Trial.study_id == study_id)
            .group_by(Metric.trial_id, Metric.epoch)
        )
        return Counter({(trial, epoch): count for trial, epoch, count in rows})


# What a rerun may change in a verdict: the seconds and bytes it measured, not its statistics.
MEASURED = {
    "time_to_target_s",
    "time_to_target_evaluations",
    "target_hit_rate",
    "target_ratio",
    "mean_step_time_s",
    "peak_memory_mb",
}


def _verdict(db: Database, study_id: int) -> Verdict:
    with db.session() as session:
        return Verdict.from_dict(Repository(session).find_study(study_id, None).verdict)


def _statistics(verdict: Verdict) -> dict:
    """The verdict without what the clock and the allocator measured."""
    data = verdict.to_dict()
    return {
        "arms": [{k: v for k, v in arm.items() if k not in MEASURED} for arm in data["arms"]],
        "comparisons": data["comparisons"],
    }


def _trained(db: Database, study_id: int) -> list[tuple]:
    """Each trial's arm, phase, seed, config, outcome and last value, in the order the trials
    started."""
    with db.session() as session:
        trials = sorted(Repository(session).trials_of(study_id), key=lambda t: t.id)
        return [
            (
                t.arm,
                t.phase.value,
                t.seed,
                json.dumps(t.config, sort_keys=True),
                t.state.value,
                t.final_metric,
            )
            for t in trials
        ]


def test_a_killed_worker_is_resumed_and_its_verdict_equals_an_uninterrupted_run(tmp_path, request):
    # One trial at a time: a study is then deterministic (seeded samplers, seeded trials, one
    # order of completions), so the run without a kill is the same study run again.
    # A checkpoint and a report every epoch: the trial the kill interrupts resumes mid-run
    # from its checkpoint, and must still end with the uninterrupted run's values.
    every_epoch = {"MEMTUNE_CHECKPOINT_EVERY_S": "0", "MEMTUNE_REPORT_EVERY_S": "0"}
    spec = _spec("resume", trials=3, epochs=6, max_concurrent_trials=1)
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    db = Database(url)
    study_id = services.create_study(db, caller=ADMIN, spec=spec).id
    # The same study, its own database and storage, run to the end without a kill: beside
    # the killed one, in a worker and a Ray of its own (one trial at a time makes the study
    # the same whatever the timing, and the two overlap their start-up waits).
    (tmp_path / "uninterrupted").mkdir()
    url_plain = f"sqlite:///{tmp_path / 'uninterrupted' / 'plain.db'}"
    db_plain = Database(url_plain)
    plain_id = services.create_study(db_plain, caller=ADMIN, spec=spec).id
    plain = Worker(url_plain, tmp_path / "uninterrupted", **every_epoch)
    request.addfinalizer(plain.stop)  # stopped whatever fails before its own wait below
    first = Worker(url, tmp_path, **every_epoch)
    try:
        _wait(
            lambda: sum(t.state.ended for t in _trials(db, study_id).values()) >= 4,
            240,
            "4 finished trials",
        )
    finally:
        leftover = first.kill()
    before = _trials(db, study_id)
    finished = {k: t for k, t in before.items() if t.state.ended}
    rows_before = _epoch_rows(db, study_id)
    midway = [t for t in before.values() if not t.state.ended and t.epochs_done > 0]
    print(
        f"\nkilled the worker (SIGKILL, and {leftover} Ray processes it left) with "
        f"{len(finished)} of {len(before)} trials finished, "
        f"{', '.join(f'one at epoch {t.epochs_done}' for t in midway) or 'none mid-run'}"
    )

    second = Worker(url, tmp_path, **every_epoch)
    try:
        _wait(lambda: _status(db, study_id)[0] in ENDED, 300, "the resumed study to end")
    finally:
        second.stop()
    status, error = _status(db, study_id)
    assert status == "completed", error
    after = _trials(db, study_id)
    rows = _epoch_rows(db, study_id)
    assert len(after) == spec.total_trials == 10
    for key, trial in finished.items():  # kept, and not trained again
        assert after[key].state == trial.state and after[key].epochs_done == trial.epochs_done
        assert {k: v for k, v in rows.items() if k[0] == trial.id} == {
            k: v for k, v in rows_before.items() if k[0] == trial.id
        }
    assert set(rows.values()) == {1}  # every epoch stored once
    assert all(t.state.ended for t in after.values())
    assert all(t.epochs_done == 6 for t in after.values() if t.state == TrialState.COMPLETED)
    resumed = _verdict(db, study_id)
    with db.session() as session:
        recomputed = build_verdict(spec, stored_records(Repository(session), study_id, spec))
    assert resumed.to_dict()["arms"] == recomputed.to_dict()["arms"]

    try:
        _wait(lambda: _status(db_plain, plain_id)[0] in ENDED, 300, "the uninterrupted study")
    finally:
        plain.stop()
    assert _status(db_plain, plain_id)[0] == "completed"
    assert _trained(db, study_id) == _trained(db_plain, plain_id)  # trials and seeds match
    assert _statistics(resumed) == _statistics(_verdict(db_plain, plain_id))
    comparison = resumed.comparisons[0]
    orphans = sum(
        t.state == optuna.trial.TrialState.FAIL
        for summary in optuna.get_all_study_summaries(url)
        for t in optuna.load_study(study_name=summary.study_name, storage=url).trials
    )
    print(
        f"resumed: {len(after)} trials, {len(finished)} kept untouched, {sum(rows.values())} "
        f"epoch rows, each epoch once; {orphans} trial(s) issued after Tune's last snapshot "
        "failed in Optuna and issued anew. Without a kill: the same 10 trials (arm, seed, config) in "
        f"the same order, and the same verdict but for measured times (difference "
        f"{comparison.difference}, p {comparison.p_value})"
    )


def test_a_resumed_study_can_still_be_cancelled(tmp_path):
    url = f"sqlite:///{tmp_path / 'cancel.db'}"
    db = Database(url)
    spec = _spec("cancel-resumed", trials=20, epochs=30, max_concurrent_trials=2)
    study_id = services.create_study(db, caller=ADMIN, spec=spec).id
    first = Worker(url, tmp_path)
    try:
        _wait(
            lambda: any(t.epochs_done >= 2 for t in _trials(db, study_id).values()), 240, "epochs"
        )
    finally:
        first.kill()
    second = Worker(url, tmp_path)
    try:
        _wait(
            lambda: (
                _attempt(db, study_id) == 2
                and any(t.updated_at > t.created_at for t in _trials(db, study_id).values())
            ),
            120,
            "the resumed run",
        )
        services.cancel_study(db, caller=ADMIN, study_id=study_id)
        requested = time.monotonic()
        _wait(lambda: _status(db, study_id)[0] in ENDED, 60, "the cancel")
        took = time.monotonic() - requested
    finally:
        second.stop()
    assert _status(db, study_id)[0] == "cancelled"
    print(f"\nresumed study cancelled in {took:.1f} s")


def _attempt(db: Database, study_id: int) -> int:
    with db.session() as session:
        return Repository(session).find_study(study_id, None).attempt


def test_one_worker_runs_two_studies_at_the_same_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    db = Database(url)
    # Long enough that the second study's driver (a Ray task importing torch and Tune, a few
    # seconds here) starts while the first still runs: a report every epoch (by default they
    # are batched every 2 s, and these smoke epochs of a millisecond would end a trial in one
    # report, the first study before the second's driver is up: seen in CI).
    specs = [_spec(f"s{i}", trials=4, epochs=80) for i in range(2)]
    ids = [services.create_study(db, caller=ADMIN, spec=spec).id for spec in specs]
    worker = Worker(url, tmp_path, MEMTUNE_MAX_STUDIES="2", MEMTUNE_REPORT_EVERY_S="0")
    try:
        _wait(lambda: all(_status(db, i)[0] in ENDED for i in ids), 300, "both studies to end")
    finally:
        worker.stop()
    with db.session() as session:
        assert [session.get(Study, i).status for i in ids] == [StudyStatus.COMPLETED] * 2
        # When each study's trials ran: from its first trial's start to its last trial's end.
        spans = [
            session.execute(
                select(func.min(Trial.created_at), func.max(Trial.updated_at)).where(
                    Trial.study_id == i
                )
            ).one()
            for i in ids
        ]
    (start_a, end_a), (start_b, end_b) = spans
    assert start_b < end_a and start_a < end_b  # their trials ran at the same time
    overlap = (min(end_a, end_b) - max(start_a, start_b)).total_seconds()
    print(f"\ntwo studies on one worker: their trials overlapped for {overlap:.1f} s")


@pytest.mark.postgres
def test_the_database_blinks_and_the_api_restarts_during_a_study_and_nothing_is_lost(tmp_path):
    database, drop = _postgres_database()
    host_port = database.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = BlinkingProxy(host, int(port))
    url = database.replace(host_port, f"127.0.0.1:{proxy.port}")
    api = RunningServer(url)
    worker = None
    try:
        spec = _spec("blink", trials=3, epochs=3)
        with api.client() as client:
            study_id = client.post("/studies", json=spec.model_dump(mode="json")).json()["id"]
        db = api.db
        worker = Worker(url, tmp_path)
        _wait(lambda: any(t.epochs_done for t in _trials(db, study_id).values()), 240, "epochs")
        proxy.blink(6)
        print(f"\ndropped {proxy.dropped} connections; PostgreSQL unreachable for 6 s")
        api.stop()  # and the API restarts while the study runs
        time.sleep(7)
        api = RunningServer(url)
        _wait(lambda: _status(db, study_id)[0] in ENDED, 300, "the study to end")
        status, error = _status(db, study_id)
        assert status == "completed", error
        trials = _trials(db, study_id)
        rows = _epoch_rows(db, study_id)
        assert len(trials) == spec.total_trials
        for trial in trials.values():
            stored = sorted(epoch for (tid, epoch) in rows if tid == trial.id)
            assert stored == list(range(1, trial.epochs_done + 1)), trial.tune_trial_id
            assert trial.state != TrialState.COMPLETED or trial.epochs_done == 3
        assert set(rows.values()) == {1}
        with api.client() as client:
            verdict = client.get(f"/studies/{study_id}/verdict")
        assert verdict.status_code == 200
        log = (tmp_path / "worker.log").read_text()
        print(
            f"the worker's lease renewals that failed during the blink: "
            f"{log.count('could not renew the lease')}"
        )
        print(
            f"completed: {len(trials)} trials, {sum(rows.values())} epoch rows, none lost or "
            "doubled; the restarted API serves the verdict"
        )
    finally:
        if worker is not None:
            worker.stop()
        api.stop()
        proxy.close()
        drop()


# -- several Ray nodes on this machine --------------------------------------------------------
# ray.cluster_utils.Cluster changes Ray's process-wide state (its auth config among it), so
# each scenario runs in a Python process of its own (tests/service/ray_cluster_scenarios.py)
# and reports what it saw as JSON.


def _scenarios(names: str, tmp_path: Path) -> dict:
    """What each scenario named (comma-separated; they share one cluster) saw, by name."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.service.ray_cluster_scenarios", names, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=500,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1])


def _scenario(name: str, tmp_path: Path) -> dict:
    return _scenarios(name, tmp_path)[name]


@pytest.fixture(scope="module")
def refusal_and_notice(tmp_path_factory) -> dict:
    """Refusing a local storage starts no trial and leaves the cluster as it was: it runs on
    the shutdown notice's cluster, before it (a cluster's start is most of either's time)."""
    return _scenarios("refuse-local-storage,shutdown-notice", tmp_path_factory.mktemp("notice"))


def test_several_nodes_and_a_local_storage_are_refused_before_any_trial(refusal_and_notice):
    seen = refusal_and_notice["refuse-local-storage"]
    assert seen["raised"] == "StorageError" and "MEMTUNE_STORAGE" in seen["failed"]
    assert "3 nodes" in seen["failed"] and seen["started"] == 0
    print(f"\nrefused: {seen['failed']}")


def test_a_ray_node_dies_and_its_trials_continue_on_another(tmp_path):
    seen = _scenario("lose-a-node", tmp_path)
    assert seen["failed"] is None and seen["trials"] == seen["planned"]
    assert seen["states"] == ["completed"]
    assert seen["epochs_each_once"]  # every trial's epochs are 1..E, once each
    assert seen["recovered"] >= 1  # the trial on the lost node went on elsewhere
    print(
        f"\nremoved a Ray node while two trials ran; completed: {seen['trials']} trials, "
        f"{seen['recovered']} resumed from their checkpoints on the surviving node"
    )


def test_a_trial_that_loses_its_node_twice_resumes_without_spending_its_failure_budget(tmp_path):
    seen = _scenario("lose-a-node-twice", tmp_path)
    # max_failures is 1: before, the second loss made the seed run an error ("incomplete").
    assert seen["failed"] is None and seen["state"] == "completed", seen
    assert seen["node_losses"] == 2 and seen["attempt"] == 3, seen
    assert seen["verdict_node_losses"] == 2  # and the verdict says so
    assert seen["epochs_each_once"] and len(seen["nodes"]) == 3
    # Resumed twice from its checkpoints (the RNG state in them), it ends where the same
    # config and seed trained in one process end: equal to float tolerance on CPU.
    assert seen["value"] == pytest.approx(seen["alone_value"], abs=1e-9)
    assert seen["loss"] == pytest.approx(seen["alone_loss"], rel=1e-6)
    print(
        f"\nseed run lost its node twice, ran on {len(seen['nodes'])} nodes, attempt "
        f"{seen['attempt']}; test loss {seen['loss']!r} vs {seen['alone_loss']!r} uninterrupted"
    )


def test_a_shutdown_notice_checkpoints_a_running_trial_at_once(refusal_and_notice):
    seen = refusal_and_notice["shutdown-notice"]
    assert seen["failed"] is None and seen["states"] == ["completed"], seen
    assert seen["told"] >= 1 and seen["left"] == 0  # told, checkpointed, gone within 30 s
    # Periodic checkpoints are 10 minutes apart here, and none follows the last epoch: the
    # first came from the notice, at the epoch the trial was in (give or take the epochs of
    # the SIGTERM's trip).
    noticed = seen["checkpoints"][0]
    assert seen["noticed_at"] <= noticed <= seen["noticed_at"] + 5, seen
    # It resumed from there: every epoch once, and only the epochs after the checkpoint that
    # reached the driver before the process left were trained (and reported) again.
    assert seen["epochs_each_once"]
    assert seen["reported"] - seen["epochs"] <= 5, seen
    # A preemption, not the trial's failure, and known as one from the trial's last report:
    # the node stays up here, and nothing waits to see it dead.
    assert seen["node_losses"] == 1 and seen["attempt"] == 2, seen
    print(
        f"\nnotice at epoch {seen['noticed_at']}, checkpoint at {noticed}; re-reported {seen['reported'] - seen['epochs']}"
    )


def test_a_task_from_code_runs_on_two_nodes_from_rays_runtime_environment_after_its_file_went(
    tmp_path,
):
    seen = _scenario("code-task", tmp_path)
    assert seen["failed"] is None and seen["trials"] == seen["planned"]
    assert seen["states"] == ["completed"]
    # Every trial imported the builder from the package Ray unpacked for the job, never from
    # the deleted directory nor from the driver's own copy.
    assert seen["imports"] == seen["planned"]
    assert all(
        "/runtime_resources/py_modules_files/" in path and "/memtune_code_" in path
        for path in seen["imported_from"]
    ), seen["imported_from"]
    print(f"\n{seen['trials']} trials on two nodes imported the task from {seen['imported_from']}")


# -- the production layout ---------------------------------------------------------------------


def test_the_compose_file_is_valid_and_shares_storage_with_every_ray_node():
    if not _which("docker-compose"):
        pytest.skip("needs Debian's docker-compose (apt-get install docker-compose; .ci/run does)")
    rendered = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MEMTUNE_ADMIN_KEY": "ci-admin", "RAY_AUTH_TOKEN": "ci-token"},
    )
    assert rendered.returncode == 0, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    services_ = config["services"]
    storage = {s: svc.get("environment", {}).get("MEMTUNE_STORAGE") for s, svc in services_.items()}
    for name in ("ray-head", "ray-gpu-worker", "worker"):
        mounts = [m if isinstance(m, str) else m.get("target") for m in services_[name]["volumes"]]
        assert any("/runs" in str(m) for m in mounts), (name, mounts)
    assert storage["worker"] == "/runs"
    devices = services_["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    print(f"\ncompose: /runs shared by {sorted(n for n in services_ if 'volumes' in services_[n])}")


def _which(name: str) -> bool:
    from shutil import which

    return which(name) is not None
