"""One trial's training, independent of Ray: build task and optimizer, run epochs, measure.

The Ray trainable (``workers.trainable``) wraps this with ``tune.report`` and checkpoints; the
overhead benchmark runs it in a plain loop to compare.
"""

from __future__ import annotations

import logging
import math
import random
import resource
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from memtune.optimizers import get_optimizer
from memtune.studies.code import CodeError, code_root, is_code_reference, load_builder
from memtune.studies.records import EpochResult
from memtune.studies.tasks import get_task

if TYPE_CHECKING:
    from memtune.studies.runs import TaskRun

__all__ = ["TrialTraining", "build_task", "seed_everything"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


def lr_multiplier(
    kind: str, *, total_steps: int, warmup_fraction: float = 0.0, floor: float = 0.0
) -> Callable[[int], float]:
    """The factor on the peak lr before optimizer step ``t`` (0-based): a linear warmup
    (t + 1) / W over the first W = warmup_fraction x total steps, then constant, or a cosine or
    linear decay toward ``floor``. It is never 0 inside the run: the last step's progress is
    below 1, and the warmup starts at 1 / W (adaptive memory divides by the lr)."""
    warmup = round(warmup_fraction * total_steps)
    span = max(1, total_steps - warmup)

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / span)
        decayed = 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1 - progress
        return floor + (1 - floor) * decayed

    return multiplier


# What a trial calls on the object a task's builder returns (memtune.studies.runs.TaskRun).
_TASK_RUN = ("model", "batches", "loss", "evaluate")


def build_task(
    task: str,
    options: Mapping[str, Any] | None,
    seed: int,
    device: torch.device,
    *,
    smoke: bool = False,
    code_package: str | None = None,
) -> TaskRun:
    """One trial's task: a registered one by name, or the builder of a task from code,
    imported here from the study's files (never unpickled). What goes wrong in a task from
    code before its first epoch is a CodeError naming the spec's field (the runner stops the
    study on it), chained to the user's own exception and traceback."""
    if not is_code_reference(task):
        return get_task(task).create(options, seed, device, smoke=smoke)
    build = load_builder(task, code_root(code_package) if code_package else None)
    try:
        run = build(dict(options or {}), seed, device)
    except Exception as error:
        raise CodeError("task", f"{task} raised {type(error).__name__}: {error}") from error
    missing = [name for name in _TASK_RUN if not hasattr(run, name)]
    if missing:
        raise CodeError(
            "task",
            f"{task} returned {type(run).__name__}, not a TaskRun: it has no "
            f"{', '.join(missing)} (subclass memtune.studies.runs.TaskRun)",
        )
    if not isinstance(run.model, torch.nn.Module):
        raise CodeError(
            "task",
            f"{task} returned a run whose model is {type(run.model).__name__}, not a torch.nn.Module",
        )
    return run


def _reset_peak_memory(device: torch.device) -> None:
    """Starts this trial's peak afresh: an actor reused across trials (and arms) must not
    report another trial's peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets the process's peak resident set (VmHWM)
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        log.debug("cannot reset the peak resident set here; peaks span trials", exc_info=True)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _implementation(optimizer: torch.optim.Optimizer, device: torch.device) -> str:
    """Which path the optimizer's step took (SAM: its base's): a memory optimizer says which
    of its implementations ran (``last_impl``), torch's by their flags."""
    stepping = getattr(optimizer, "base_optimizer", optimizer)
    if getattr(stepping, "last_impl", None):
        return stepping.last_impl
    defaults = stepping.defaults
    if defaults.get("fused"):
        return "fused"
    foreach = defaults.get("foreach")
    return "foreach" if foreach or (foreach is None and device.type == "cuda") else "forloop"


