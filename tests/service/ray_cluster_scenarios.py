"""Scenarios on a Ray cluster of several nodes on this machine (ray.cluster_utils.Cluster),
each run in a process of its own by tests/service/test_distributed.py; prints a JSON line.

    python -m tests.service.ray_cluster_scenarios NAME[,NAME...] TMP_DIR

NAME: refuse-local-storage, shutdown-notice, lose-a-node, lose-a-node-twice or code-task.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter

from memtune.tuning.cluster import configure_ray_environment

configure_ray_environment()  # loopback only, token auth: as every memtune driver
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from memtune.studies.spec import StudySpec  # noqa: E402
from memtune.tuning.runner import StorageError, StudyRunner  # noqa: E402
from memtune.tuning.sinks import ResultsSink  # noqa: E402
from tests.service.conftest import free_port  # noqa: E402


class Recording(ResultsSink):
    def __init__(self) -> None:
        self.failed: str | None = None
        self.started = 0
        self.epochs: Counter = Counter()  # trial -> highest epoch reported
        self.reports: Counter = Counter()  # trial -> epochs reported, re-reported ones included
        self.lock = threading.Lock()

    def trial_started(self, record) -> None:
        self.started += 1

    def epoch_reported(self, record, epoch) -> None:
        with self.lock:
            self.epochs[record.trial_id] = max(self.epochs[record.trial_id], epoch.epoch)
            self.reports[record.trial_id] += 1

    def study_failed(self, error: str) -> None:
        self.failed = error


def _spec(name: str, trials: int, epochs: int) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "task": "digits_mlp",
            "smoke": True,
            "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
            "budget": {"searches": 1, "trials_per_search": trials, "epochs": epochs},
            "seeds": [1, 2],
        }
    )


def refuse_local_storage(tmp: str) -> dict:
    sink = Recording()
    runner = StudyRunner(
        _spec("local", 2, 2), sink, experiment_path=f"{tmp}/local", shared_storage=False
    )
    try:
        runner.run()
        raised = None
    except StorageError:
        raised = "StorageError"
    return {"raised": raised, "failed": sink.failed, "started": sink.started}


def lose_a_node(tmp: str, cluster: Cluster, nodes: list) -> dict:
    epochs = 400  # long enough that both trials are mid-run when their node goes
    sink = Recording()
    spec = _spec("node-loss", 1, epochs)
    runner = StudyRunner(spec, sink, experiment_path=f"{tmp}/shared", shared_storage=True)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("verdict", runner.run()))
    thread.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        with sink.lock:
            mid_run = sum(3 <= e <= epochs - 100 for e in sink.epochs.values())
        if mid_run >= 2:
            break
        time.sleep(0.1)
    # Remove a node that runs a trial: its one CPU is taken (Ray's per-node availability).
    from ray._private.state import state

    available = state.available_resources_per_node()
    victim = next((n for n in nodes if available.get(n.node_id, {}).get("CPU", 1) < 1), nodes[0])
    cluster.remove_node(victim)
    thread.join(timeout=400)
    records = list(runner.records.values())
    return {
        "failed": sink.failed if "verdict" in outcome else (sink.failed or "did not finish"),
        "planned": spec.total_trials,
        "trials": len(records),
        "states": sorted({r.state.value for r in records}),
        "epochs_each_once": all(
            [e.epoch for e in r.epochs] == list(range(1, epochs + 1)) for r in records
        ),
        "recovered": sum(r.attempt > 1 for r in records),
    }


def code_task(tmp: str, cluster: Cluster) -> dict:
    """A study of a task from code on two nodes, its file deleted once the spec was read: the
    trials import it from what Ray's runtime environment brought (the driver connects with
    RAY_ADDRESS, as a user's would)."""
    import shutil
    from pathlib import Path

    import memtune
    from memtune.tuning.api import study_spec

    source = Path(tmp) / "src"
    source.mkdir()
    seen = Path(tmp) / "seen.txt"
    example = (Path(memtune.__file__).parent / "examples" / "my_task.py").read_text()
    (source / "wine_task.py").write_text(
        example
        + "\n\ndef build(options, seed, device):  # notes where this module was imported from\n"
        + "    with open(options['seen'], 'a') as seen:\n"
        + "        seen.write(__file__ + '\\n')\n"
        + "    return WineRun(options, seed, device)\n"
    )
    spec = study_spec(
        {
            "name": "code-on-two-nodes",
            "task": str(source / "wine_task.py") + ":build",
            "metrics": {"val_loss": "min", "val_accuracy": "max"},
            "task_options": {"seen": str(seen)},
            "arms": [{"optimizer": "adamw", "baseline": True}, {"optimizer": "am_adamw"}],
            "budget": {"searches": 1, "trials_per_search": 2, "epochs": 2},
            "seeds": [1, 2],
        }
    )
    shutil.rmtree(source)  # submitted: the user's directory may go
    os.environ["RAY_ADDRESS"] = cluster.address
    sink = Recording()
    runner = StudyRunner(spec, sink, experiment_path=f"{tmp}/shared", shared_storage=True)
    runner.run()
    files = seen.read_text().split()
    return {
        "failed": sink.failed,
        "planned": spec.total_trials,
        "trials": len(runner.records),
        "states": sorted({r.state.value for r in runner.records.values()}),
        "imported_from": sorted(set(files)),
        "imports": len(files),
    }


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def lose_a_node_twice(tmp: str, cluster: Cluster, nodes: list) -> dict:
    """The seed run of a one-trial search loses its node twice; the study completes, and the
    seed run's value is compared with the same config and seed trained in this process."""
    import torch

    from memtune.tuning.training import TrialTraining

    # Long enough that the run is still going after two losses on a loaded machine (its
    # epochs take milliseconds; with 200 it once ended before the second loss).
    epochs = 1000
    seen: dict = {}  # trial id -> (phase, last epoch, node id)

    class Watching(Recording):
        def epoch_reported(self, record, epoch) -> None:
            super().epoch_reported(record, epoch)
            seen[record.trial_id] = (record.phase, epoch.epoch, epoch.node_id)

    sink = Watching()
    spec = StudySpec.model_validate(
        {
            "name": "node-loss-twice",
            "task": "digits_mlp",
            "smoke": True,
            "arms": [{"optimizer": "sgd"}],
            "budget": {"searches": 1, "trials_per_search": 1, "epochs": epochs},
            "seeds": [1],
        }
    )
    runner = StudyRunner(spec, sink, experiment_path=f"{tmp}/shared", shared_storage=True)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("verdict", runner.run()))
    thread.start()

    def seed_run() -> tuple | None:
        return next((v for v in list(seen.values()) if v[0] == "seed"), None)

    live = list(nodes)
    removed = []
    for loss in range(2):
        before = seed_run()[1] if seed_run() else 0
        _wait_for(
            lambda before=before: (
                (run := seed_run()) is not None and run[1] >= before + 5 and run[2] not in removed
            ),
            240,
            f"the seed run reporting before loss {loss + 1}",
        )
        victim = next(n for n in live if n.node_id == seed_run()[2])
        live.remove(victim)
        live.append(cluster.add_node(num_cpus=1))  # where it can go on
        removed.append(victim.node_id)
        cluster.remove_node(victim)
    thread.join(timeout=400)
    records = list(runner.records.values())
    (seeded,) = [r for r in records if r.phase == "seed"]
    torch.set_num_threads(1)  # as the trial ran (resources.cpu 1)
    arm = spec.arms[0]
    alone = TrialTraining(
        task=spec.task,
        task_options=spec.task_options,
        optimizer=arm.optimizer,
        hyperparameters=seeded.config,
        seed=seeded.seed,
        smoke=True,
        epochs=spec.arm_epochs(arm),
        schedule=spec.trial_schedule(arm),
    )
    for epoch in range(epochs):
        result = alone.run_epoch(test=epoch + 1 == epochs)
    return {
        "failed": sink.failed if "verdict" in outcome else (sink.failed or "did not finish"),
        "state": seeded.state.value,
        "attempt": seeded.attempt,
        "node_losses": seeded.node_losses,
        "epochs_each_once": [e.epoch for e in seeded.epochs] == list(range(1, epochs + 1)),
        "nodes": sorted({e.node_id for e in seeded.epochs}),
        "value": seeded.epochs[-1].metrics["test_accuracy"],
        "loss": seeded.epochs[-1].metrics["test_loss"],
        "alone_value": result.metrics["test_accuracy"],
        "alone_loss": result.metrics["test_loss"],
        "verdict_node_losses": outcome["verdict"].arms[0].node_losses
        if "verdict" in outcome
        else None,
    }


