"""One trial's training, independent of Ray: build task and optimizer, run epochs, measure.

The Ray trainable (``workers.trainable``) wraps this with ``tune.report`` and checkpoints; the
overhead benchmark runs it in a plain loop to compare.
"""

from __future__ import annotations

import math
import random
import resource
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from memtune.optimizers import build_optimizer
from memtune.studies.records import EpochResult
from memtune.studies.tasks import get_task

__all__ = ["TrialTraining", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Linux reports the process's peak resident set in KiB (the worker's, across its trials).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TrialTraining:
    """A task and an optimizer for one trial; ``run_epoch`` trains one epoch and returns its
    :class:`EpochResult`, with ``diverged=True`` as soon as the loss stops being finite."""

    def __init__(
        self,
        *,
        task: str,
        task_options: Mapping[str, Any] | None,
        optimizer: str,
        hyperparameters: Mapping[str, Any],
        seed: int,
        smoke: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        seed_everything(seed)
        self.task = get_task(task).create(task_options, seed, self.device, smoke=smoke)
        self.optimizer = build_optimizer(optimizer, self.task.model.parameters(), **hyperparameters)
        self.epoch = 0  # epochs done
        self.training_time_s = 0.0

    def _closure(self, batch: Any):
        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.task.loss(batch)
            loss.backward()
            return loss

        return closure

    def run_epoch(self) -> EpochResult:
        start = time.perf_counter()
        losses = []
        beta_sum, beta_count = None, 0
        step_time = 0.0
        diverged = False
        for batch in self.task.batches(self.epoch):
            step_start = time.perf_counter()
            loss = self.optimizer.step(self._closure(batch))
            step_time += time.perf_counter() - step_start
            losses.append(loss.detach())
            beta = getattr(self.optimizer, "last_beta", None)
            if beta is not None:  # kept on device: summed without a host sync
                beta_sum = beta.mean() if beta_sum is None else beta_sum + beta.mean()
                beta_count += 1
            if len(losses) % 32 == 0 and not torch.isfinite(torch.stack(losses[-32:])).all():
                diverged = True
                break
        train_loss = float(torch.stack(losses).mean()) if losses else math.nan
        diverged = diverged or not math.isfinite(train_loss)
        metrics: dict[str, float] = {}
        if not diverged:
            metrics = self.task.evaluate()
            diverged = not all(math.isfinite(v) for v in metrics.values())
        epoch_time = time.perf_counter() - start
        self.epoch += 1
        self.training_time_s += epoch_time
        return EpochResult(
            epoch=self.epoch,
            train_loss=train_loss,
            metrics=metrics,
            diverged=diverged,
            epoch_time_s=epoch_time,
            mean_step_time_s=step_time / max(len(losses), 1),
            training_time_s=self.training_time_s,
            optimizer_state_bytes=_state_bytes(self.optimizer),
            peak_memory_mb=_peak_memory_mb(self.device),
            mean_beta=float(beta_sum) / beta_count if beta_count else None,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.task.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "training_time_s": self.training_time_s,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.task.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.training_time_s = float(state["training_time_s"])
