"""The report's document: pydantic models of ``report.json``.

``report.json`` is :class:`Report` dumped; the judge, the plots and the renderer take these
models, so a field renamed or mistyped fails where it is read, not in a line of Markdown.
Non-finite numbers (a diverged run's worst value, a missed target) are written as the strings
"Infinity", "-Infinity" and "NaN", and read back as floats.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "REPORT_SCHEMA",
    "ArmSummary",
    "BenchResult",
    "CheckRow",
    "ClaimEntry",
    "Detectable",
    "Profile",
    "ProfileArm",
    "Report",
    "StudySummary",
    "SweepArm",
    "SweepResult",
    "TimeToResult",
]

# 1: dicts of the first reports; 2: these models (search-level checks, sweeps, profiles).
REPORT_SCHEMA = 2


class _Model(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings", extra="forbid")


class CheckRow(_Model):
    """One check's numbers: measured from the studies (:func:`judge.measure`), then judged
    (:func:`judge.judge_claim`: ``p_adjusted``, ``outcome``, ``reason``, ``detectable``)."""

    label: str
    study: str
    arm: str
    reference: str
    hypothesis: str
    margin: float = 0.0
    scale: str
    source: str
    threshold: float | None = None
    unit: str = "seeds"  # what one compared value is: searches, seeds, runs, rounds
    arm_n: int = 0  # values of the memory optimizer compared (searches, seeds, ...)
    reference_n: int = 0
    pairs: int = 0  # paired sources: the pairs; searches: min(arm_n, reference_n)
    improvement: float | None = None  # the memory optimizer better: > 0 (oriented scale)
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None  # the interval's coverage (Hodges-Lehmann: exact)
    sd: float | None = None  # of the paired improvements, or the pooled scores
    p_value: float | None = None
    direction: int = 0
    errored: list[int] = Field(default_factory=list)
    missing: str | None = None  # why there is nothing to compare
    arm_mean: float | None = None  # raw units, finite values
    reference_mean: float | None = None
    arm_diverged: int = 0
    reference_diverged: int = 0
    arm_rate: float | None = None  # 0/1 sources: the rate of success
    reference_rate: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)  # source-specific figures
    p_adjusted: float | None = None
    outcome: str = "inconclusive"
    reason: str | None = None
    detectable: float | None = None  # the smallest improvement with 80% power, check units


class Detectable(_Model):
    n: int = 0  # the fewest compared values of any check (searches or seeds)
    unit: str = "seeds"
    checks: int = 0
    min_attainable_p: float | None = None
    standardized: float | None = None


class SweepArm(_Model):
    lrs: list[float]
    mean: list[float | None]  # the headline's mean over seeds, finite runs
    low: list[float | None]  # its 95% t-interval (the seed band)
    high: list[float | None]
    diverged: list[int]  # runs that diverged, per lr
    failed: list[int] = Field(default_factory=list)  # diverged or above the failure threshold
    runs: list[int]
    best_lr: float | None = None
    near_optimal: list[float] = Field(default_factory=list)  # [low lr, high lr]
    width_decades: float | None = None


class SweepResult(_Model):
    name: str
    task: str
    metric: str
    mode: str
    arms: dict[str, SweepArm]
    failure: float | None = None  # a final headline above this failed to train


class TimeToResult(_Model):
    study: str
    arm: str
    evaluations: float | None = None  # median gradient evaluations to the target
    iteration_s: float | None = None  # the benchmark's whole iteration, alone
    seconds: float | None = None  # evaluations x iteration_s
    ratio: float | None = None  # to the reference's, the memory optimizer's row only


class BenchResult(_Model):
    settings: dict[str, Any]
    device: str
    cpu: str
    threads: int
    seconds: float
    # workload -> optimizer -> per-round mean seconds
    iteration: dict[str, dict[str, list[float]]]
    step: dict[str, dict[str, list[float]]]
    impls: dict[str, dict[str, str]]
    parameters: dict[str, int]
    evaluations_per_iteration: dict[str, dict[str, float]] = Field(default_factory=dict)
    load_before: float | None = None  # the 1-minute load average before it started


class ArmSummary(_Model):
    arm: str
    optimizer: str
    baseline: bool
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    searches: int = 0
    scores: list[float | None] = Field(default_factory=list)  # one per counted search
    seeds: int = 0  # seed runs, over every search
    seeds_diverged: int = 0
    search_trials: int = 0
    search_diverged: int = 0
    best_config: dict[str, Any] | None = None  # the first search's
    configs: list[dict[str, Any] | None] = Field(default_factory=list)  # every search's
    searched: list[dict[str, Any]] = Field(default_factory=list)
    range_warnings: list[str] = Field(default_factory=list)
    edge_note: str | None = None
    step_time_s: float | None = None
    step_impl: str | None = None
    state_bytes: float | None = None
    seed_values: dict[str, float] = Field(default_factory=dict)  # K = 1: the headline by seed


class StudySummary(_Model):
    name: str
    status: str
    task: str | None = None
    task_options: dict[str, Any] = Field(default_factory=dict)
    headline_metric: str | None = None
    metric: str | None = None
    mode: str | None = None
    held_out: bool = False
    budget: str | None = None
    searches_per_arm: int = 1
    trials_per_search: int = 0
    epochs: int = 0
    seeds: list[int] = Field(default_factory=list)
    search_seed: int | None = None
    target: float | None = None
    target_source: str | None = None
    arms: list[ArmSummary] = Field(default_factory=list)
    comparisons: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    commit: str | None = None
    verdict_schema: int | None = None


class ClaimEntry(_Model):
    number: int
    title: str
    statement: str
    paper: str
    design: str
    budget: str
    studies: list[str]
    checks: list[CheckRow]
    secondary: list[CheckRow] = Field(default_factory=list)  # own Holm family, not in the line
    counts: dict[str, int] = Field(default_factory=dict)
    line: str = "inconclusive"
    line_reason: str = ""
    detectable: Detectable = Field(default_factory=Detectable)
    plots: dict[str, Any] = Field(default_factory=dict)  # each plot's data, by kind
    sweeps: list[SweepResult] = Field(default_factory=list)
    time_to_result: list[TimeToResult] = Field(default_factory=list)


class ProfileArm(_Model):
    workloads: int
    ratios: dict[str, float]  # workload -> cost / the fastest arm's (inf: missed)
    costs: dict[str, float]  # workload -> median cost to target over seed runs
    fraction: list[float]  # share of workloads with ratio <= tau


class Profile(_Model):
    name: str
    unit: str  # "gradient evaluations" or "seconds"
    workloads: dict[str, float]  # workload -> its target
    metric: dict[str, str]
    taus: list[float]
    arms: dict[str, ProfileArm]


class Report(_Model):
    report_schema: int = REPORT_SCHEMA
    verdict_schema: int
    judge_schema: int
    claims_version: int
    mode: str
    mode_notes: list[str] = Field(default_factory=list)
    command: str
    generated: str
    ray: str
    devices: list[str]
    machine: dict[str, Any]
    versions: dict[str, str | None]
    commit: str | None = None
    study_seconds: float = 0.0
    bench_seconds: float | None = None
    alpha: float
    rules: list[str]
    claims: list[ClaimEntry]
    studies: dict[str, StudySummary]
    bench: BenchResult | None = None
    profiles: list[Profile] = Field(default_factory=list)
    searched_again: list[dict[str, Any]] = Field(default_factory=list)
