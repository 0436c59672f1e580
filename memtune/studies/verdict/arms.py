"""Per arm: each search's score, the arm's summary over its searches, and its costs.

A search's score is its best config's mean headline value over the study's seeds; a seed run
that diverged, or failed after its retry, makes the score the worst value (the search's config
could not be trusted to train), and a search whose every trial diverged has no config and
scores the worst value too. The arm's mean and interval are over its searches' finite scores.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

from memtune.optimizers import CategoricalParam
from memtune.studies import stats
from memtune.studies.records import Phase, TrialRecord, TrialState, worst_value
from memtune.studies.spec import ArmSpec, Search, StudySpec
from memtune.studies.verdict.types import ArmVerdict, SearchScore

__all__ = ["arm_verdict", "edge_note", "search_best_validation"]


def _ended(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    return [r for r in records if r.state in (TrialState.COMPLETED, TrialState.DIVERGED)]


def _headline_value(record: TrialRecord, metric: str, mode: str) -> float:
    """The run's final headline value; the worst value if it diverged, failed or has none."""
    if record.state == TrialState.ERROR:
        return worst_value(mode)  # type: ignore[arg-type]
    value = record.final(metric, mode)  # type: ignore[arg-type]
    return worst_value(mode) if math.isnan(value) else value  # type: ignore[arg-type]


def _describe(param: Any) -> dict[str, Any]:
    if isinstance(param, CategoricalParam):
        return {"name": param.name, "choices": list(param.choices)}
    return {
        "name": param.name,
        "low": param.low,
        "high": param.high,
        "log": param.log,
        "edges": list(param.edges),
    }


def _edges(spec: StudySpec, arm: ArmSpec, config: dict[str, Any] | None) -> list[str]:
    """The searched values of ``config`` within 5% (log scale where the range is) of a soft
    edge of their range: the optimum may lie outside what was searched."""
    notes = []
    for param in spec.searched(arm):
        value = (config or {}).get(param.name)
        if isinstance(param, CategoricalParam) or not isinstance(value, int | float):
            continue
        edge = param.soft_edge(value)
        if edge:
            notes.append(
                f"{param.name} at {value:.3g}, {edge} edge of [{param.low:g}, {param.high:g}]"
            )
    return notes


def edge_note(spec: StudySpec, arm: ArmSpec, searches: list[SearchScore]) -> str | None:
    """Why the arm's comparisons are inconclusive: a hyperparameter whose best value lies at a
    soft edge of its range in more than half of the arm's searches; else None."""
    counted = [s for s in searches if not s.set_aside]
    for param in spec.searched(arm):
        if isinstance(param, CategoricalParam):
            continue
        values = [
            s.config[param.name]
            for s in counted
            if s.config
            and isinstance(s.config.get(param.name), int | float)
            and param.soft_edge(s.config[param.name])
        ]
        if counted and len(values) > len(counted) / 2:
            shown = ", ".join(f"{v:.3g}" for v in values)
            return (
                f"range edge: {param.name} within 5% of a soft edge of [{param.low:g}, "
                f"{param.high:g}] in {len(values)} of {len(counted)} searches ({shown}); widen "
                "the range (POST /studies/{id}/extend)"
            )
    return None