def shutdown_notice(tmp: str) -> dict:
    """A trial that checkpoints only every 10 minutes gets a node's shutdown notice (drain_node:
    SIGTERM to this machine's trial processes) mid-run: it checkpoints at once, and resumes
    from there rather than from its start."""
    from memtune.tuning.cluster import drain_node

    epochs = 200  # long enough to be running when the notice comes at epoch 20 or so
    checkpoints: list[int] = []

    class Watching(Recording):
        def trial_checkpointed(self, record) -> None:
            checkpoints.append(record.epochs[-1].epoch if record.epochs else 0)

    sink = Watching()
    spec = _spec("notice", 1, epochs).model_copy(
        update={"arms": _spec("notice", 1, epochs).arms[:1], "seeds": [1]}
    )
    spec = StudySpec.model_validate(spec.model_dump())
    runner = StudyRunner(spec, sink, experiment_path=f"{tmp}/shared", shared_storage=True)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("verdict", runner.run()))
    thread.start()
    _wait_for(lambda: any(e >= 20 for e in sink.epochs.values()), 240, "a trial at epoch 20")
    told, left = drain_node(timeout_s=30)
    noticed_at = max(sink.epochs.values())
    thread.join(timeout=400)
    records = list(runner.records.values())
    noticed = next(r for r in records if r.attempt > 1)
    return {
        "failed": sink.failed if "verdict" in outcome else (sink.failed or "did not finish"),
        "told": told,
        "left": left,
        "noticed_at": noticed_at,
        "checkpoints": checkpoints,
        "states": sorted({r.state.value for r in records}),
        "epochs_each_once": [e.epoch for e in noticed.epochs] == list(range(1, epochs + 1)),
        "reported": sink.reports[noticed.trial_id],
        "epochs": epochs,
        "attempt": noticed.attempt,
        "node_losses": noticed.node_losses,
    }