class TrialTraining:
    """A task and an optimizer for one trial; ``run_epoch`` trains one epoch and returns its
    :class:`EpochResult`, with ``diverged=True`` as soon as the loss stops being finite.

    Costs are measured on what they name: ``mean_step_time_s`` is ``optimizer.step()`` alone
    (the forward and backward passes are outside it; SAM's second pass, which runs inside its
    step through the closure, is subtracted and counted as a gradient evaluation), with CUDA
    synchronized around it; the peak memory is this trial's. A baseline with torch's fused
    kernels runs them unless its arm pins ``fused`` or ``foreach``; a memory optimizer runs
    its default implementation (compiled: on CPU memtune's kernels at any size, elsewhere
    inductor's graphs for a large model) unless its arm pins ``impl``.
    """

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
        epochs: int | None = None,
        schedule: Mapping[str, Any] | None = None,
        code_package: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        _reset_peak_memory(self.device)
        seed_everything(seed)
        self.task = build_task(
            task,
            task_options,
            seed,
            self.device,
            smoke=smoke,
            code_package=code_package,
        )
        spec = get_optimizer(optimizer)
        hyperparameters = dict(hyperparameters)
        schedule = dict(schedule or {"kind": "constant"})
        warmup = hyperparameters.pop("warmup_fraction", None)  # searched or pinned per arm
        if warmup is None:
            warmup = schedule.get("warmup_fraction") or 0.0
        stepping = (  # whose step runs: SAM's base does SAM's
            get_optimizer(hyperparameters.get("base", spec.defaults["base"]))
            if spec.wraps_base
            else spec
        )
        beta1 = hyperparameters.pop("beta1", None)  # searched: the first of torch's betas
        if beta1 is not None:
            default = spec.options.model_fields["betas"].default
            beta2 = spec.config(**hyperparameters).get("betas", default)[1]
            hyperparameters["betas"] = (float(beta1), float(beta2))
        if stepping.supports_fused and not {"fused", "foreach"} & hyperparameters.keys():
            hyperparameters["fused"] = True  # the fastest path a user of the baseline has
        self.optimizer = spec.build(self.task.model.parameters(), **hyperparameters)
        self.needs_closure = spec.needs_closure
        steps_per_epoch = sum(1 for _ in self.task.batches(0))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_multiplier(
                schedule["kind"],
                total_steps=steps_per_epoch * (epochs or 1),
                warmup_fraction=float(warmup),
                floor=float(schedule.get("floor", 0.0)),
            ),
        )
        self.epoch = 0  # epochs done
        self.training_time_s = 0.0
        self.steps = 0
        self.gradient_evaluations = 0

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _gradient(self, batch: Any) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.task.loss(batch)
        loss.backward()
        self.gradient_evaluations += 1
        return loss

    def _step(self, batch: Any) -> tuple[torch.Tensor, float]:
        """One optimizer step on ``batch``: its loss and the seconds spent in step() alone."""
        if not self.needs_closure:
            loss = self._gradient(batch)
            self._synchronize()
            started = time.perf_counter()
            self.optimizer.step()
            self._synchronize()
            return loss, time.perf_counter() - started
        inside = 0.0  # seconds of gradient evaluations inside step()

        def closure() -> torch.Tensor:
            nonlocal inside
            self._synchronize()
            started = time.perf_counter()
            loss = self._gradient(batch)
            self._synchronize()
            inside += time.perf_counter() - started
            return loss

        started = time.perf_counter()
        loss = self.optimizer.step(closure)
        self._synchronize()
        return loss, time.perf_counter() - started - inside

    def run_epoch(self, *, test: bool = False) -> EpochResult:
        """Trains one epoch and evaluates on validation; with ``test`` (a seed re-run's last
        epoch) on the test split too, outside the timed training."""
        start = time.perf_counter()
        losses = []
        beta_sum, beta_count = None, 0
        step_time = 0.0
        diverged = False
        for batch in self.task.batches(self.epoch):
            loss, seconds = self._step(batch)
            self.scheduler.step()  # per optimizer step, the same for every arm
            step_time += seconds
            self.steps += 1
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
            metrics = self.task.evaluate("val")
            diverged = not all(math.isfinite(v) for v in metrics.values())
        epoch_time = time.perf_counter() - start
        self.epoch += 1
        self.training_time_s += epoch_time
        if test and not diverged:
            metrics.update(self.task.evaluate("test"))
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
            steps=self.steps,
            gradient_evaluations=self.gradient_evaluations,
            optimizer_impl=_implementation(self.optimizer, self.device),
            device=_device_name(self.device),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.task.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "training_time_s": self.training_time_s,
            "steps": self.steps,
            "gradient_evaluations": self.gradient_evaluations,
            # Every generator a task or an optimizer may draw from (dropout, noise, SAM's
            # perturbation): a trial resumed from here draws what it would have drawn.
            "rng": _rng_state(self.device),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.task.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.training_time_s = float(state["training_time_s"])
        self.steps = int(state.get("steps", 0))
        self.gradient_evaluations = int(state.get("gradient_evaluations", 0))
        if "rng" in state:  # checkpoints before memtune 0.1.0's node-loss work have none
            _set_rng_state(state["rng"], self.device)
