"""Study specs for the claims: :class:`Builder` applies one mode's schedule and budget rules to
every claim's studies; :func:`pinned` and :func:`lr_grid` fix an arm's settings."""

from __future__ import annotations

import math
from typing import Any

from memtune.optimizers import OPTIMIZERS
from memtune.reproduce.claim_types import study_seed
from memtune.reproduce.modes import Mode
from memtune.studies import stats
from memtune.studies.spec import RERUN_STRIDE, StudySpec, parse_spec


class Builder:
    """Study specs of one mode: the same schedule and budget rules for every claim."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode

    def searches(self, checks: int) -> int:
        """The fewest searches per arm whose best case reaches p < 0.05 after Holm over the
        claim's ``checks`` with one search lost (at least 6, the verdict's default)."""
        if self.mode.fixed_searches is not None:
            return self.mode.fixed_searches
        return max(6, stats.searches_for_power(checks) + 1)

    def starts(self, checks: int, *, at_least: int = 0) -> list[int]:
        """Seeds 1..n for fixed-setting studies: the fewest whose best case reaches p < 0.05
        after Holm over the claim's ``checks``, or ``at_least``."""
        if self.mode.fixed_seeds is not None:
            return list(range(1, self.mode.fixed_seeds + 1))
        return list(range(1, max(stats.seeds_for_power(checks), at_least) + 1))

    def _spec(self, name: str, task: str, body: dict[str, Any]) -> StudySpec:
        epochs = self.mode.epochs.get(task, self.mode.epochs["default"])
        return parse_spec(
            {
                "name": name,
                "task": task,
                "task_options": dict(self.mode.task_options.get(task, {})),
                "scheduler": "fifo",
                "smoke": self.mode.smoke,
                "search_seed": study_seed(name),
                **body,
                "budget": {"epochs": epochs, **body.get("budget", {})},
            }
        )

    def searched(
        self, name: str, task: str, arms: list[dict[str, Any]], checks: int, **extra: Any
    ) -> StudySpec:
        """A study compared optimizer against optimizer: K searches per arm."""
        return self._spec(
            name,
            task,
            {
                "arms": arms,
                "budget": {
                    "searches": self.searches(checks),
                    "trials_per_search": self.mode.trials_per_search,
                },
                "seeds": self._rerun_seeds(name),
                **extra,
            },
        )

    def _rerun_seeds(self, name: str) -> list[int]:
        # Below the verdict's re-run stride (search r re-runs on these + r x 100,000).
        first = 1 + (self.mode.seeds_per_search * study_seed(name)) % (RERUN_STRIDE - 100)
        return list(range(first, first + self.mode.seeds_per_search))

    def fixed(
        self, name: str, task: str, arms: list[dict[str, Any]], seeds: list[int], **extra: Any
    ) -> StudySpec:
        """A study of fixed settings: one trial per arm, every seed a run (a random start)."""
        return self._spec(
            name,
            task,
            {
                "arms": arms,
                "budget": {"searches": 1, "trials_per_search": 1, **extra.pop("budget", {})},
                "seeds": seeds,
                **extra,
            },
        )


def pinned(optimizer: str, lr: float, **fixed: Any) -> dict[str, Any]:
    """Every hyperparameter the optimizer's search would sample, pinned: the claim's lr and the
    registry's defaults (the papers' settings: Adam+CM C = 5, decay 0.7; Adam+CG C = 10, decay
    0.7; SAM rho 0.05; AM lambda 0.1), so that a study's one trial per seed runs exactly what
    the report says instead of a random draw of the rest."""
    spec = OPTIMIZERS.get(optimizer)
    pinned = {p.name: spec.defaults[p.name] for p in spec.space(fixed) if p.name in spec.defaults}
    return {**pinned, **fixed, "lr": lr}


def lr_grid(optimizer: str, points: int) -> tuple[float, ...]:
    """``points`` learning rates spaced evenly in log over the optimizer's registry range."""
    lr = next(p for p in OPTIMIZERS.get(optimizer).space() if p.name == "lr")
    if points == 1:
        return (lr.low,)
    step = (math.log10(lr.high) - math.log10(lr.low)) / (points - 1)
    return tuple(float(f"{10 ** (math.log10(lr.low) + i * step):.3g}") for i in range(points))
