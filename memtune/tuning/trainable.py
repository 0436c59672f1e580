"""The Ray Tune function trainable: ``config`` in, every epoch's results out through
``tune.report`` (short epochs several to a report: see ``REPORT_EVERY_S``).

``config["run"]`` is the trial's :class:`~memtune.studies.records.TrialPlan` (task, optimizer,
seed, epochs, arm, phase); the optimizer's hyperparameters are the other top-level keys (what
Optuna sampled) or the plan's ``hparams`` (a seed re-run of the best config). torch is
imported once per worker process, at import of this module, and actors are reused between
trials.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from memtune.studies.code import CodeError, is_code_reference
from memtune.studies.records import EpochResult, Phase, TrialPlan, worst_value
from memtune.studies.tasks import TRAIN_LOSS
from memtune.tuning.training import TrialTraining

__all__ = [
    "CHECKPOINT_FILE",
    "EARLIER_EPOCHS",
    "SHUTDOWN_NOTICE",
    "hyperparameters_of",
    "train_trial",
]

CHECKPOINT_FILE = "trial.pt"
# A checkpoint at most this often, and at a shutdown notice; none after the last epoch. Short
# epochs would spend more on writing checkpoints, and on the experiment snapshot each one forces
# (CheckpointConfig(num_to_keep=1) in the runner), than on training; a checkpoint after the
# last epoch forced a snapshot per trial, and each snapshot serialises every trial so far: a
# study of thousands of short trials became quadratic (bench/scale.py, docs/benchmarks.md).
# A trial that loses its node, or a study that loses its worker, re-trains at most this much
# (a trial that ended after the last snapshot runs again, to the same values: checkpoints
# and seeds carry every random state); its re-reported epochs are stored once.
# MEMTUNE_CHECKPOINT_EVERY_S=0 checkpoints every epoch, the last included.
CHECKPOINT_EVERY_S = float(os.environ.get("MEMTUNE_CHECKPOINT_EVERY_S", "10"))
# A report at most this often, carrying every epoch since the last one (EARLIER_EPOCHS, then
# the newest as the report itself); always at once after the plan's report_epochs (where ASHA
# decides), the last epoch, a divergence and a checkpoint. Every report costs the trial and
# Tune's driver some CPU (serialising, the driver's callbacks, the searcher), taken from the
# trials on a small machine (bench/study_overhead.py; docs/benchmarks.md). The cost of 2 s:
# epochs reach the store and the dashboard up to 2 s late, and a cancel takes effect at the
# next report. MEMTUNE_REPORT_EVERY_S=0 reports every epoch by itself.
REPORT_EVERY_S = float(os.environ.get("MEMTUNE_REPORT_EVERY_S", "2"))
EARLIER_EPOCHS = "memtune_earlier_epochs"
# In the report a trial makes before it leaves on a shutdown notice, the id of the actor that
# leaves: the driver then knows that actor's death for a preemption at once, without waiting
# for the node to be seen dead (and a later actor's death, after a restart from the checkpoint
# that carries it, is judged on its own).
SHUTDOWN_NOTICE = "memtune_shutdown_notice"


# A node's shutdown notice: SIGTERM to a trial's process (a node shutting down sends it to
# every process; on Kubernetes, `memtune drain-node` in the pods' preStop hook does). The
# trial checkpoints at the end of the epoch it is in, then exits as Ray's own handler would,
# so that it resumes elsewhere from there instead of from its last periodic checkpoint.
_SHUTDOWN = threading.Event()


def _install_shutdown_notice() -> None:
    """In a Ray worker's main thread (where this module is imported to build a trial actor):
    the first SIGTERM asks the running trial to checkpoint; a second, or one while no trial
    runs, does what the handler before it did (Ray's: exit)."""
    from ray._private import worker

    if worker.global_worker.mode != worker.WORKER_MODE:
        return  # a driver (memtune run, the runner) keeps its own SIGTERM
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def notice(signum: int, frame: Any) -> None:
        if _SHUTDOWN.is_set() or not _TRAINING.is_set():
            if callable(previous):
                previous(signum, frame)
            raise SystemExit(1)
        _SHUTDOWN.set()

    signal.signal(signal.SIGTERM, notice)


_TRAINING = threading.Event()  # a trial is training in this process
_install_shutdown_notice()


def _exit_after_notice() -> None:
    """The checkpoint is with the driver: leave as the shutdown notice asked."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)  # the main thread exits meanwhile


def hyperparameters_of(config: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's arguments of a trial's config: pinned, chosen, then sampled values."""
    plan: TrialPlan = config["run"]
    return plan.hyperparameters({key: value for key, value in config.items() if key != "run"})


def _device(plan: TrialPlan) -> str:
    if plan.gpu > 0 and torch.cuda.is_available() and ray.get_gpu_ids():
        return "cuda"
    return "cpu"


def _check_metric(plan: TrialPlan, result: EpochResult) -> None:
    """A task from code names its metrics in the spec: the one the search selects on must be
    in every evaluated epoch (Tune would stop the whole study with its own error otherwise;
    the runner checks the others)."""
    if result.diverged or plan.metric == TRAIN_LOSS or plan.metric in result.metrics:
        return
    if is_code_reference(plan.task):
        returned = ", ".join(sorted(result.metrics)) or "nothing"
        raise CodeError(
            "metrics",
            f"{plan.task}'s evaluate('val') returned {returned}, not {plan.metric} (the spec's "
            "metric)",
        )


def train_trial(config: dict[str, Any]) -> None:
    plan: TrialPlan = config["run"]
    torch.set_num_threads(max(1, plan.threads))
    training = TrialTraining(
        task=plan.task,
        task_options=plan.task_options,
        optimizer=plan.optimizer,
        hyperparameters=hyperparameters_of(config),
        seed=plan.seed,
        smoke=plan.smoke,
        device=_device(plan),
        epochs=plan.epochs,
        schedule=plan.schedule,
        code_package=plan.code_package,
    )
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            training.load_state_dict(
                torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=False)
            )

    node_id = ray.get_runtime_context().get_node_id()
    _TRAINING.set()
    try:
        _train(plan, training, node_id)
    finally:
        _TRAINING.clear()


