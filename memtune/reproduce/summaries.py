"""The report's numbers besides the checks: each study's summary, the learning-rate sweeps,
the performance profiles and the time to result, all read from the study documents."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from memtune.reproduce.claims import NEAR_OPTIMAL, Claim, Sweep
from memtune.reproduce.document import (
    ArmSummary,
    BenchResult,
    Profile,
    ProfileArm,
    StudySummary,
    SweepArm,
    SweepResult,
    TimeToResult,
)
from memtune.studies import stats
from memtune.studies.verdict import Verdict

__all__ = [
    "TAUS",
    "curves",
    "profiles",
    "rates",
    "study_summary",
    "sweep_result",
    "time_to_result",
]

TAUS = [round(1 + 0.05 * i, 2) for i in range(61)]  # the performance profile's factors, 1 to 4


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def study_summary(name: str, document: Mapping[str, Any] | None) -> StudySummary:
    if document is None or document.get("status") != "completed":
        return StudySummary(name=name, status=(document or {}).get("status", "not run"))
    verdict = Verdict.from_dict(document["verdict"])
    spec = document["spec"]
    arms = [
        ArmSummary(
            arm=arm.arm,
            optimizer=arm.optimizer,
            baseline=arm.baseline,
            mean=arm.mean,
            ci_low=arm.ci_low,
            ci_high=arm.ci_high,
            searches=len(arm.counted),
            scores=[None if s.score is None else float(s.score) for s in arm.counted],
            seeds=sum(len(s.seed_values) for s in arm.counted),
            seeds_diverged=arm.seeds_diverged,
            search_trials=arm.search_trials,
            search_diverged=arm.search_diverged,
            best_config=arm.counted[0].config if arm.counted else None,
            configs=[s.config for s in arm.counted],
            searched=arm.searched,
            range_warnings=[e for s in arm.counted for e in s.edges],
            edge_note=arm.edge_note,
            step_time_s=arm.mean_step_time_s,
            step_impl=arm.step_impl,
            state_bytes=arm.state_bytes,
            seed_values={str(k): float(v) for k, v in arm.seed_values.items()},
        )
        for arm in verdict.arms
    ]
    return StudySummary(
        name=name,
        status="completed",
        task=verdict.task,
        task_options=spec.get("task_options", {}),
        headline_metric=verdict.headline_metric,
        metric=verdict.metric,
        mode=verdict.mode,
        held_out=verdict.held_out,
        budget=verdict.budget,
        searches_per_arm=verdict.searches_per_arm,
        trials_per_search=verdict.trials_per_search,
        epochs=spec["budget"]["epochs"],
        seeds=spec.get("seeds") or [],
        search_seed=spec.get("search_seed"),
        target=verdict.target,
        target_source=verdict.target_source,
        arms=arms,
        comparisons=[
            {
                "arm": c.arm,
                "baseline": c.baseline,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "p_value": c.p_value,
                "p_adjusted": c.p_adjusted,
                "outcome": c.outcome,
                "statement": c.statement,
            }
            for c in verdict.comparisons
        ],
        warnings=verdict.warnings,
        devices=verdict.provenance.get("devices", []),
        commit=verdict.provenance.get("commit"),
        verdict_schema=verdict.schema_version,
    )


def curves(document: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """Per arm: the seed runs' mean validation metric per epoch (finite runs, every search)."""
    metric = document["verdict"]["metric"]
    by_arm: dict[str, dict[int, list[float]]] = {}
    for trial in document["trials"].values():
        if trial["phase"] != "seed" or trial["state"] != "completed":
            continue
        for epoch in trial["epochs"]:
            value = _finite(epoch.get(metric))
            if value is not None:
                by_arm.setdefault(trial["arm"], {}).setdefault(epoch["epoch"], []).append(value)
    return {
        arm: {
            "epoch": sorted(epochs),
            "mean": [statistics.fmean(epochs[e]) for e in sorted(epochs)],
        }
        for arm, epochs in by_arm.items()
    }


def rates(summary: StudySummary, threshold: float | None) -> dict[str, dict[str, Any]]:
    """Per arm: the fraction of seeds whose headline is a success (below ``threshold``, or 1
    for a 0/1 metric), with its Clopper-Pearson interval, and the median headline."""
    out = {}
    for arm in summary.arms:
        values = list(arm.seed_values.values())
        if threshold is None:
            hits = sum(math.isfinite(v) and v > 0.5 for v in values)
        else:
            hits = sum(math.isfinite(v) and v < threshold for v in values)
        interval = stats.clopper_pearson(hits, len(values))
        out[arm.arm] = {
            "rate": interval.mean,
            "low": interval.low,
            "high": interval.high,
            "n": len(values),
            "median": statistics.median(values) if values else None,
        }
    return out


# --------------------------------------------------------------------------------------------
# Learning-rate sweeps
# --------------------------------------------------------------------------------------------


