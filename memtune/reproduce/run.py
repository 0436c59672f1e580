"""Runs a reproduction: every claim's studies through the engine, and the step benchmark.

Each study writes one JSON file under ``<out>/data/studies/`` as it runs (memtune's
:class:`~memtune.workers.sinks.JsonFileSink`: the spec, every trial with its epochs, the
verdict). A study whose file already holds a completed run of the same spec is not run again,
so an interrupted reproduction resumes where it stopped. All studies share one Ray: a local one
on 127.0.0.1, or the cluster at ``RAY_ADDRESS``.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memtune.reproduce.claims import Claim, Mode
from memtune.studies.spec import StudySpec
from memtune.workers.sinks import write_json

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
# The memory optimizers whose overhead claim 2 judges, and the baseline each is timed against.
OVERHEAD_PAIRS = {"am_sgd": "sgd", "am_adamw": "adamw"}
_BASELINE_OPTIONS = {"sgd": {"momentum": 0.9}}


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
    from tqdm import tqdm

    from memtune.workers.cluster import configure_ray_environment, ray_cluster

    configure_ray_environment()
    from memtune.workers.runner import StudyRunner
    from memtune.workers.sinks import JsonFileSink

    manifest_path = out / "data" / MANIFEST_FILE
    manifest = _read_manifest(manifest_path)
    specs = [spec for claim in claims for spec in claim.studies]
    with ray_cluster():
        for index, spec in enumerate(specs, 1):
            prefix = f"[{index}/{len(specs)}] {spec.name}"
            if _already_done(out, spec):
                echo(f"{prefix}: done in an earlier run, kept")
                continue
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
# The step benchmark (claim 2)
# --------------------------------------------------------------------------------------------


def _mlp(width: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def _optimizer(name: str, params: list, fused: bool):
    from memtune.optimizers import OPTIMIZERS

    spec = OPTIMIZERS.get(name)
    options = dict(_BASELINE_OPTIONS.get(name, {}))
    if fused and spec.supports_fused:
        options["fused"] = True  # the baseline's fastest path on this device
    return spec.build(params, **options)


def run_benchmark(mode: Mode, out: Path, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Seconds of ``optimizer.step()`` alone, per round, for each memory optimizer of claim 2
    and its baseline's fused step, on the same MLP with the same gradients; rounds interleave
    the optimizers so that machine noise hits them alike. Kept in ``<out>/data/bench.json``
    (reused when its settings match)."""
    import torch

    path = out / "data" / BENCH_FILE
    settings = {"width": mode.bench_width, "rounds": mode.bench_rounds, "steps_per_round": 5}
    if path.exists():
        kept = json.loads(path.read_text())
        if kept.get("settings") == settings:
            echo("step benchmark: done in an earlier run, kept")
            return kept
    names = [n for pair in OVERHEAD_PAIRS.items() for n in pair]
    models = {name: _mlp(mode.bench_width) for name in names}
    params = {name: list(model.parameters()) for name, model in models.items()}
    optimizers = {name: _optimizer(name, params[name], fused=True) for name in names}
    generator = torch.Generator().manual_seed(0)
    grads = [
        [torch.randn(p.shape, generator=generator) for p in params[names[0]]] for _ in range(4)
    ]

    def steps(name: str, count: int, offset: int) -> float:
        total = 0.0
        for i in range(count):
            for p, g in zip(params[name], grads[(offset + i) % len(grads)], strict=True):
                p.grad = g.clone()
            start = time.perf_counter()
            optimizers[name].step()
            total += time.perf_counter() - start
        return total / count

    started = time.monotonic()
    for name in names:  # compile, and fault in the state, before anything is timed
        steps(name, 3, 0)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(mode.bench_rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            times[name].append(steps(name, settings["steps_per_round"], round_))
    impls = {
        name: getattr(opt, "last_impl", None)
        or ("fused" if opt.defaults.get("fused") else "default")
        for name, opt in optimizers.items()
    }
    result = {
        "settings": settings,
        "parameters": sum(p.numel() for p in params[names[0]]),
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "times": times,
        "impls": impls,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(path, result)
    echo(
        f"step benchmark: {result['parameters']:,} parameters, {mode.bench_rounds} rounds, {result['seconds']:.0f} s"
    )
    return result
