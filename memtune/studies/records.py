"""The contracts between the layers: what a trial is told to do, what it reports each epoch,
and what the study keeps of it. Plain dataclasses and enums, read by attribute everywhere.

- :class:`TrialPlan` goes from the runner to the trainable (``config["run"]``);
- :class:`EpochResult` comes back once per epoch (flattened for ``tune.report``);
- :class:`TrialRecord` is the driver's account of one trial, handed to the results sink and
  to the verdict;
- :class:`StudyStatus`, :class:`TrialState` and :class:`Phase` are the only spellings of
  those states (the store keeps their values).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "COST_FIELDS",
    "EpochResult",
    "Phase",
    "StudyStatus",
    "TrialPlan",
    "TrialRecord",
    "TrialState",
    "best_value",
    "search_key",
    "worst_value",
]

Mode = Literal["min", "max"]


class StudyStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (StudyStatus.COMPLETED, StudyStatus.FAILED, StudyStatus.CANCELLED)


class TrialState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"  # every planned epoch ran
    DIVERGED = "diverged"  # the loss or a metric stopped being finite: scored the worst value
    ERROR = "error"  # the trial raised (after its retries)
    STOPPED = "stopped"  # ended early by the scheduler (ASHA) or a cancel

    @property
    def ended(self) -> bool:
        return self not in (TrialState.PENDING, TrialState.RUNNING)


class Phase(StrEnum):
    SEARCH = "search"  # a config proposed by the arm's searcher
    SEED = "seed"  # a re-run of the arm's best config on one of the study's seeds


def search_key(arm: str, repeat: int) -> str:
    return arm if repeat == 0 else f"{arm}#{repeat}"


def best_value(values: Iterable[float | None], mode: Mode) -> float | None:
    """The best finite value (lowest for ``min``), or None: the one "best so far" of memtune."""
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if mode == "min" else max(finite)


def worst_value(mode: Mode) -> float:
    """What a diverged run scores: it counts against its arm instead of vanishing."""
    return math.inf if mode == "min" else -math.inf


@dataclass(frozen=True)
class TrialPlan:
    """What is fixed for one trial; the searched hyperparameters travel beside it."""

    task: str
    task_options: Mapping[str, Any]
    smoke: bool
    optimizer: str
    fixed: Mapping[str, Any]  # the arm's pinned hyperparameters
    epochs: int
    seed: int
    arm: str
    phase: Phase
    metric: str
    mode: Mode
    threads: int = 1
    gpu: float = 0.0
    hparams: Mapping[str, Any] = field(default_factory=dict)  # a seed re-run's chosen config
    repeat: int = 0  # which repetition of the arm's search (budget.repeats)
    # The lr schedule: kind, floor, and the warmup fraction when it is not searched.
    schedule: Mapping[str, Any] = field(default_factory=lambda: {"kind": "constant"})
    # Epochs reported the moment they end (where the trial's scheduler decides); the others may
    # be reported together with a later one (see memtune.tuning.trainable).
    report_epochs: tuple[int, ...] = ()
    # A task from code: the package its files travel as (Ray's runtime environment puts it
    # on sys.path, or the runner extracted it on this machine: memtune.studies.code).
    code_package: str | None = None

    @property
    def search_key(self) -> str:
        """The arm's search this trial belongs to: one per arm and repeat."""
        return search_key(self.arm, self.repeat)

    def hyperparameters(self, sampled: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The optimizer's arguments: pinned, then chosen (seed runs), then sampled (search)."""
        return {**self.fixed, **self.hparams, **(sampled or {})}


# The cost figures of an epoch, in the order exports show them.
COST_FIELDS = (
    "epoch_time_s",
    "mean_step_time_s",
    "training_time_s",
    "steps",
    "gradient_evaluations",
    "optimizer_state_bytes",
    "peak_memory_mb",
    "mean_beta",
)


@dataclass
class EpochResult:
    """One epoch of one trial: its metrics and what it cost."""

    epoch: int
    train_loss: float
    metrics: dict[str, float]  # the task's metrics (empty when it diverged before evaluating)
    diverged: bool
    epoch_time_s: float
    mean_step_time_s: float  # optimizer.step() alone: no forward or backward, SAM's included
    training_time_s: float  # cumulative, this epoch included
    optimizer_state_bytes: int
    peak_memory_mb: float  # the process's peak since this trial started
    mean_beta: float | None = None  # adaptive-memory optimizers only
    steps: int = 0  # optimizer steps, cumulative
    gradient_evaluations: int = 0  # forward + backward passes, cumulative (SAM: 2 per step)
    optimizer_impl: str | None = (
        None  # "fused", "compiled", "foreach" or "forloop": the path that ran
    )
    device: str | None = None  # where it ran ("cpu", or the GPU's name)
    node_id: str | None = None  # the Ray node it ran on (a lost node is told by it)

    def value(self, name: str) -> float | None:
        """A metric by name (``train_loss`` included); None if this epoch has none of it."""
        return self.train_loss if name == "train_loss" else self.metrics.get(name)

    def costs(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in COST_FIELDS if getattr(self, k) is not None}

    def as_dict(self) -> dict[str, Any]:
        """Flat, as ``tune.report`` takes it and the store keeps it."""
        flat: dict[str, Any] = {"epoch": self.epoch, "train_loss": self.train_loss}
        flat["diverged"] = self.diverged
        flat.update(self.costs())
        flat.update(optimizer_impl=self.optimizer_impl, device=self.device, node_id=self.node_id)
        flat.update(self.metrics)
        return flat

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], metric_names: Iterable[str]) -> EpochResult:
        """The inverse of :meth:`as_dict`; keys that are neither fields nor ``metric_names``
        (Ray's own) are dropped."""
        names = {f.name for f in fields(cls)} - {"metrics"}
        known = {k: data[k] for k in names if k in data}
        metrics = {k: float(data[k]) for k in metric_names if k in data}
        return cls(**known, metrics=metrics)