def _environment(name: str) -> None:
    """What a scenario's trial processes read from the environment: set before the nodes
    start, which pass it on."""
    if name == "shutdown-notice":  # only the noticed checkpoint (none after the last epoch)
        os.environ["MEMTUNE_CHECKPOINT_EVERY_S"] = "600"
        os.environ["MEMTUNE_REPORT_EVERY_S"] = "0"
    if name == "lose-a-node-twice":  # epochs of milliseconds: reports and checkpoints by time
        os.environ["MEMTUNE_REPORT_EVERY_S"] = "0.05"
        os.environ["MEMTUNE_CHECKPOINT_EVERY_S"] = "0.3"
    if name == "lose-a-node":
        # Reports and checkpoints a few times a second: by default they are batched by time
        # (every 2 s, every 10 s), and the smoke epochs of a millisecond would all end in one
        # report, before any trial is seen mid-run and its node removed; one every epoch
        # forces a snapshot every epoch and made this scenario a minute long. The nodes
        # started below, and the trial processes they start, inherit this environment.
        os.environ["MEMTUNE_REPORT_EVERY_S"] = "0.1"
        os.environ["MEMTUNE_CHECKPOINT_EVERY_S"] = "0.2"


def main(names: str, tmp: str) -> None:
    """Runs the scenarios named (comma-separated) one after the other on one cluster, and
    prints {name: what it saw}. Scenarios share a cluster only where their environments agree
    and the earlier ones leave its nodes up (refusing a local storage starts no trial)."""
    chosen = names.split(",")
    if "code-task" in chosen and chosen != ["code-task"]:
        raise SystemExit("code-task connects its own driver: run it alone")
    for name in chosen:
        _environment(name)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "gcs_server_port": free_port(),
            "include_dashboard": False,
            # The GCS sees a removed node dead after 3 failed health checks 1 s apart, not
            # Ray's default 5 checks 3 s apart: the node-loss scenarios wait seconds, not ~20 s
            # a loss. A removed node's checks fail at once (its port is closed), so the timeout
            # only matters for a live one, which a loaded machine may answer slowly.
            "_system_config": {
                "health_check_period_ms": 1000,
                "health_check_failure_threshold": 3,
                "health_check_timeout_ms": 3000,
            },
        },
    )
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    if chosen == ["code-task"]:  # the runner connects itself, with the task's runtime env
        try:
            print(json.dumps({"code-task": code_task(tmp, cluster)}))
        finally:
            ray.shutdown()
            cluster.shutdown()
        return
    scenarios = {
        "refuse-local-storage": lambda: refuse_local_storage(tmp),
        "shutdown-notice": lambda: shutdown_notice(tmp),
        "lose-a-node-twice": lambda: lose_a_node_twice(tmp, cluster, nodes),
        "lose-a-node": lambda: lose_a_node(tmp, cluster, nodes),
    }
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        seen = {name: scenarios[name]() for name in chosen}
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(*sys.argv[1:3])
