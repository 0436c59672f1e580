"""Runs a reproduction: every claim's studies through the engine, and the step benchmark.

Each study writes one JSON file under ``<out>/data/studies/`` as it runs (memtune's
:class:`~memtune.tuning.sinks.JsonFileSink`: the spec, every trial with its epochs, the
verdict). A study whose file already holds a completed run of the same spec is not run again,
so an interrupted reproduction resumes where it stopped. All studies share one Ray: a local one
on 127.0.0.1, or the cluster at ``RAY_ADDRESS``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from memtune.reproduce.claims import Claim, Mode
from memtune.studies.spec import StudySpec
from memtune.tuning.sinks import write_json

__all__ = [
    "BENCH_FILE",
    "MANIFEST_FILE",
    "load_study",
    "run_benchmark",
    "run_studies",
    "study_file",
]

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
BENCH_FILE = "bench.json"


def study_file(out: Path, name: str) -> Path:
    return out / "data" / "studies" / f"{name}.json"


def load_study(out: Path, name: str) -> dict[str, Any] | None:
    """A study's document as its sink wrote it (non-finite numbers as "inf", "-inf", "nan"),
    or None when it never started."""
    path = study_file(out, name)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _already_done(out: Path, spec: StudySpec) -> bool:
    document = load_study(out, spec.name)
    return bool(
        document
        and document.get("status") == "completed"
        and document.get("spec") == spec.model_dump(mode="json")
    )


def run_studies(
    claims: list[Claim],
    out: Path,
    *,
    quiet: bool = False,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, Any]:
    """Runs every study of ``claims`` not already completed under ``out``; returns the
    manifest (what ran, how long each study took)."""
    manifest_path = out / "data" / MANIFEST_FILE
    manifest = _read_manifest(manifest_path)
    specs = [spec for claim in claims for spec in claim.studies]
    pending = []
    for index, spec in enumerate(specs, 1):
        if _already_done(out, spec):
            echo(f"[{index}/{len(specs)}] {spec.name}: done in an earlier run, kept")
        else:
            pending.append((index, spec))
    if not pending:  # nothing to run: neither Ray nor torch is started
        return manifest

    from tqdm import tqdm

    from memtune.tuning.cluster import configure_ray_environment, ray_cluster

    configure_ray_environment()
    from memtune.tuning.runner import StudyRunner
    from memtune.tuning.sinks import JsonFileSink

    with ray_cluster():
        for index, spec in pending:
            prefix = f"[{index}/{len(specs)}] {spec.name}"
            bar = tqdm(
                total=spec.total_trials,
                unit="trial",
                desc=prefix,
                disable=quiet,
                file=sys.stderr,
                mininterval=1.0,
            )

            def progress(runner: Any, bar: Any = bar) -> None:
                bar.update(runner.trials_done - bar.n)

            started = time.monotonic()
            try:
                StudyRunner(spec, JsonFileSink(study_file(out, spec.name)), progress=progress).run()
                status = "completed"
            except KeyboardInterrupt:
                bar.close()
                raise
            except Exception as error:  # one failed study must not lose the others: said, kept
                log.debug("study %s failed", spec.name, exc_info=True)
                status = f"failed: {type(error).__name__}: {error}"
            bar.close()
            seconds = time.monotonic() - started
            manifest["studies"][spec.name] = {"status": status, "seconds": round(seconds, 1)}
            write_json(manifest_path, manifest)
            if quiet or status != "completed":
                echo(f"{prefix}: {status} in {seconds:.0f} s")
    return manifest


def _read_manifest(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"studies": {}}


# --------------------------------------------------------------------------------------------
# The iteration benchmark (claim 2)
# --------------------------------------------------------------------------------------------

# Each optimizer at its defaults (the step's cost does not depend on the values), SGD with
# momentum as in claim 1's references; baselines take torch's fused kernel, the memory
# optimizers their default path (compiled on CPU), as in the studies.
_BENCH_OPTIONS: dict[str, dict[str, Any]] = {"sgd": {"momentum": 0.9}}
STEPS_PER_ROUND = 5


class _MLPTraining:
    """The benchmark's MLP on a fixed random batch: forward, backward, step."""

    def __init__(self, width: int, optimizer: str) -> None:
        import torch
        from torch import nn

        from memtune.optimizers import OPTIMIZERS

        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, 10),
        )  # fmt: skip
        spec = OPTIMIZERS.get(optimizer)
        options = dict(_BENCH_OPTIONS.get(optimizer, {}))
        if spec.supports_fused:
            options["fused"] = True
        self.optimizer = spec.build(self.model.parameters(), **options)
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(128, 784, generator=generator)
        self.targets = torch.randint(0, 10, (128,), generator=generator)

    def iteration(self) -> float:
        """One iteration; returns the seconds of ``optimizer.step()`` alone."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(self.model(self.inputs), self.targets).backward()
        started = time.perf_counter()
        self.optimizer.step()
        return time.perf_counter() - started

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def impl(self) -> str:
        return getattr(self.optimizer, "last_impl", None) or (
            "fused" if self.optimizer.defaults.get("fused") else "default"
        )


class _TaskTraining:
    """A memtune task's own training step (``TrialTraining``), cycling over its batches."""

    def __init__(self, task: str, options: Mapping[str, Any], optimizer: str, smoke: bool) -> None:
        from memtune.tuning.training import TrialTraining

        self.training = TrialTraining(
            task=task,
            task_options=options,
            optimizer=optimizer,
            hyperparameters=_BENCH_OPTIONS.get(optimizer, {}),
            seed=0,
            smoke=smoke,
            epochs=1,
        )
        self.batches = list(self.training.task.batches(0))
        self.position = 0

    def iteration(self) -> float:
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        _, step_seconds = self.training._step(batch)
        return step_seconds

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.training.task.model.parameters())

    @property
    def impl(self) -> str:
        from memtune.tuning.training import _implementation

        return _implementation(self.training.optimizer, self.training.device)


