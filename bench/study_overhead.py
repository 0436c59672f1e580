"""What Ray Tune + Optuna cost per trial: the runner against a plain loop, in one run.

Runs N trials of a fixed task (digits_mlp, ~5 s of training each by default) through the
study runner on a local Ray, then the same trials one after the other in a plain loop, and
prints

    ratio    = (runner wall time x concurrency) / (sum of the trials' training times)
    overhead = (runner wall time x concurrency - sum of training times) / trials

Targets: overhead under 0.5 s per trial, ratio under 1.25 for 5-second trials. Ray's start
(about 5 s, once per process) is outside the runner's wall time and printed apart.

    python bench/study_overhead.py --trials 10 --seconds 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

from memtune.workers.cluster import configure_ray_environment

configure_ray_environment()  # before Ray is imported
from memtune.studies.spec import parse_spec  # noqa: E402
from memtune.workers.cluster import ray_cluster  # noqa: E402
from memtune.workers.runner import StudyRunner  # noqa: E402
from memtune.workers.trainable import CHECKPOINT_EVERY_S  # noqa: E402
from memtune.workers.training import TrialTraining  # noqa: E402

TASK_OPTIONS: dict = {"batch_size": 32}


def calibrate_epochs(seconds: float, width: int) -> int:
    """Epochs of digits_mlp (this width, one thread) that make about ``seconds`` of training."""
    import torch

    torch.set_num_threads(1)
    TASK_OPTIONS["width"] = width
    training = TrialTraining(
        task="digits_mlp", task_options=TASK_OPTIONS, optimizer="adam", hyperparameters={}, seed=0
    )
    training.run_epoch()  # warm-up
    return max(1, round(seconds / training.run_epoch().epoch_time_s))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trials", type=int, default=10, help="searched trials (one seed re-run is added)"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="training time per trial to aim for"
    )
    parser.add_argument(
        "--width",
        type=int,
        default=1024,
        help="MLP width: sets the epoch length and the checkpoint size",
    )
    args = parser.parse_args()

    epochs = calibrate_epochs(args.seconds, args.width)
    spec = parse_spec(
        {
            "name": "overhead",
            "task": "digits_mlp",
            "task_options": TASK_OPTIONS,
            "arms": [{"optimizer": "adam", "space": {"lr": {"low": 1e-3, "high": 3e-3}}}],
            "budget": {"trials_per_arm": args.trials, "epochs": epochs},
            "seeds": [1],
            "resources": {"cpu": 1},
        }
    )
    concurrency = os.cpu_count() or 1

    started = time.perf_counter()
    with ray_cluster():
        ray_ready = time.perf_counter()
        runner = StudyRunner(spec)
        runner.run()
        runner_wall = time.perf_counter() - ray_ready
    records = list(runner.records.values())
    trained = sum(r.epochs[-1].training_time_s for r in records)

    loop_started = time.perf_counter()
    loop_trained = sum(_plain_trial(r.config, r.seed, epochs, TASK_OPTIONS) for r in records)
    loop_wall = time.perf_counter() - loop_started
    # The same trials in `concurrency` plain processes on the same cores: the baseline.
    pool_started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        pool.starmap(_plain_trial, [(r.config, r.seed, epochs, TASK_OPTIONS) for r in records])
    pool_wall = time.perf_counter() - pool_started

    n = len(records)
    ratio = runner_wall * concurrency / trained
    overhead = (runner_wall * concurrency - trained) / n
    print(
        f"{n} trials of digits_mlp (width {TASK_OPTIONS['width']}, checkpoint "
        f"{records[0].epochs[-1].optimizer_state_bytes * 1.5 / 2**20:.1f} MB) x {epochs} epochs "
        f"(a report per epoch, a checkpoint at most every {CHECKPOINT_EVERY_S:g} s), concurrency {concurrency}, Ray start {ray_ready - started:.1f} s"
    )
    print(
        f"runner:     wall {runner_wall:7.1f} s   training {trained:7.1f} s   mean trial {trained / n:5.2f} s"
    )
    print(
        f"plain loop: wall {loop_wall:7.1f} s   training {loop_trained:7.1f} s   ratio {loop_wall / loop_trained:.3f}"
    )
    print(
        f"ratio (runner wall x concurrency / training): {ratio:.3f}   target < 1.25  {'ok' if ratio < 1.25 else 'MISSED'}"
    )
    print(
        f"overhead per trial: {overhead:.2f} s   target < 0.5 s  {'ok' if overhead < 0.5 else 'MISSED'}"
    )
    same_cores = runner_wall / pool_wall
    print(
        f"runner wall / {concurrency} plain processes on the same cores ({pool_wall:.1f} s): "
        f"{same_cores:.3f}   target <= 1.05  {'ok' if same_cores <= 1.05 else 'MISSED'}"
    )


def _plain_trial(config: dict, seed: int, epochs: int, task_options: dict) -> float:
    """One trial without Ray: build, train ``epochs`` epochs; returns its training time."""
    import torch

    torch.set_num_threads(1)
    training = TrialTraining(
        task="digits_mlp", task_options=task_options, optimizer="adam",
        hyperparameters=config, seed=seed,
    )  # fmt: skip
    for _ in range(epochs):
        result = training.run_epoch()
    return result.training_time_s


if __name__ == "__main__":
    main()