def _near_optimal(
    lrs: Sequence[float],
    means: Sequence[float | None],
    mode: str,
    clean: Sequence[bool] | None = None,
) -> tuple:
    """The best grid point and the contiguous run of learning rates around it whose mean lies
    within NEAR_OPTIMAL of it: (best lr, [low lr, high lr], width in decades). A learning rate
    where a run diverged or failed (``clean`` False) is neither: its mean over the runs left
    would reward an unstable setting."""
    clean = list(clean) if clean is not None else [True] * len(means)
    means = [m if ok else None for m, ok in zip(means, clean, strict=True)]
    sign = 1.0 if mode == "max" else -1.0
    scored = [(i, sign * m) for i, m in enumerate(means) if m is not None]
    if not scored:
        return None, [], None
    best_index, best = max(scored, key=lambda item: item[1])
    best_value = sign * best
    tolerance = NEAR_OPTIMAL["max"] if mode == "max" else NEAR_OPTIMAL["min"] * abs(best_value)

    def near(i: int) -> bool:
        return means[i] is not None and abs(means[i] - best_value) <= tolerance + 1e-12

    low = high = best_index
    while low - 1 >= 0 and near(low - 1):
        low -= 1
    while high + 1 < len(means) and near(high + 1):
        high += 1
    width = math.log10(lrs[high] / lrs[low])
    return lrs[best_index], [lrs[low], lrs[high]], width