def search_best_validation(search: list[TrialRecord], metric: str, mode: str) -> float | None:
    """The value the search selected its config on: the best final validation value of its
    trials that ran every epoch (ASHA's stopped trials and diverged ones excluded)."""
    finals = [
        r.epochs[-1].value(metric) for r in search if r.state == TrialState.COMPLETED and r.epochs
    ]
    finite = [v for v in finals if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def _search_score(
    spec: StudySpec, arm: ArmSpec, search: Search, records: list[TrialRecord]
) -> SearchScore:
    metric, mode, headline = spec.resolved_metric, spec.resolved_mode, spec.headline_metric
    mine = [r for r in records if r.repeat == search.index]
    trials = [r for r in mine if r.phase == Phase.SEARCH]
    seeded = [r for r in mine if r.phase == Phase.SEED and r.seed in search.rerun_seeds]
    ran = [
        r
        for r in seeded
        if r.state in (TrialState.COMPLETED, TrialState.DIVERGED, TrialState.ERROR)
    ]
    values = {r.seed: _headline_value(r, headline, mode) for r in ran}
    config = dict(seeded[0].config) if seeded else None
    errored = sorted(r.seed for r in ran if r.state == TrialState.ERROR)
    score: float | None = None  # None: still running, or cut short by the time limit
    note = None
    finite = all(math.isfinite(v) for v in values.values())
    if values and len(values) == len(search.rerun_seeds):
        score = statistics.fmean(values.values()) if finite else worst_value(mode)  # type: ignore[arg-type]
        if errored:
            note = f"seed runs failed after their retry (counted as the worst value): {errored}"
    elif (
        not seeded
        and len(trials) >= spec.budget.trials_per_search
        and all(r.state.ended for r in trials)
    ):
        score = worst_value(mode)  # type: ignore[arg-type]
        note = "no search trial ended with a config to re-run (each diverged or failed)"
    return SearchScore(
        index=search.index,
        seed=search.seed,
        config=config,
        seed_values=values,
        score=score,
        trials=len(trials),
        trials_diverged=sum(r.state == TrialState.DIVERGED for r in trials),
        seeds_diverged=sum(r.state == TrialState.DIVERGED for r in ran),
        seeds_errored=errored,
        best_validation=search_best_validation(trials, metric, mode),
        edges=_edges(spec, arm, config),
        set_aside=search.set_aside,
        note=note,
    )


def _tuning_curve(search: list[TrialRecord], metric: str, mode: str, worst: float) -> list[float]:
    """Expected best validation value after n search trials (n = 1..N), from the trials run;
    a diverged trial counts as ``worst`` (the worst finite value of the study's search)."""
    values = []
    for record in search:
        if record.state == TrialState.DIVERGED:
            values.append(worst)
        elif record.state in (TrialState.COMPLETED, TrialState.STOPPED) and record.epochs:
            value = record.epochs[-1].value(metric)
            if value is not None and math.isfinite(value):
                values.append(value)
    return stats.expected_best(values, mode) if values and math.isfinite(worst) else []


def _times_to_target(
    runs: list[TrialRecord], metric: str, target: float | None, mode: str, cost: str
) -> list[float]:
    """Per run, the cumulative ``cost`` (an EpochResult field) when ``metric`` first reached
    ``target``; inf when it never did."""
    return [
        stats.time_to_target(
            [(getattr(e, cost), v) for e in r.epochs if (v := e.value(metric)) is not None],
            target,
            mode,
        )[0]
        for r in runs
    ]


def _median_or_none(values: list[float]) -> float | None:
    if not values:
        return None
    median = statistics.median(values)
    return median if math.isfinite(median) else None


def _mean_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(present) if present else None


def _summary(
    spec: StudySpec, searches: list[SearchScore]
) -> tuple[float | None, float | None, float | None]:
    """The arm's mean and 95% interval: over its searches' finite scores when it ran several
    (each search is one draw of "the optimizer, tuned"), over its one search's finite seed
    values otherwise (Clopper-Pearson for a 0/1 headline)."""
    counted = [s for s in searches if not s.set_aside]
    if len(counted) == 1:
        values = list(counted[0].seed_values.values())
        finite = [v for v in values if math.isfinite(v)]
        if spec.headline_metric in spec.task_spec.binary:
            rate = stats.clopper_pearson(sum(v > 0.5 for v in finite), len(values))
            return (rate.mean if values else None), rate.low, rate.high
    else:
        finite = [float(s.score) for s in counted if s.score is not None and math.isfinite(s.score)]
    if not finite:
        return None, None, None
    interval = stats.mean_interval(finite)
    return interval.mean, interval.low, interval.high


def arm_verdict(
    spec: StudySpec,
    arm: ArmSpec,
    records: list[TrialRecord],
    *,
    target: float | None,
    worst_search_value: float,
) -> ArmVerdict:
    """The arm's searches scored, and its summary over those the verdict counts."""
    metric, mode = spec.resolved_metric, spec.resolved_mode
    plans = spec.searches(arm)
    searches = [_search_score(spec, arm, search, records) for search in plans]
    reruns = {s.index: set(s.rerun_seeds) for s in plans if not s.set_aside}
    counted = [r for r in records if r.repeat in reruns]
    search_trials = [r for r in counted if r.phase == Phase.SEARCH]
    seed_runs = [r for r in counted if r.phase == Phase.SEED and r.seed in reruns[r.repeat]]
    ended = _ended(seed_runs)
    mean, low, high = _summary(spec, searches)
    seconds = _times_to_target(ended, metric, target, mode, "training_time_s")
    evaluations = _times_to_target(ended, metric, target, mode, "gradient_evaluations")
    last = [r.epochs[-1] for r in ended if r.epochs]
    impls = Counter(e.optimizer_impl for e in last if e.optimizer_impl)
    scored = [s for s in searches if not s.set_aside and s.score is not None]
    note = None
    if scored and all(s.config is None for s in scored):
        note = "no config in its searched space trained without diverging"
    return ArmVerdict(
        arm=arm.label,
        optimizer=arm.optimizer,
        baseline=arm.baseline,
        searches=searches,
        searched=[_describe(p) for p in spec.searched(arm)],
        edge_note=edge_note(spec, arm, searches),
        search_trials=len(search_trials),
        search_diverged=sum(r.state == TrialState.DIVERGED for r in search_trials),
        seeds_diverged=sum(r.state == TrialState.DIVERGED for r in ended),
        seeds_errored=sum(r.state == TrialState.ERROR for r in seed_runs),
        node_losses=sum(r.node_losses for r in counted),
        mean=mean,
        ci_low=low,
        ci_high=high,
        validation_mean=_mean_of(r.final(metric, mode) for r in ended),
        time_to_target_s=_median_or_none(seconds) if target is not None else None,
        time_to_target_evaluations=_median_or_none(evaluations) if target is not None else None,
        target_hit_rate=(
            sum(math.isfinite(s) for s in seconds) / len(seconds)
            if target is not None and seconds
            else None
        ),
        mean_step_time_s=_mean_of(r.mean("mean_step_time_s") for r in ended),
        step_impl=impls.most_common(1)[0][0] if impls else None,
        gradient_evaluations_per_step=_mean_of(
            e.gradient_evaluations / e.steps for e in last if e.steps
        ),
        passes_per_step=arm.optimizer_spec.passes_per_step,
        state_bytes=_mean_of(e.optimizer_state_bytes for e in last),
        peak_memory_mb=max((e.peak_memory_mb for e in last), default=None),
        mean_beta=_mean_of(r.mean("mean_beta") for r in ended),
        n_hyperparameters=len(spec.searched(arm)),
        tuning_curve=_tuning_curve(search_trials, metric, mode, worst_search_value),
        note=note,
    )
