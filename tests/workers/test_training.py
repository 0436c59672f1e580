"""One trial's training without Ray: metrics, divergence, and exact resume from a checkpoint."""

from __future__ import annotations

import copy

import torch

from memtune.workers.training import TrialTraining


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
