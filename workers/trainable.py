"""The Ray Tune function trainable: ``config`` in, one ``tune.report`` per epoch out.

``config["run"]`` holds what is fixed for the trial (task, optimizer, seed, epochs, arm,
phase); the optimizer's hyperparameters are the other top-level keys (what Optuna sampled)
or ``config["run"]["hparams"]`` (a seed re-run of the best config). torch is imported once per worker
process, at import of this module, and actors are reused between trials.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from workers.training import TrialTraining

__all__ = ["CHECKPOINT_FILE", "hyperparameters_of", "train_trial"]

CHECKPOINT_FILE = "trial.pt"


def hyperparameters_of(config: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's arguments: the arm's fixed values, then what was sampled or chosen."""
    run = config["run"]
    sampled = {key: value for key, value in config.items() if key != "run"}
    return {**run.get("fixed", {}), **run.get("hparams", {}), **sampled}


def _device(run: dict[str, Any]) -> str:
    if run.get("gpu", 0) > 0 and torch.cuda.is_available() and ray.get_gpu_ids():
        return "cuda"
    return "cpu"


def train_trial(config: dict[str, Any]) -> None:
    run = config["run"]
    torch.set_num_threads(max(1, int(run.get("threads", 1))))
    training = TrialTraining(
        task=run["task"],
        task_options=run.get("task_options"),
        optimizer=run["optimizer"],
        hyperparameters=hyperparameters_of(config),
        seed=int(run["seed"]),
        smoke=bool(run.get("smoke", False)),
        device=_device(run),
    )
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            training.load_state_dict(
                torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=False)
            )

    metric, mode = run["metric"], run["mode"]
    while training.epoch < int(run["epochs"]):
        result = training.run_epoch()
        if result["diverged"]:
            # A result, not an error: the worst value keeps searchers and schedulers working.
            result[metric] = math.inf if mode == "min" else -math.inf
            tune.report(result)
            return
        with tempfile.TemporaryDirectory(prefix="memtune-ckpt-") as directory:
            torch.save(training.state_dict(), os.path.join(directory, CHECKPOINT_FILE))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
