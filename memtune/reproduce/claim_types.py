"""What a claim is made of: :class:`Claim`, the :class:`Check` comparisons it is judged on, the
learning-rate :class:`Sweep` studies it shows, and the constants fixed before any study ran (the
papers, the non-inferiority margins, the basins, ``near-optimal``).

The claims themselves are in :mod:`~memtune.reproduce.claims`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from memtune.studies.spec import StudySpec

# 2: searched claims on the search-level verdict, both AM-AdamW couplings, claim 3 as a sweep,
# claim 2 on whole iterations, the lr-sensitivity sweep, per-study search seeds.
CLAIMS_VERSION = 2

Hypothesis = Literal["superior", "non_inferior"]
# linear: metric units; log: log of the metric (a ratio: perplexity, time); binary: 0/1 per run
Scale = Literal["linear", "log", "binary"]
Source = Literal["searches", "seeds", "basin", "stability", "bench"]

AM_PAPER = "Topollai & Choromanska, Adaptive memory momentum, arXiv 2510.04988"
CM_PAPER = "Malviya et al., Promoting exploration in memory-augmented Adam using critical momenta, TMLR 2024"

# The margins of the non-inferiority claims, fixed before any study ran.
ACCURACY_MARGIN = 0.005  # 0.5 accuracy points
PERPLEXITY_MARGIN = math.log(1.02)  # 2% relative perplexity
OVERHEAD_MARGIN = math.log(1.10)  # "negligible": at most 10% slower per training iteration
# A run ended in the global basin when its final value is below this (Goldstein-Price: global
# minimum 3, the next local minimum 30; Ackley: global 0, the nearest local minima about 2.6).
BASIN = {"goldstein_price": 10.0, "ackley": 1.5}
# The lr-sensitivity sweep's "near-optimal": a mean headline within this much of the arm's best
# grid point (relative for a loss or perplexity, absolute for an accuracy).
NEAR_OPTIMAL = {"min": 0.05, "max": 0.01}


def study_seed(name: str) -> int:
    """A study's ``search_seed``: from its name, so that every study searches with its own
    suggestions and re-runs on its own seeds (``1 + 2 x search_seed`` onwards)."""
    return 1 + zlib.crc32(name.encode()) % 49_000


@dataclass(frozen=True)
class Check:
    """One comparison a claim is judged on: ``arm`` (the memory optimizer) against
    ``reference`` in study ``study`` (a sweep: the studies ``pooled``; the benchmark: workload
    ``study``), on ``source``."""

    study: str
    arm: str
    reference: str
    hypothesis: Hypothesis = "superior"
    margin: float = 0.0  # non-inferiority: how much worse still counts, in ``scale`` units
    scale: Scale = "linear"
    source: Source = "searches"
    threshold: float | None = None  # basin: the value below which a run is in the basin
    pooled: tuple[str, ...] = ()  # stability: the sweep's studies, paired by (study, seed)

    @property
    def label(self) -> str:
        kind = {"basin": " (basin)", "stability": " (runs that trained)"}
        return f"{self.study}: {self.arm} vs {self.reference}" + kind.get(self.source, "")


@dataclass(frozen=True)
class Sweep:
    """Studies of fixed settings over a grid of learning rates: ``studies[i]`` runs every arm at
    its ``lrs[arm][i]``."""

    name: str
    task: str
    arms: tuple[str, ...]
    lrs: Mapping[str, tuple[float, ...]]
    studies: tuple[str, ...]
    failure: float | None = None  # a final headline above this failed to train (claim 3)


@dataclass(frozen=True)
class Claim:
    number: int
    title: str
    statement: str  # what the paper claims, in its own terms
    paper: str
    design: str  # how memtune tests it, and what it departs from
    studies: tuple[StudySpec, ...]
    checks: tuple[Check, ...]
    # Reported with their own Holm family, outside the claim's line: comparisons the paper does
    # not make (claim 1: AM-AdamW in the scale-invariant coupling).
    secondary: tuple[Check, ...] = ()
    benchmark: bool = False  # judged on the whole-iteration benchmark (claim 2)
    plots: tuple[str, ...] = ()  # the claim's own plots, besides the forest plot
    sweeps: tuple[Sweep, ...] = ()

    @property
    def budget(self) -> str:
        """What the claim's checks hold at, in words."""
        searched = [s for s in self.studies if s.searches_per_arm > 1]
        parts = []
        if searched:
            s = searched[0]
            parts.append(
                f"{s.searches_per_arm} searches of {s.budget.trials_per_search} trials per arm, "
                f"each search's best config re-run on {len(s.seeds or ())} seeds"
            )
        fixed = [s for s in self.studies if s.searches_per_arm == 1]
        if fixed and not self.sweeps:
            parts.append(f"fixed settings, {len(fixed[0].seeds or ())} random starts per study")
        tested = any(c.source == "stability" for c in self.checks)
        for sweep in self.sweeps if tested else ():  # claim 1's sweep is shown, not tested
            first = next(s for s in self.studies if s.name == sweep.studies[0])
            parts.append(
                f"fixed settings over {len(sweep.studies)} learning rates, "
                f"{len(first.seeds or ())} seeds each ({sweep.name})"
            )
        if self.benchmark:
            parts.append("whole training iterations timed alone, paired by round")
        return "; ".join(parts)