def sweep_result(sweep: Sweep, documents: Mapping[str, Any]) -> SweepResult | None:
    """Per arm and learning rate: the headline's mean over seeds with its t-interval, and how
    many runs diverged; the best learning rate and the width of the near-optimal ones."""
    values: dict[str, list[list[float]]] = {arm: [] for arm in sweep.arms}
    failed: dict[str, list[int]] = {arm: [] for arm in sweep.arms}
    metric = mode = None
    for name in sweep.studies:
        document = documents.get(name)
        if document is None or document.get("status") != "completed":
            return None
        verdict = Verdict.from_dict(document["verdict"])
        metric, mode = verdict.headline_metric or verdict.metric, verdict.mode
        arms = {a.arm: a for a in verdict.arms}
        for arm in sweep.arms:
            at_lr = [float(v) for v in arms[arm].seed_values.values()]
            values[arm].append(at_lr)
            limit = math.inf if sweep.failure is None else sweep.failure
            failed[arm].append(sum(not (math.isfinite(v) and v <= limit) for v in at_lr))
    result: dict[str, SweepArm] = {}
    for arm in sweep.arms:
        means, lows, highs, diverged, runs = [], [], [], [], []
        for at_lr in values[arm]:
            finite = [v for v in at_lr if math.isfinite(v)]
            interval = stats.mean_interval(finite) if finite else None
            means.append(interval.mean if interval else None)
            lows.append(interval.low if interval and len(finite) > 1 else None)
            highs.append(interval.high if interval and len(finite) > 1 else None)
            diverged.append(len(at_lr) - len(finite))
            runs.append(len(at_lr))
        lrs = list(sweep.lrs[arm])
        clean = [f == 0 for f in failed[arm]]
        best, interval_, width = _near_optimal(lrs, means, mode or "min", clean)
        result[arm] = SweepArm(
            lrs=lrs, mean=means, low=lows, high=highs, diverged=diverged, runs=runs,
            failed=failed[arm] if sweep.failure is not None else [],
            best_lr=best, near_optimal=interval_, width_decades=width,
        )  # fmt: skip
    return SweepResult(
        name=sweep.name, task=sweep.task, metric=metric or "", mode=mode or "min", arms=result,
        failure=sweep.failure,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Performance profiles and time to result
# --------------------------------------------------------------------------------------------


def _workloads(claim: Claim) -> dict[str, list[str]]:
    """A claim's searched studies grouped by task: each task one workload."""
    groups: dict[str, list[str]] = {}
    for spec in claim.studies:
        if spec.searches_per_arm > 1:
            groups.setdefault(spec.task, []).append(spec.name)
    return groups


def _reached(value: float | None, target: float, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return value >= target if mode == "max" else value <= target


def _costs_to_target(
    documents: Sequence[Mapping[str, Any]], target: float, metric: str, mode: str
) -> dict[str, dict[str, list[float]]]:
    """Per arm, per unit: each seed run's cost when its validation metric first met
    ``target`` (inf: never, or diverged first); the seed runs of counted searches only."""
    costs: dict[str, dict[str, list[float]]] = {}
    for document in documents:
        counted = {
            (arm["arm"], search["index"])
            for arm in document["verdict"]["arms"]
            for search in arm["searches"]
            if not search.get("set_aside")
        }
        for trial in document["trials"].values():
            if trial["phase"] != "seed" or (trial["arm"], trial.get("repeat", 0)) not in counted:
                continue
            evaluations = seconds = math.inf
            for epoch in trial["epochs"]:
                if _reached(_finite(epoch.get(metric)), target, mode):
                    evaluations = float(epoch.get("gradient_evaluations") or math.inf)
                    seconds = float(epoch.get("training_time_s") or math.inf)
                    break
            arm = costs.setdefault(trial["arm"], {"evaluations": [], "seconds": []})
            arm["evaluations"].append(evaluations)
            arm["seconds"].append(seconds)
    return costs


# The profile's target: the validation value that this share of all searches' selected trials
# reached (every arm, every study of the task). The verdict's own target is the median (half
# of them); a profile needs one that most arms meet, or most of its costs are infinite.
PROFILE_TARGET_SHARE = 0.75


def _reached_by_most(values: Sequence[float], mode: str) -> float:
    """The value that PROFILE_TARGET_SHARE of ``values`` reach or beat."""
    ordered = sorted(values, reverse=mode == "max")  # best first
    index = math.ceil(PROFILE_TARGET_SHARE * len(ordered)) - 1
    return ordered[max(index, 0)]


def profiles(name: str, claim: Claim, documents: Mapping[str, Any]) -> list[Profile]:
    """The performance profiles of ``claim``'s searched studies, in gradient evaluations and
    in seconds: each task one workload; its target, fixed by the search trials of every arm
    before any seed run, is the validation value that three quarters of all searches' selected
    trials reached (every arm, every study of the task); an arm's cost is the median over its
    seed runs (every search) of the cost at the end of the epoch that first met it, inf when
    at least half never did; tau from 1 to 4."""
    targets: dict[str, float] = {}
    metrics: dict[str, str] = {}
    costs: dict[str, dict[str, dict[str, float]]] = {"evaluations": {}, "seconds": {}}
    for workload, studies in _workloads(claim).items():
        docs = [documents.get(s) for s in studies]
        if any(d is None or d.get("status") != "completed" for d in docs):
            continue
        verdicts = [Verdict.from_dict(d["verdict"]) for d in docs]  # type: ignore[index]
        bests = [
            float(s.best_validation)
            for v in verdicts
            for arm in v.arms
            for s in arm.counted
            if s.best_validation is not None and math.isfinite(float(s.best_validation))
        ]
        if not bests:
            continue
        metric, mode = verdicts[0].metric, verdicts[0].mode
        targets[workload], metrics[workload] = _reached_by_most(bests, mode), metric
        runs = _costs_to_target(docs, targets[workload], metric, mode)  # type: ignore[arg-type]
        for unit in costs:
            for arm, by_unit in runs.items():
                costs[unit].setdefault(arm, {})[workload] = statistics.median(by_unit[unit])
    out = []
    for unit, by_arm in costs.items():
        best = {
            w: min((c[w] for c in by_arm.values() if w in c), default=math.inf) for w in targets
        }
        arms = {}
        for arm, by_workload in sorted(by_arm.items()):
            ratios = {
                w: (by_workload.get(w, math.inf) / best[w]) if math.isfinite(best[w]) else math.inf
                for w in targets
            }
            arms[arm] = ProfileArm(
                workloads=len(targets),
                ratios=ratios,
                costs={w: by_workload.get(w, math.inf) for w in targets},
                fraction=[
                    sum(r <= tau + 1e-12 for r in ratios.values()) / max(len(targets), 1)
                    for tau in TAUS
                ],
            )
        out.append(
            Profile(
                name=name,
                unit="gradient evaluations" if unit == "evaluations" else "seconds",
                workloads=targets,
                metric=metrics,
                taus=TAUS,
                arms=arms,
            )
        )
    return out


# claim 1's memory arm -> (its claim-1 reference at momentum 0.9, the benchmark's names)
_RESULT_PAIRS = {"am_sgd": ("sgd_m0.9", "sgd"), "am_adamw": ("adamw_b0.9", "adamw")}


def time_to_result(profile: Profile | None, bench: BenchResult | None) -> list[TimeToResult]:
    """Per claim-1 task: each memory optimizer's and its reference's gradient evaluations to
    the task's target (the profile's), times its whole-iteration time measured alone by the
    benchmark: the seconds to a result on an otherwise idle machine."""
    if profile is None or bench is None:
        return []
    rows = []
    for workload in profile.workloads:
        times = bench.iteration.get(workload)
        if not times:
            continue
        for memory, (reference, bench_reference) in _RESULT_PAIRS.items():
            figures = {}
            for arm, timed in ((memory, memory), (reference, bench_reference)):
                line = profile.arms.get(arm)
                evaluations = line.costs.get(workload) if line else None
                iteration = statistics.median(times[timed]) if timed in times else None
                seconds = (
                    evaluations * iteration
                    if evaluations is not None and iteration is not None
                    else None
                )
                figures[arm] = (evaluations, iteration, seconds)
            mine, theirs = figures[memory][2], figures[reference][2]
            ratio = None
            if mine is not None and theirs is not None and math.isfinite(theirs) and theirs:
                ratio = mine / theirs
            for arm in (memory, reference):
                evaluations, iteration, seconds = figures[arm]
                rows.append(
                    TimeToResult(
                        study=workload,
                        arm=arm,
                        evaluations=evaluations,
                        iteration_s=iteration,
                        seconds=seconds,
                        ratio=ratio if arm == memory else None,
                    )
                )
    return rows
