"""From trial records to a verdict: per-arm summaries and paired comparisons with the baseline.

Only the seed re-runs feed the statistics; the search trials give the best config and the
divergence counts. A diverged run scores the worst possible value (inf when minimizing), so it
counts against its arm instead of vanishing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import TypeAdapter

from memtune.studies import stats
from memtune.studies.records import Phase, TrialRecord, TrialState
from memtune.studies.spec import StudySpec

__all__ = ["ArmVerdict", "Comparison", "Verdict", "build_verdict", "format_verdict"]

# "better"/"worse": the bootstrap interval excludes 0 and Wilcoxon p < ALPHA. "leaning": the
# interval excludes 0 but the test does not agree (3 pairs can never give p < 0.25).
Outcome = Literal[
    "better", "worse", "leaning better", "leaning worse", "no clear difference", "undetermined"
]
ALPHA = 0.05


@dataclass
class ArmVerdict:
    arm: str
    optimizer: str
    baseline: bool
    best_config: dict[str, Any] | None
    search_trials: int
    search_diverged: int
    seed_values: dict[int, float]
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    seeds_diverged: int
    time_to_target_s: float | None  # median over seeds; None when no target or most missed
    target_hit_rate: float | None
    mean_step_time_s: float | None
    mean_epoch_time_s: float | None
    state_bytes: float | None
    peak_memory_mb: float | None
    passes_per_step: int
    mean_beta: float | None


@dataclass
class Comparison:
    arm: str
    baseline: str
    pairs: int
    mean_difference: float | None  # arm - baseline, in metric units
    ci_low: float | None
    ci_high: float | None
    wilcoxon_p: float | None
    outcome: Outcome


@dataclass
class Verdict:
    study: str
    task: str
    metric: str
    mode: str
    target: float | None
    arms: list[ArmVerdict]
    comparisons: list[Comparison]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """The inverse of ``to_dict``, also after JSON (memtune.studies.nonfinite) wrote
        non-finite numbers as strings: only fields typed as numbers are read as numbers."""
        return _VERDICT.validate_python(data)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _best_search_trial(records: list[TrialRecord], metric: str, mode: str) -> TrialRecord | None:
    finished = [
        r
        for r in records
        if r.state == TrialState.COMPLETED and r.epochs and math.isfinite(r.final(metric, mode))
    ]
    if not finished:
        return None
    return (min if mode == "min" else max)(finished, key=lambda r: r.final(metric, mode))


def _arm_verdict(spec: StudySpec, arm_label: str, records: list[TrialRecord]) -> ArmVerdict:
    arm = next(a for a in spec.arms if a.label == arm_label)
    metric, mode = spec.resolved_metric, spec.resolved_mode
    search = [r for r in records if r.phase == Phase.SEARCH]
    seeded = [
        r
        for r in records
        if r.phase == Phase.SEED and r.state in (TrialState.COMPLETED, TrialState.DIVERGED)
    ]
    best = _best_search_trial(search, metric, mode)
    values = {r.seed: r.final(metric, mode) for r in seeded}
    interval = stats.mean_interval(list(values.values())) if values else None
    times = [stats.time_to_target(r.curve(metric), spec.target, mode) for r in seeded]
    hits = [t for t in times if math.isfinite(t)]
    median_time = statistics.median(times) if times and spec.target is not None else None
    last = [r.epochs[-1] for r in seeded if r.epochs]
    return ArmVerdict(
        arm=arm_label,
        optimizer=arm.optimizer,
        baseline=arm.baseline,
        best_config=dict(best.config) if best else None,
        search_trials=len(search),
        search_diverged=sum(r.state == TrialState.DIVERGED for r in search),
        seed_values=values,
        mean=interval.mean if interval else None,
        ci_low=interval.low if interval else None,
        ci_high=interval.high if interval else None,
        seeds_diverged=sum(r.state == TrialState.DIVERGED for r in seeded),
        time_to_target_s=_finite_or_none(median_time),
        target_hit_rate=len(hits) / len(times) if times and spec.target is not None else None,
        mean_step_time_s=_mean_of([r.mean("mean_step_time_s") for r in seeded]),
        mean_epoch_time_s=_mean_of([r.mean("epoch_time_s") for r in seeded]),
        state_bytes=_mean_of([e.optimizer_state_bytes for e in last]),
        peak_memory_mb=_max_of([e.peak_memory_mb for e in last]),
        passes_per_step=arm.optimizer_spec.passes_per_step,
        mean_beta=_mean_of([r.mean("mean_beta") for r in seeded]),
    )


def _mean_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _max_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _compare(arm: ArmVerdict, baseline: ArmVerdict, mode: str) -> Comparison:
    seeds = sorted(set(arm.seed_values) & set(baseline.seed_values))
    differences = [arm.seed_values[s] - baseline.seed_values[s] for s in seeds]
    both_infinite = [
        s for s in seeds if math.isinf(arm.seed_values[s]) and math.isinf(baseline.seed_values[s])
    ]
    differences = [d for s, d in zip(seeds, differences, strict=True) if s not in both_infinite]
    interval = stats.paired_bootstrap_interval(differences)
    p_value = stats.wilcoxon_p(differences)
    outcome: Outcome = "undetermined"
    sign = -1 if mode == "min" else 1  # sign * difference > 0: the arm is better
    direction: str | None = None
    if (
        differences
        and all(math.isinf(d) for d in differences)
        and len({d > 0 for d in differences}) == 1
    ):
        direction = "better" if sign * differences[0] > 0 else "worse"  # one side always diverged
    elif interval.low is not None and interval.high is not None:
        low, high = sorted((sign * interval.low, sign * interval.high))
        direction = "better" if low > 0 else "worse" if high < 0 else None
        outcome = "no clear difference"
    if direction is not None:
        significant = p_value is not None and p_value < ALPHA
        outcome = direction if significant else f"leaning {direction}"  # type: ignore[assignment]
    return Comparison(
        arm=arm.arm,
        baseline=baseline.arm,
        pairs=len(differences),
        mean_difference=interval.mean if differences else None,
        ci_low=interval.low,
        ci_high=interval.high,
        wilcoxon_p=p_value,
        outcome=outcome,
    )


def build_verdict(spec: StudySpec, records: Iterable[TrialRecord]) -> Verdict:
    records = list(records)
    arms = [
        _arm_verdict(spec, arm.label, [r for r in records if r.arm == arm.label])
        for arm in spec.arms
    ]
    baseline = next((a for a in arms if a.baseline), None)
    comparisons = [
        _compare(a, baseline, spec.resolved_mode) for a in arms if baseline and a is not baseline
    ]
    return Verdict(
        study=spec.name,
        task=spec.task,
        metric=spec.resolved_metric,
        mode=spec.resolved_mode,
        target=spec.target,
        arms=arms,
        comparisons=comparisons,
    )


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def format_verdict(verdict: Verdict) -> str:
    """A plain-text table of the verdict, for the command line."""
    direction = "higher" if verdict.mode == "max" else "lower"
    lines = [
        f"Study {verdict.study!r} on {verdict.task}: {verdict.metric} ({direction} is better)",
        "",
        f"{'arm':14s} {'mean':>9s} {'95% CI':>21s} {'seeds':>5s} {'div':>4s} {'to target':>10s} "
        f"{'step ms':>8s} {'state MB':>8s}  best config",
    ]
    for arm in verdict.arms:
        interval = f"[{_fmt(arm.ci_low)}, {_fmt(arm.ci_high)}]" if arm.ci_low is not None else "-"
        to_target = (
            "-"
            if verdict.target is None
            else (f"{arm.time_to_target_s:.1f}s" if arm.time_to_target_s is not None else "never")
        )
        step = _fmt(arm.mean_step_time_s * 1e3 if arm.mean_step_time_s is not None else None, 3)
        state = _fmt(arm.state_bytes / 2**20 if arm.state_bytes is not None else None, 3)
        config = ", ".join(
            f"{k}={_fmt(v, 3) if isinstance(v, float) else v}"
            for k, v in (arm.best_config or {}).items()
        )
        name = arm.arm + (" *" if arm.baseline else "")
        diverged = arm.search_diverged + arm.seeds_diverged
        lines.append(
            f"{name:14s} {_fmt(arm.mean):>9s} {interval:>21s} {len(arm.seed_values):>5d} {diverged:>4d} "
            f"{to_target:>10s} {step:>8s} {state:>8s}  {config or 'no converging config'}"
        )
    if verdict.comparisons:
        lines += [
            "",
            f"Paired over seeds against the baseline ({verdict.comparisons[0].baseline}, marked *); "
            f"'better' needs the 95% bootstrap CI to exclude 0 and Wilcoxon p < {ALPHA}:",
        ]
        for c in verdict.comparisons:
            interval = f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]" if c.ci_low is not None else "-"
            lines.append(
                f"  {c.arm:14s} diff {_fmt(c.mean_difference):>9s}  95% CI {interval:>21s}  "
                f"Wilcoxon p {_fmt(c.wilcoxon_p, 3):>6s}  -> {c.outcome}"
            )
    return "\n".join(lines)


_VERDICT = TypeAdapter(Verdict)