def run_benchmark(mode: Mode, out: Path, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Whole training iterations (forward, backward, step) and ``optimizer.step()`` alone, per
    round, for each memory optimizer of claim 2 and its fused baseline, on the MLP and on
    claim 1's tasks; rounds interleave the optimizers so that machine noise hits them alike.
    Runs before any study (nothing else on the machine); kept in ``<out>/data/bench.json``
    (reused when its settings match)."""
    import torch

    from memtune.reproduce.claims import OVERHEAD_PAIRS, bench_workloads

    path = out / "data" / BENCH_FILE
    settings = {
        "width": mode.bench_width,
        "rounds": mode.bench_rounds,
        "steps_per_round": STEPS_PER_ROUND,
        "workloads": list(bench_workloads(mode)),
        "task_options": {t: dict(mode.task_options.get(t, {})) for t in mode.tasks_claim1},
        "smoke": mode.smoke,
    }
    if path.exists():
        kept = json.loads(path.read_text())
        if kept.get("settings") == settings:
            echo("benchmark: done in an earlier run, kept")
            return kept
    names = [n for pair in OVERHEAD_PAIRS.items() for n in pair]
    started = time.monotonic()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result: dict[str, Any] = {
        "settings": settings,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "iteration": {},
        "step": {},
        "impls": {},
        "parameters": {},
        "evaluations_per_iteration": {},
    }
    for workload in settings["workloads"]:
        runs: dict[str, Any] = {}
        for name in names:
            if workload == "mlp":
                runs[name] = _MLPTraining(mode.bench_width, name)
            else:
                options = mode.task_options.get(workload, {})
                runs[name] = _TaskTraining(workload, options, name, mode.smoke)
        for run in runs.values():  # compile, and fault in the state, before anything is timed
            for _ in range(3):
                run.iteration()
        iteration: dict[str, list[float]] = {name: [] for name in names}
        step: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(mode.bench_rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                total = inside = 0.0
                for _ in range(STEPS_PER_ROUND):
                    begun = time.perf_counter()
                    inside += runs[name].iteration()
                    total += time.perf_counter() - begun
                iteration[name].append(total / STEPS_PER_ROUND)
                step[name].append(inside / STEPS_PER_ROUND)
        result["iteration"][workload] = iteration
        result["step"][workload] = step
        result["impls"][workload] = {name: run.impl for name, run in runs.items()}
        result["parameters"][workload] = runs[names[0]].parameters
        result["evaluations_per_iteration"][workload] = dict.fromkeys(names, 1.0)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["load_before"] = load  # the 1-minute load average: was the machine idle
    write_json(path, result)
    echo(
        f"benchmark: {len(settings['workloads'])} workloads, {mode.bench_rounds} rounds, "
        f"{result['seconds']:.0f} s"
    )
    return result