@dataclass
class TrialRecord:
    """One trial as the driver sees it."""

    trial_id: str
    arm: str
    phase: Phase
    seed: int
    config: dict[str, Any]
    state: TrialState = TrialState.RUNNING
    epochs: list[EpochResult] = field(default_factory=list)
    error: str | None = None  # the last line of a failure
    attempt: int = 1  # 2 after one failure and a restart from the checkpoint
    repeat: int = 0
    node_losses: int = 0  # restarts because its Ray node died: not the trial's failures
    traceback: str | None = None  # all of it

    def final(self, metric: str, mode: Mode) -> float:
        """The last epoch's value; the worst value if the trial diverged or has no epoch."""
        if self.state == TrialState.DIVERGED or not self.epochs:
            return worst_value(mode)
        value = self.epochs[-1].value(metric)
        return math.nan if value is None else float(value)

    def best(self, metric: str, mode: Mode) -> float | None:
        return best_value((e.value(metric) for e in self.epochs), mode)

    def curve(self, metric: str) -> list[tuple[float, float]]:
        """(cumulative training seconds, value) per epoch that has the metric."""
        return [
            (e.training_time_s, value)
            for e in self.epochs
            if (value := e.value(metric)) is not None
        ]

    def mean(self, cost: str) -> float | None:
        """The mean of a cost figure over the epochs that have a finite one."""
        values = [getattr(e, cost) for e in self.epochs]
        finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
        return statistics.fmean(finite) if finite else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "arm": self.arm,
            "phase": str(self.phase),
            "seed": self.seed,
            "config": self.config,
            "state": str(self.state),
            "attempt": self.attempt,
            "repeat": self.repeat,
            "node_losses": self.node_losses,
            "error": self.error,
            "epochs": [e.as_dict() for e in self.epochs],
        }
