"""The claims of the two papers, the studies that test them and the comparisons that judge them.

Neither paper's result tables could be obtained, so each claim is written as the paper states
it, and tested as a memtune study would test any optimizer. A claim is judged on its
:class:`Check` list, with Holm across all of a claim's checks (tasks and references together).
A check is one of four kinds (``Check.source``):

- ``searches``: optimizer against optimizer, the verdict's search-level inference. Each arm runs
  K independent searches (each with its own seed), each search's best config is re-run on seeds
  no search saw, and the arms' search scores go through the exact rank-sum test. K is the
  fewest searches with which Holm over the claim's checks can reach p < 0.05.
- ``seeds`` and ``basin``: fixed settings from many random starts (claims 4 and 5, the papers'
  toy protocol), paired by start.
- ``stability``: a learning-rate sweep with fixed settings (claim 3), paired by lr and seed, on
  whether a run diverged.
- ``bench``: whole training iterations timed side by side on an otherwise idle machine, paired
  by round (claim 2).

Every study has its own ``search_seed`` (a hash of its name), so that no two studies draw the
same search suggestions or share re-run seeds.

The pieces live beside this module, which re-exports their names:
:mod:`~memtune.reproduce.claim_types` (:class:`Claim`, :class:`Check`, :class:`Sweep`, the
margins), :mod:`~memtune.reproduce.modes` (the three sizes), :mod:`~memtune.reproduce.builder`
(the studies' specs), :mod:`~memtune.reproduce.claims_am` (claims 1 to 3) and
:mod:`~memtune.reproduce.claims_cm` (claims 4 to 6).
"""

from __future__ import annotations

from memtune.reproduce.builder import Builder
from memtune.reproduce.claim_types import (
    ACCURACY_MARGIN,
    AM_PAPER,
    BASIN,
    CLAIMS_VERSION,
    CM_PAPER,
    NEAR_OPTIMAL,
    OVERHEAD_MARGIN,
    PERPLEXITY_MARGIN,
    Check,
    Claim,
    Hypothesis,
    Scale,
    Source,
    Sweep,
    study_seed,
)
from memtune.reproduce.claims_am import (
    CLAIM1_CHECKS,
    CLAIM1_MARGINS,
    CLAIM1_SECONDARY,
    OVERHEAD_PAIRS,
    SENSITIVITY_ARMS,
    WARMUP_ARMS,
    WARMUP_FRACTION,
    am_claims,
    bench_workloads,
    uniform_perplexity,
)
from memtune.reproduce.claims_cm import cm_claims
from memtune.reproduce.modes import MODES, Mode

__all__ = [
    "ACCURACY_MARGIN",
    "AM_PAPER",
    "BASIN",
    "CLAIM1_CHECKS",
    "CLAIM1_MARGINS",
    "CLAIM1_SECONDARY",
    "CLAIMS_VERSION",
    "CM_PAPER",
    "MODES",
    "NEAR_OPTIMAL",
    "OVERHEAD_MARGIN",
    "OVERHEAD_PAIRS",
    "PERPLEXITY_MARGIN",
    "SENSITIVITY_ARMS",
    "WARMUP_ARMS",
    "WARMUP_FRACTION",
    "Check",
    "Claim",
    "Hypothesis",
    "Mode",
    "Scale",
    "Source",
    "Sweep",
    "bench_workloads",
    "build_claims",
    "estimate_seconds",
    "study_seed",
    "uniform_perplexity",
]


def build_claims(mode: Mode | str) -> list[Claim]:
    """The six claims at ``mode``'s size."""
    mode = MODES[mode] if isinstance(mode, str) else mode
    builder = Builder(mode)
    return [*am_claims(builder), *cm_claims(builder)]


def estimate_seconds(claims: list[Claim], mode: Mode) -> float | None:
    """The reproduction's runtime on 2 CPU cores (two trials at a time), from the mode's
    measured seconds per trial-epoch; None when the mode has no such figures."""
    if not mode.epoch_seconds:
        return None
    total = 0.0
    for claim in claims:
        for spec in claim.studies:
            key = "char_lm-warmup" if spec.name.startswith("c3-") else spec.task
            runs = spec.total_trials
            total += runs * spec.budget.epochs * mode.epoch_seconds.get(key, 1.0)
    return total / 2