def _train(plan: TrialPlan, training: TrialTraining, node_id: str) -> None:
    checkpointed = reported = time.monotonic()
    earlier: list[dict[str, Any]] = []  # epochs not reported yet
    while training.epoch < plan.epochs:
        # Only a seed re-run, and only after its last epoch, ever sees the test split.
        last = training.epoch + 1 == plan.epochs
        result = training.run_epoch(test=last and plan.phase == Phase.SEED)
        result.node_id = node_id
        _check_metric(plan, result)
        if result.diverged:
            # A result, not an error: the worst value keeps searchers and schedulers working.
            if plan.metric == "train_loss":
                result.train_loss = worst_value(plan.mode)
            else:
                result.metrics[plan.metric] = worst_value(plan.mode)
            tune.report({**result.as_dict(), EARLIER_EPOCHS: earlier})
            return
        now = time.monotonic()
        notice = _SHUTDOWN.is_set()
        checkpoint_due = notice or now - checkpointed >= CHECKPOINT_EVERY_S
        if not (
            last
            or checkpoint_due
            or result.epoch in plan.report_epochs
            or now - reported >= REPORT_EVERY_S
        ):
            earlier.append(result.as_dict())
            continue
        metrics = {**result.as_dict(), EARLIER_EPOCHS: earlier}
        if notice:
            metrics[SHUTDOWN_NOTICE] = ray.get_runtime_context().get_actor_id()
        earlier, reported = [], now
        if not checkpoint_due:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory(prefix="memtune-ckpt-") as directory:
            torch.save(training.state_dict(), os.path.join(directory, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        checkpointed = time.monotonic()
        if notice and not last:
            _exit_after_notice()
