"""How much a study spends and where it logs: the budget of its searches (with the
``DEFAULT_*`` values a study gets, checked by the A/A calibration), the resources of a trial,
and the optional MLflow and TensorBoard tracking.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, StrictFloat, StrictInt

from memtune.studies.spec._base import _Model

__all__ = [
    "DEFAULT_SEARCHES",
    "DEFAULT_SEEDS",
    "DEFAULT_TRIALS_PER_SEARCH",
    "Budget",
    "Resources",
    "Tracking",
]


# The defaults of a study's budget, checked by the end-to-end A/A calibration
# (bench/aa_calibration.py, docs/benchmarks.md): six searches per arm reach p < 0.05 after Holm
# over up to 23 comparisons; three trials per search and two seeds per config keep the six-arm
# demo within its time (make demo).
DEFAULT_SEARCHES = 6
DEFAULT_TRIALS_PER_SEARCH = 3
DEFAULT_SEEDS = 2


class Budget(_Model):
    searches: int | None = Field(
        None,
        ge=1,
        le=20,
        strict=True,
        validation_alias=AliasChoices("searches", "repeats"),
        description="K: independent searches per arm, each with its own seeds; the verdict "
        "compares arms over their K search scores. Default: 6 (more where Holm over many "
        "comparisons needs it). 1: the configs are compared, not the optimizers",
    )
    trials_per_search: int = Field(
        DEFAULT_TRIALS_PER_SEARCH,
        ge=1,
        le=10_000,
        strict=True,
        validation_alias=AliasChoices("trials_per_search", "trials_per_arm"),
        description="searched trials of each search, the same for every arm",
    )
    epochs: StrictInt = Field(5, ge=1, le=100_000)
    time_limit_s: StrictFloat | None = Field(
        None, gt=0, description="wall-clock limit of the whole study"
    )
    equalize: Literal["epochs", "gradient_evaluations"] = Field(
        "epochs",
        description="equal epochs for every arm, or equal gradient evaluations: an arm with "
        "k passes per step (SAM: 2) then trains epochs // k epochs",
    )


class Tracking(_Model):
    """Where a study's trials and verdict are also logged (memtune's own results keep all)."""

    mlflow: str | None = Field(
        None,
        max_length=2000,
        description="an MLflow tracking URI (http://host:5000, file:./mlruns): the study as a "
        "parent run, each trial nested; default: MLFLOW_TRACKING_URI where the study runs",
    )
    experiment: str | None = Field(
        None, max_length=500, description="the MLflow experiment (default: the study's name)"
    )
    tensorboard: str | None = Field(
        None,
        max_length=2000,
        description="a directory for TensorBoard event files, one per trial, on the machine "
        "that drives the study",
    )


class Resources(_Model):
    cpu: StrictFloat = Field(1.0, gt=0, description="CPUs per trial")
    gpu: StrictFloat = Field(0.0, ge=0, description="GPU fraction per trial")
