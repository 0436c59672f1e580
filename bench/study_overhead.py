"""What Ray Tune + Optuna cost per trial: the runner against plain processes, side by side.

Runs N trials of a fixed task (digits_mlp, ~5 s of training each by default) through the
study runner on a local Ray, and the same trials (configs and seeds) in as many plain
processes as there are cores (a spawn pool: what a user without memtune would write): first
the searched trials, then the seed re-run of the best config, as a plain script has to (the
re-run needs the search's result). The two alternate in ABBA order (runner, plain, plain,
runner), because this machine's speed drifts by up to ~20% within minutes. Printed:

    runner wall / plain wall   over all pairs: the goal, at most 1.05
    CPU beyond training        per run, this process and all its descendants (from /proc)
                               minus the trials' training: start-up, imports, reports,
                               checkpoints, Ray's own processes. It drifts far less than wall
                               time on a noisy machine, so it shows what a change saves.
    ratio    = (runner wall time x concurrency) / (sum of the trials' training times)
    overhead = (runner wall time x concurrency - sum of training times) / trials

Ray's start (a few seconds, once per process) is outside the runner's wall time and printed
apart. The plain processes import only torch and memtune's training code.

    python bench/study_overhead.py --trials 10 --seconds 5 --pairs 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time

# Nothing heavy at the top: the plain processes are started with "spawn", which imports this
# module in each of them, and a plain script would not import Ray, Tune and Optuna (they cost
# those processes ~5 s of start-up when they were imported here, flattering the runner).
TASK_OPTIONS: dict = {"batch_size": 32}


def calibrate_epochs(seconds: float, width: int) -> int:
    """Epochs of digits_mlp (this width, one thread) that make about ``seconds`` of training."""
    import torch

    from memtune.tuning.training import TrialTraining

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
    parser.add_argument(
        "--pairs",
        type=int,
        default=2,
        help="runner / plain-process pairs, in ABBA order (the machine's speed drifts)",
    )
    parser.add_argument(
        "--sequential", action="store_true", help="also run the trials one after the other"
    )
    args = parser.parse_args()

    from memtune.tuning.cluster import configure_ray_environment

    configure_ray_environment()  # before Ray is imported
    from memtune.studies.records import Phase
    from memtune.studies.spec import parse_spec
    from memtune.tuning.cluster import ray_cluster
    from memtune.tuning.runner import StudyRunner
    from memtune.tuning.trainable import CHECKPOINT_EVERY_S, REPORT_EVERY_S

    epochs = calibrate_epochs(args.seconds, args.width)
    spec = parse_spec(
        {
            "name": "overhead",
            "task": "digits_mlp",
            "task_options": TASK_OPTIONS,
            "arms": [{"optimizer": "adam", "space": {"lr": {"low": 1e-3, "high": 3e-3}}}],
            "budget": {"searches": 1, "trials_per_search": args.trials, "epochs": epochs},
            "seeds": [1],
            "resources": {"cpu": 1},
        }
    )
    # The runner's trials train with the spec's schedule over their epochs (a searched warmup
    # is a fraction of them): the plain trials must too, or they are not the same trials. (They
    # once ran without it, their warmup a 35th as long: some trials then trained twice as
    # long, and the runner looked 12% faster at training than plain processes.)
    arm = spec.arms[0]
    schedule = spec.trial_schedule(arm)
    concurrency = os.cpu_count() or 1
    runs: dict[str, list[tuple[float, float]]] = {"runner": [], "plain": []}
    trials: list[tuple] = []
    finals: list[float | None] = []  # the runner's last value of each trial
    searched = [0]  # how many of them are the search's (the rest are seed re-runs)
    matched: list[int] = []  # per plain run, its trials that ended with the runner's value

    cpu: dict[str, list[float]] = {"runner": [], "plain": []}

    def run_runner() -> None:
        started = time.perf_counter()
        with CpuMeter() as meter:
            runner = StudyRunner(spec)
            runner.run()
        records = list(runner.records.values())
        runs["runner"].append(
            (time.perf_counter() - started, sum(r.epochs[-1].training_time_s for r in records))
        )
        cpu["runner"].append(meter.seconds)
        # In the study's order: its search, then the seed re-runs of the best config.
        records.sort(key=lambda r: r.phase != Phase.SEARCH)
        trials[:] = [
            (r.config, r.seed, epochs, TASK_OPTIONS, schedule, spec.resolved_metric)
            for r in records
        ]
        searched[0] = sum(r.phase == Phase.SEARCH for r in records)
        finals[:] = [r.epochs[-1].metrics.get(spec.resolved_metric) for r in records]

    def run_plain() -> None:
        # The runner's trials in `concurrency` plain processes on the same cores, in two
        # stages as in the study: the seed re-runs train the best config of the search, so a
        # plain script cannot start them before its search has ended either. One trial per
        # task, as the runner hands them out (the pool's default gives two at a time, which
        # balances the cores worse).
        started = time.perf_counter()
        stages = (trials[: searched[0]], trials[searched[0] :])
        with CpuMeter() as meter, multiprocessing.get_context("spawn").Pool(concurrency) as pool:
            results = [
                result for stage in stages for result in pool.starmap(_plain_trial, stage, 1)
            ]
        trained = sum(seconds for seconds, _ in results)
        # The same trials, or the comparison means nothing: each ends with the runner's value.
        matched.append(sum(v == f for (_, v), f in zip(results, finals, strict=True)))
        runs["plain"].append((time.perf_counter() - started, trained))
        cpu["plain"].append(meter.seconds)

    started = time.perf_counter()
    with ray_cluster():
        ray_start = time.perf_counter() - started
        for pair in range(args.pairs):  # R P, P R, R P, ...
            for run in (run_runner, run_plain) if pair % 2 == 0 else (run_plain, run_runner):
                run()

    n = len(trials)
    print(
        f"{n} trials of digits_mlp (width {TASK_OPTIONS['width']}) x {epochs} epochs (every "
        f"epoch reported, at most {REPORT_EVERY_S:g} s late; a checkpoint at most every "
        f"{CHECKPOINT_EVERY_S:g} s and after the last), concurrency {concurrency}, "
        f"Ray start {ray_start:.1f} s (not counted)"
    )
    for name, label in (("runner", "runner"), ("plain", f"{concurrency} plain processes")):
        walls = ", ".join(f"{wall:.1f}" for wall, _ in runs[name])
        trained = ", ".join(f"{t:.1f}" for _, t in runs[name])
        print(f"{label:20s} wall {walls} s   training {trained} s")
    runner_wall = sum(wall for wall, _ in runs["runner"])
    runner_trained = sum(t for _, t in runs["runner"])
    plain_wall = sum(wall for wall, _ in runs["plain"])
    plain_trained = sum(t for _, t in runs["plain"])
    ratio = runner_wall / len(runs["runner"]) * concurrency / (runner_trained / len(runs["runner"]))
    overhead = (runner_wall * concurrency - runner_trained) / len(runs["runner"]) / n
    print(
        f"ratio (runner wall x concurrency / training): {ratio:.3f}   target < 1.25  "
        f"{'ok' if ratio < 1.25 else 'MISSED'}"
    )
    print(
        f"overhead per trial: {overhead:.2f} s   target < 0.5 s  "
        f"{'ok' if overhead < 0.5 else 'MISSED'}"
    )
    print(
        f"the same trials: {', '.join(map(str, matched))} of {n} plain trials per run ended with "
        "the runner's value"
    )
    print(f"the runner's trials trained {runner_trained / plain_trained:.3f}x as long")
    same_cores = runner_wall / plain_wall
    print(
        f"runner wall / {concurrency} plain processes on the same cores, all pairs: "
        f"{same_cores:.3f}   target <= 1.05  {'ok' if same_cores <= 1.05 else 'MISSED'}"
    )
    # The CPU beyond the trials' training, per run (from /proc, this process and all its
    # descendants): start-up, imports, task set-up, reports, checkpoints, Ray's own processes.
    beyond = {
        name: statistics.median(c - t for c, (_, t) in zip(cpu[name], runs[name], strict=True))
        for name in cpu
    }
    print(
        f"CPU beyond the trials' training, median per run: runner {beyond['runner']:.1f} s, "
        f"plain processes {beyond['plain']:.1f} s ({(beyond['runner'] - beyond['plain']) / n:.2f} s "
        "more per trial)"
    )
    if args.sequential:
        loop_started = time.perf_counter()
        loop_trained = sum(_plain_trial(*trial)[0] for trial in trials)
        loop_wall = time.perf_counter() - loop_started
        print(
            f"plain loop, one at a time: wall {loop_wall:.1f} s   training {loop_trained:.1f} s"
            f"   ratio {loop_wall / loop_trained:.3f}"
        )


class CpuMeter(threading.Thread):
    """CPU seconds used by this process and all its descendants (Ray's processes, the trial
    actors, the pool's workers) while the block runs. Sampled from /proc every 0.2 s, so a
    process that lives shorter than that is missed (no trial process does)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._sample()
        self.first = dict(self.last)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()
        self._sample()
        self.seconds = sum(used - self.first.get(pid, 0.0) for pid, used in self.last.items())

    def run(self) -> None:
        while not self.done.wait(0.2):
            self._sample()

    def _sample(self) -> None:
        me, parents, used = os.getpid(), {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / self.TICK
        for pid, seconds in used.items():
            ancestor = pid
            while ancestor not in (me, 0, 1) and ancestor in parents:
                ancestor = parents[ancestor]
            if ancestor == me:
                self.last[pid] = max(seconds, self.last.get(pid, 0.0))


def _plain_trial(
    config: dict, seed: int, epochs: int, task_options: dict, schedule: dict, metric: str
) -> tuple[float, float | None]:
    """One trial without Ray, as the runner's trainable builds it (hyperparameters, seed,
    epochs, schedule): train ``epochs`` epochs; returns its training time and last value."""
    import torch

    from memtune.tuning.training import TrialTraining

    torch.set_num_threads(1)
    training = TrialTraining(
        task="digits_mlp", task_options=task_options, optimizer="adam",
        hyperparameters=config, seed=seed, epochs=epochs, schedule=schedule,
    )  # fmt: skip
    for _ in range(epochs):
        result = training.run_epoch()
    return result.training_time_s, result.metrics.get(metric)


if __name__ == "__main__":
    main()
