"""How big a reproduction is: :class:`Mode` and the three sizes in :data:`MODES` (smoke, quick,
full), from the tasks' options to the seconds a trial-epoch takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mode:
    """How big the studies are: ``smoke`` for tests, ``quick`` for 2 CPU cores in under an
    hour, ``full`` for a GPU cluster."""

    name: str
    smoke: bool
    trials_per_search: int
    seeds_per_search: int
    epochs: Mapping[str, int]
    task_options: Mapping[str, Mapping[str, Any]]
    sharpness: tuple[float, ...]
    random_starts: int  # seeds of the landscape claims (4 and 5): each seed is a start
    fixed_searches: int | None = None  # smoke: this many, whatever Holm needs
    fixed_seeds: int | None = None  # smoke: this many random starts, whatever Holm needs
    bench_width: int = 1024  # the benchmark's MLP: 2 layers of width x width
    bench_rounds: int = 20
    tasks_claim1: tuple[str, ...] = ("quadratic", "logreg", "fashion_cnn", "char_lm")
    landscape_lrs: tuple[float, ...] = (0.01, 0.1)  # claim 4: every arm at each of these
    landscapes: tuple[str, ...] = ("goldstein_price", "ackley")  # claim 4's functions
    # claim 3: up to where AdamW without warmup diverges (a first quick run saw no run of any
    # arm diverge up to 1.0)
    warmup_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
    warmup_seeds: int = 3
    warmup_epochs: int = 20
    sensitivity_tasks: tuple[str, ...] = ("quadratic", "logreg", "fashion_cnn", "char_lm")
    sensitivity_points: int = 13  # over each arm's registry lr range: quarter decades
    sensitivity_seeds: int = 3
    # Seconds of one trial-epoch per task on 2 CPU cores at this mode's size (measured in a
    # quick run): the runtime estimate printed before a reproduction starts.
    epoch_seconds: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default_factory=tuple)


_LANDSCAPE = {"goldstein_price": {"steps_per_epoch": 100}, "ackley": {"steps_per_epoch": 100}}
# Claim 3's task: char_lm with short sequences and small batches, so that its 20 epochs are
# ~3,000 steps (warmup matters early in a long run, not in 150 steps).
_WARMUP_TASK = {
    "train_chars": 40_000,
    "val_chars": 4000,
    "hidden": 32,
    "embed": 16,
    "batch_size": 8,
    "seq_len": 32,
}

MODES: dict[str, Mode] = {
    "smoke": Mode(
        name="smoke",
        smoke=True,
        trials_per_search=1,
        seeds_per_search=1,
        epochs={"default": 1},
        task_options={"char_lm-warmup": {}},
        sharpness=(8.0,),
        random_starts=3,
        fixed_searches=2,
        fixed_seeds=2,
        landscape_lrs=(0.1,),
        landscapes=("goldstein_price",),  # the pipeline once: each study costs a Tune run
        # The pipeline once per kind of metric (claim 6 runs char_lm's perplexity and
        # fashion_cnn's accuracy): seconds matter, this mode runs in the test suite.
        tasks_claim1=("quadratic",),
        bench_width=64,
        bench_rounds=3,
        warmup_lrs=(1e-2, 10.0),
        warmup_seeds=2,
        warmup_epochs=1,
        sensitivity_tasks=("quadratic",),
        sensitivity_points=2,
        sensitivity_seeds=2,
    ),
    "quick": Mode(
        name="quick",
        smoke=False,
        trials_per_search=3,
        seeds_per_search=2,
        epochs={"default": 4, "quadratic": 3, "logreg": 5, "char_lm": 5},
        task_options={
            "quadratic": {"dim": 50, "condition": 1000.0, "steps_per_epoch": 20},
            "logreg": {"batch_size": 32},
            "fashion_cnn": {"train_size": 6000, "val_size": 2000, "test_size": 5000, "width": 8},
            "char_lm": {"train_chars": 60_000, "val_chars": 5000, "hidden": 64, "embed": 16},
            "char_lm-warmup": _WARMUP_TASK,
            **_LANDSCAPE,
            "sharp_flat": {"steps_per_epoch": 100, "noise": 0.3},
        },
        sharpness=(2.0, 4.0, 8.0, 16.0),
        random_starts=24,
        # Measured in the quick run of 2026-12-05: each task's study seconds x 2 (trials run
        # two at a time) / (trials x epochs).
        epoch_seconds={
            "quadratic": 0.09,
            "logreg": 0.07,
            "fashion_cnn": 0.91,
            "char_lm": 0.3,
            "char_lm-warmup": 0.22,
            "goldstein_price": 0.1,
            "ackley": 0.09,
            "sharp_flat": 0.08,
        },
        notes=(
            "small models and data subsets (Fashion-MNIST: 6,000 training images, a CNN of "
            "~9k parameters; char_lm: 60k characters, an LSTM of 64 units), searches of 3 "
            "trials, a few epochs: enough to test the direction of each claim on 2 CPU cores, "
            "not the papers' scale",
        ),
    ),
    "full": Mode(
        name="full",
        smoke=False,
        trials_per_search=10,
        seeds_per_search=3,
        epochs={"default": 20, "quadratic": 10, "logreg": 20, "char_lm": 20},
        task_options={
            "quadratic": {"dim": 200, "condition": 10_000.0, "steps_per_epoch": 50},
            "fashion_cnn": {"width": 32},
            "char_lm": {"hidden": 256, "embed": 64},
            "char_lm-warmup": {**_WARMUP_TASK, "train_chars": 200_000, "hidden": 128},
            **_LANDSCAPE,
            "sharp_flat": {"steps_per_epoch": 200, "noise": 0.3},
        },
        sharpness=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
        random_starts=100,
        bench_width=4096,
        bench_rounds=50,
        warmup_lrs=(1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
        warmup_seeds=8,
        warmup_epochs=40,
        sensitivity_points=25,
        sensitivity_seeds=5,
        # 2-CPU seconds per trial-epoch at full size: the quick figures scaled by data and
        # model size (fashion_cnn: 8x the images, ~10x the work per image at width 32;
        # char_lm: 7x the text, ~16x the LSTM at 256 units); a GPU divides the heavy ones.
        epoch_seconds={
            "quadratic": 0.2,
            "logreg": 0.07,
            "fashion_cnn": 70.0,
            "char_lm": 33.0,
            "char_lm-warmup": 4.5,
            "goldstein_price": 0.1,
            "ackley": 0.09,
            "sharp_flat": 0.16,
        },
    ),
}
