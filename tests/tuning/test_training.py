"""One trial's training without Ray: metrics, divergence, and exact resume from a checkpoint."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from memtune.tuning.training import TrialTraining, _peak_memory_mb


def _training(**changes) -> TrialTraining:
    options = dict(
        task="digits_mlp",
        task_options=None,
        optimizer="am_sgd",
        hyperparameters={"lr": 0.3},
        seed=0,
        smoke=True,
    )
    return TrialTraining(**{**options, **changes})


def test_epoch_reports_metrics_costs_and_the_mean_beta():
    result = _training().run_epoch()
    assert result.epoch == 1 and not result.diverged
    assert 0 <= result.metrics["val_accuracy"] <= 1
    assert set(result.metrics) == {"val_loss", "val_accuracy"}
    assert result.optimizer_state_bytes > 0 and result.mean_step_time_s > 0
    assert 0 <= result.mean_beta <= 0.9


def test_absurd_learning_rate_ends_as_diverged_not_as_an_error():
    training = _training(optimizer="sgd", hyperparameters={"lr": 1e8})
    results = [training.run_epoch() for _ in range(3)]
    assert any(r.diverged for r in results)


def test_resume_from_state_dict_repeats_the_uninterrupted_run():
    uninterrupted = _training()
    expected = [uninterrupted.run_epoch().metrics["val_loss"] for _ in range(3)]

    first = _training()
    first.run_epoch()
    saved = copy.deepcopy(first.state_dict())
    resumed = _training(seed=0)
    resumed.load_state_dict(saved)
    assert resumed.epoch == 1
    losses = [resumed.run_epoch().metrics["val_loss"] for _ in range(2)]
    assert losses == expected[1:]
    for p, q in zip(
        resumed.task.model.parameters(), uninterrupted.task.model.parameters(), strict=True
    ):
        assert torch.equal(p, q)


DROPOUT_TASK = """
import numpy, random, torch
from torch import nn
from memtune.studies.runs import TaskRun

class Noisy(TaskRun):  # dropout, and noise from numpy's and Python's generators
    def __init__(self, seed):
        self.seed = seed
        self.x, self.y = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(64)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 1))
    def batches(self, epoch):
        return [slice(i, i + 16) for i in range(0, 64, 16)]
    def loss(self, rows):
        noise = float(numpy.random.rand()) + random.random()
        return ((self.model(self.x[rows]).squeeze(1) - self.y[rows] - noise) ** 2).mean()
    def evaluate(self, split="val"):
        return {f"{split}_loss": float(self.loss(slice(0, 64)))}

def build(options, seed, device):
    return Noisy(seed)
"""


def test_a_checkpoint_carries_every_random_generator(tmp_path, monkeypatch):
    from memtune.studies.code import TaskCode, code_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "noisy.py").write_text(DROPOUT_TASK)
    code = TaskCode.read("noisy.py:build", tmp_path)
    code.extract(code_cache())

    def training() -> TrialTraining:
        return _training(
            task=code.reference, optimizer="sgd", hyperparameters={"lr": 0.01}, smoke=False,
            code_package=code.package,
        )  # fmt: skip

    uninterrupted = training()
    expected = [uninterrupted.run_epoch().train_loss for _ in range(3)]
    first = training()
    first.run_epoch()
    saved = copy.deepcopy(first.state_dict())
    torch.manual_seed(12345)  # a new process draws other numbers
    np.random.seed(12345)
    resumed = training()
    resumed.load_state_dict(saved)
    assert [resumed.run_epoch().train_loss for _ in range(2)] == expected[1:]
    without = {**saved, "rng": None}  # what a checkpoint without the generators resumes to
    del without["rng"]
    torch.manual_seed(12345)
    other = training()
    other.load_state_dict(without)
    assert [other.run_epoch().train_loss for _ in range(2)] != expected[1:]


def _slow_loss(training: TrialTraining, seconds: float) -> None:
    """Makes each gradient evaluation take ``seconds`` longer, outside the optimizer."""
    loss = training.task.loss

    def slow(batch):
        time.sleep(seconds)
        return loss(batch)

    training.task.loss = slow


@pytest.mark.parametrize(
    ("optimizer", "per_step", "impl"),
    [("sgd", 1, "fused"), ("am_sgd", 1, "compiled"), ("sam", 2, "fused")],
)
def test_step_time_is_the_optimizer_alone_and_gradient_evaluations_are_counted(
    optimizer, per_step, impl
):
    training = _training(optimizer=optimizer, hyperparameters={"lr": 0.05})
    training.run_epoch()  # a first step's one-time costs (a kernel's first call) stay out
    _slow_loss(training, 0.05)
    result = training.run_epoch()
    assert result.steps == 16 and result.gradient_evaluations == per_step * result.steps
    # The passes took their time (8 steps an epoch) ...
    assert result.epoch_time_s / 8 > 0.05 * per_step
    # ... outside the measured step (SAM's subtracted): a step that held one would take 0.05 s
    # or more; half of it leaves room for a machine busy with other tests.
    assert result.mean_step_time_s < 0.025
    assert result.optimizer_impl == impl and result.device == "cpu"


def test_peak_memory_is_the_trials_own_not_the_processes_lifetime_peak():
    ballast = np.ones(60_000_000)  # 458 MiB, gone before the trial starts
    process_peak = _peak_memory_mb(torch.device("cpu"))
    del ballast
    result = _training().run_epoch()
    assert result.peak_memory_mb < process_peak - 300


def test_only_a_test_epoch_evaluates_the_test_split():
    training = _training()
    assert not any(k.startswith("test_") for k in training.run_epoch().metrics)
    final = training.run_epoch(test=True)
    assert {"test_loss", "test_accuracy"} <= set(final.metrics)
    assert final.training_time_s == pytest.approx(training.training_time_s)


def test_a_searched_beta1_becomes_the_first_of_torchs_betas():
    training = _training(optimizer="adamw", hyperparameters={"lr": 1e-3, "beta1": 0.5})
    assert training.optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    am = _training(optimizer="am_adamw", hyperparameters={"lr": 1e-3, "beta1": 0.7})
    assert am.optimizer.param_groups[0]["betas"] == (0.7, 0.999)
