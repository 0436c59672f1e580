"""From trial records to a verdict: per-arm summaries and paired comparisons with the baseline.

What a verdict is made of, and the rules a reviewer can check (``RULES`` is printed with every
verdict and written in the README):

- configs are selected on the validation split by the search; the headline is the test split
  of the seed re-runs (tasks without held-out data say so and report their objective);
- the re-runs use seeds the search never trained with, and re-run the one best config of each
  arm's search (ties: the earliest trial);
- a diverged run scores the worst value and is counted, never dropped; an errored seed run
  (after its retry) makes the comparison "incomplete"; an arm whose search never trained
  without diverging is "worse";
- the labels come from Holm-adjusted exact tests (``memtune.studies.stats``), whose
  false-positive rate and power ``tests/studies/test_calibration.py`` checks by simulation.
"""

from __future__ import annotations

import math
import statistics
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter

from memtune.optimizers import CategoricalParam
from memtune.studies import stats
from memtune.studies.nonfinite import Number
from memtune.studies.records import Phase, TrialRecord, TrialState, best_value, worst_value
from memtune.studies.spec import SCHEDULE_PARAMS, ArmSpec, StudySpec

__all__ = [
    "RULES",
    "SCHEMA_VERSION",
    "ArmVerdict",
    "Comparison",
    "Verdict",
    "build_verdict",
    "decide",
    "format_verdict",
    "package_versions",
    "source_commit",
]

SCHEMA_VERSION = 2
ALPHA = stats.ALPHA
Outcome = Literal["better", "worse", "no clear difference", "underpowered", "incomplete"]

RULES = (
    "Configs are selected on validation data by each arm's search (equal trials per arm); the "
    "headline is the test split of the best config's re-runs, on seeds the search never saw.",
    "Per arm against the baseline, paired by seed: 'better' / 'worse' when the Holm-adjusted "
    f"two-sided exact signed-rank p (exact McNemar for a 0/1 outcome) is below {ALPHA} and the "
    "95% t-interval of the mean difference over seeds where both runs are finite lies on the "
    "same side of 0 (or fewer than two such seeds are left).",
    "A diverged seed scores the worst value: in the rank test it is a loss for its arm, ranked "
    "beyond every finite difference; means and intervals are over finite seeds, with the "
    "diverged count beside them. An arm whose every search trial diverged is 'worse'.",
    "'underpowered': the seeds cannot reach p < 0.05 after Holm (k x 2 / 2^n); 'incomplete': "
    "a seed run errored after its retry; otherwise 'no clear difference'.",
)


@dataclass
class ArmVerdict:
    arm: str
    optimizer: str
    baseline: bool
    best_config: dict[str, Any] | None  # the config the seed runs trained with
    searched: list[dict[str, Any]] = field(default_factory=list)  # name and range of each
    range_warnings: list[str] = field(default_factory=list)
    search_trials: int = 0
    search_diverged: int = 0
    seed_values: dict[int, Number] = field(default_factory=dict)  # headline; worst if diverged
    seeds_diverged: int = 0
    seeds_errored: list[int] = field(default_factory=list)
    mean: Number | None = None  # over finite seeds; a 0/1 metric: the rate
    ci_low: Number | None = None  # t-interval (Clopper-Pearson for a rate)
    ci_high: Number | None = None
    validation_mean: Number | None = None  # the selection metric, same seeds
    time_to_target_s: Number | None = None  # median over seeds; None when most missed
    time_to_target_evaluations: Number | None = None  # the same in gradient evaluations
    target_hit_rate: Number | None = None
    target_ratio: Number | None = None  # time to target / the fastest arm's (inf: never)
    mean_step_time_s: Number | None = None  # optimizer.step() alone
    step_impl: str | None = None  # fused, compiled, foreach or forloop
    gradient_evaluations_per_step: Number | None = None
    passes_per_step: int = 1
    state_bytes: Number | None = None
    peak_memory_mb: Number | None = None
    mean_beta: Number | None = None
    n_hyperparameters: int = 0
    tuning_curve: list[Number] = field(default_factory=list)  # expected best after n trials
    repeat_means: list[Number | None] = field(default_factory=list)  # one per search repeat
    note: str | None = None


@dataclass
class Comparison:
    arm: str
    baseline: str
    test: str = "signed-rank"
    pairs: int = 0  # seeds where both runs ended (diverged ones included)
    finite_pairs: int = 0
    mean_difference: Number | None = None  # arm - baseline over finite pairs, metric units
    ci_low: Number | None = None
    ci_high: Number | None = None
    relative_difference_pct: Number | None = None  # of the baseline's mean on those seeds
    standardized_difference: Number | None = None  # mean / sd of the differences
    p_value: Number | None = None
    p_adjusted: Number | None = None  # Holm over the arms compared with the baseline
    min_attainable_p: Number | None = None
    outcome: Outcome = "no clear difference"
    reason: str | None = None


@dataclass
class Verdict:
    study: str
    task: str
    metric: str  # what the search selected on
    mode: str
    arms: list[ArmVerdict]
    comparisons: list[Comparison]
    headline_metric: str | None = None  # what the statistics report (test split if any)
    held_out: bool = False
    target: Number | None = None
    target_source: str | None = None
    alpha: float = ALPHA
    rules: list[str] = field(default_factory=lambda: list(RULES))
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """The inverse of ``to_dict``, also after JSON (memtune.studies.nonfinite) wrote
        non-finite numbers as strings, and for verdicts stored by earlier versions."""
        if data.get("schema_version", 1) < 2:
            data = _upgrade_v1(data)
        return _VERDICT.validate_python(dict(data))


def _upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """Schema 1 (before held-out splits and Holm) into schema 2's fields, its labels kept as
    reasons: nothing is recomputed."""
    keep_arm = set(ArmVerdict.__dataclass_fields__)
    arms = [{k: v for k, v in a.items() if k in keep_arm} for a in data.get("arms", [])]
    comparisons = []
    for c in data.get("comparisons", []):
        outcome = c.get("outcome")
        comparisons.append(
            {
                "arm": c["arm"],
                "baseline": c["baseline"],
                "pairs": c.get("pairs", 0),
                "mean_difference": c.get("mean_difference"),
                "ci_low": c.get("ci_low"),
                "ci_high": c.get("ci_high"),
                "p_value": c.get("wilcoxon_p"),
                "outcome": outcome if outcome in ("better", "worse") else "no clear difference",
                "reason": f"schema 1 verdict: {outcome} (bootstrap interval, no Holm)",
            }
        )
    return {
        "study": data.get("study", ""),
        "task": data.get("task", ""),
        "metric": data.get("metric", ""),
        "mode": data.get("mode", "max"),
        "target": data.get("target"),
        "headline_metric": data.get("metric"),
        "arms": arms,
        "comparisons": comparisons,
        "rules": ["schema 1: validation metric of the seed re-runs, no multiplicity correction"],
        "schema_version": 1,
    }


def decide(
    *,
    mode: str,
    p_adjusted: float | None,
    direction: int,
    interval: stats.Interval | None,
    min_p: float,
    errored: Sequence[int] = (),
) -> tuple[Outcome, str | None]:
    """The label of one comparison from its numbers (RULES). ``direction`` is the sign of the
    arm's signed ranks (arm - baseline); ``interval`` is over the finite pairs."""
    if errored:
        return "incomplete", f"seed runs errored after their retry: {sorted(errored)}"
    sign = 1 if mode == "max" else -1
    if p_adjusted is not None and p_adjusted < ALPHA and direction != 0:
        side = sign * direction  # +1: the arm is better
        low, high = (interval.low, interval.high) if interval else (None, None)
        if low is None or high is None:
            agrees = True  # fewer than two finite pairs: the ranks (divergences) decide
        else:
            signed = (sign * low, sign * high)
            agrees = min(signed) > 0 if side > 0 else max(signed) < 0
        if agrees:
            return ("better" if side > 0 else "worse"), None
        return "no clear difference", "the rank test and the interval of the mean disagree"
    if min_p >= ALPHA:
        return "underpowered", f"these seeds cannot reach p < {ALPHA} after Holm ({min_p:.3g})"
    return "no clear difference", None


# --------------------------------------------------------------------------------------------
# Per arm
# --------------------------------------------------------------------------------------------


def _ended(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    return [r for r in records if r.state in (TrialState.COMPLETED, TrialState.DIVERGED)]


def _headline_value(record: TrialRecord, metric: str, mode: str) -> float:
    value = record.final(metric, mode)
    return worst_value(mode) if math.isnan(value) else value


def _describe(param: Any) -> dict[str, Any]:
    if isinstance(param, CategoricalParam):
        return {"name": param.name, "choices": list(param.choices)}
    return {"name": param.name, "low": param.low, "high": param.high, "log": param.log}


def _range_warnings(spec: StudySpec, arm: ArmSpec, config: Mapping[str, Any] | None) -> list[str]:
    """A best value within 5% of its range's edge (log scale where the range is): the optimum
    may lie outside what was searched. (A warmup near 0 is a natural answer, not flagged.)"""
    notes = []
    for param in spec.searched(arm):
        value = (config or {}).get(param.name)
        if isinstance(param, CategoricalParam) or not isinstance(value, int | float):
            continue
        if param.name in SCHEDULE_PARAMS:
            continue
        if param.log:
            position = math.log(value / param.low) / math.log(param.high / param.low)
        else:
            position = (value - param.low) / (param.high - param.low)
        if position <= 0.05 or position >= 0.95:
            edge = "lower" if position <= 0.05 else "upper"
            notes.append(
                f"{param.name}={value:.3g} is within 5% of the {edge} edge of "
                f"[{param.low:g}, {param.high:g}]: the range may be too narrow"
            )
    return notes


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


def _arm_verdict(
    spec: StudySpec,
    arm: ArmSpec,
    records: list[TrialRecord],
    *,
    target: float | None,
    worst_search_value: float,
) -> ArmVerdict:
    metric, mode, headline = spec.resolved_metric, spec.resolved_mode, spec.headline_metric
    binary = headline in spec.task_spec.binary
    search = [r for r in records if r.phase == Phase.SEARCH and r.repeat == 0]
    seeded = [r for r in records if r.phase == Phase.SEED and r.repeat == 0]
    ended = _ended(seeded)
    values = {r.seed: _headline_value(r, headline, mode) for r in ended}
    finite = [v for v in values.values() if math.isfinite(v)]
    if binary:
        rate = stats.clopper_pearson(sum(v > 0.5 for v in finite), len(values))
        mean, low, high = (rate.mean if values else None), rate.low, rate.high
    else:
        interval = stats.mean_interval(finite) if finite else None
        mean = interval.mean if interval else None
        low, high = (interval.low, interval.high) if interval else (None, None)
    seconds = _times_to_target(ended, metric, target, mode, "training_time_s")
    evaluations = _times_to_target(ended, metric, target, mode, "gradient_evaluations")
    last = [r.epochs[-1] for r in ended if r.epochs]
    impls = Counter(e.optimizer_impl for e in last if e.optimizer_impl)
    config = dict(seeded[0].config) if seeded else None
    repeat_means = []
    for repeat in range(spec.budget.repeats):
        runs = _ended(r for r in records if r.phase == Phase.SEED and r.repeat == repeat)
        repeat_means.append(
            _mean_of(_headline_value(r, headline, mode) for r in runs) if runs else None
        )
    note = None
    if search and not seeded:
        note = "no config in its searched space trained without diverging"
    return ArmVerdict(
        arm=arm.label,
        optimizer=arm.optimizer,
        baseline=arm.baseline,
        best_config=config,
        searched=[_describe(p) for p in spec.searched(arm)],
        range_warnings=_range_warnings(spec, arm, config),
        search_trials=len(search),
        search_diverged=sum(r.state == TrialState.DIVERGED for r in search),
        seed_values=values,
        seeds_diverged=sum(r.state == TrialState.DIVERGED for r in ended),
        seeds_errored=sorted(r.seed for r in seeded if r.state == TrialState.ERROR),
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
        tuning_curve=_tuning_curve(search, metric, mode, worst_search_value),
        repeat_means=repeat_means,
        note=note,
    )


# --------------------------------------------------------------------------------------------
# Against the baseline
# --------------------------------------------------------------------------------------------


def _difference(a: float, b: float) -> float:
    """arm - baseline; both diverged (both the worst value) is no difference."""
    if math.isinf(a) and math.isinf(b) and a == b:
        return 0.0
    return a - b


def _compare(
    arm: ArmVerdict, baseline: ArmVerdict, *, mode: str, binary: bool, comparisons: int
) -> tuple[Comparison, int, stats.Interval | None, list[int]]:
    """The comparison's numbers, and what :func:`decide` needs once Holm has run: the
    direction of the ranks, the interval over finite pairs, the errored seeds."""
    errored = sorted(set(arm.seeds_errored) | set(baseline.seeds_errored))
    seeds = sorted(set(arm.seed_values) & set(baseline.seed_values))
    a = [arm.seed_values[s] for s in seeds]
    b = [baseline.seed_values[s] for s in seeds]
    differences = [_difference(x, y) for x, y in zip(a, b, strict=True)]
    finite = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    finite_differences = [x - y for x, y in finite]
    interval = stats.mean_interval(finite_differences) if finite_differences else None
    if binary:
        wins_a = [math.isfinite(x) and x > 0.5 for x in a]
        wins_b = [math.isfinite(y) and y > 0.5 for y in b]
        p_value = stats.mcnemar_p(wins_a, wins_b)
        direction = int(math.copysign(1, sum(wins_a) - sum(wins_b))) if wins_a != wins_b else 0
        test, interval = "exact McNemar", None
        mean_difference = (sum(wins_a) - sum(wins_b)) / len(seeds) if seeds else None
    else:
        p_value = stats.signed_rank_p(differences)
        direction = stats.signed_rank_direction(differences)
        test = "exact signed-rank"
        mean_difference = interval.mean if interval else None
    base_mean = statistics.fmean(y for _, y in finite) if finite else None
    spread = statistics.stdev(finite_differences) if len(finite_differences) > 1 else 0.0
    comparison = Comparison(
        arm=arm.arm,
        baseline=baseline.arm,
        test=test,
        pairs=len(seeds),
        finite_pairs=len(finite),
        mean_difference=mean_difference,
        ci_low=interval.low if interval else None,
        ci_high=interval.high if interval else None,
        relative_difference_pct=(
            100 * mean_difference / abs(base_mean)
            if mean_difference is not None and base_mean
            else None
        ),
        standardized_difference=(
            mean_difference / spread if mean_difference is not None and spread > 0 else None
        ),
        p_value=p_value,
        min_attainable_p=stats.min_attainable_p(len(seeds), comparisons),
    )
    return comparison, direction, interval, errored


def _derived_target(
    spec: StudySpec, baseline: ArmSpec | None, records: list[TrialRecord]
) -> tuple[float | None, str | None]:
    """The spec's target; else a validation value every seed of the baseline reaches (its
    worst seed's best), so that time-to-target asks "how fast to the baseline's level"."""
    if spec.target is not None:
        return spec.target, "spec"
    if baseline is None:
        return None, None
    metric, mode = spec.resolved_metric, spec.resolved_mode
    runs = _ended(
        r for r in records if r.arm == baseline.label and r.phase == Phase.SEED and r.repeat == 0
    )
    bests = [r.best(metric, mode) for r in runs]
    if not bests or any(b is None for b in bests):
        return None, None
    worst = min(bests) if mode == "max" else max(bests)  # type: ignore[type-var]
    return worst, "the baseline's worst seed (its best validation value)"


def provenance(spec: StudySpec, records: Iterable[TrialRecord]) -> dict[str, Any]:
    """How the verdict was made: seeds, versions, the memtune commit and the devices."""
    versions = package_versions("memtune", "torch", "ray", "optuna", "scipy", "numpy", "pydantic")
    devices = sorted({e.device for r in records for e in r.epochs if e.device})
    return {
        "seeds": list(spec.seeds or ()),
        "search_seeds": spec.search_seeds,
        "trials_per_arm": spec.budget.trials_per_arm,
        "epochs": spec.budget.epochs,
        "equalize": spec.budget.equalize,
        "schedule": spec.schedule.model_dump(mode="json"),
        "repeats": spec.budget.repeats,
        "versions": versions,
        "commit": source_commit(),
        "devices": devices,
    }


def package_versions(*packages: str) -> dict[str, str | None]:
    """The installed version of each package (None: not installed)."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def source_commit() -> str | None:
    """The git commit memtune runs from (a checkout), or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def build_verdict(spec: StudySpec, records: Iterable[TrialRecord]) -> Verdict:
    records = list(records)
    metric, mode = spec.resolved_metric, spec.resolved_mode
    target, target_source = _derived_target(spec, spec.baseline_arm, records)
    search_finals = [
        r.epochs[-1].value(metric)
        for r in records
        if r.phase == Phase.SEARCH and r.state != TrialState.DIVERGED and r.epochs
    ]
    finite_finals = [v for v in search_finals if v is not None and math.isfinite(v)]
    worst = (max if mode == "min" else min)(finite_finals) if finite_finals else math.nan
    arms = [
        _arm_verdict(
            spec,
            arm,
            [r for r in records if r.arm == arm.label],
            target=target,
            worst_search_value=worst,
        )
        for arm in spec.arms
    ]
    fastest = best_value((a.time_to_target_s for a in arms), "min")
    for arm in arms:
        if fastest is not None and fastest > 0:
            arm.target_ratio = (
                arm.time_to_target_s / fastest if arm.time_to_target_s is not None else math.inf
            )
    baseline = next((a for a in arms if a.baseline), None)
    comparisons: list[Comparison] = []
    if baseline is not None:
        binary = spec.headline_metric in spec.task_spec.binary
        raw = [
            _compare(a, baseline, mode=mode, binary=binary, comparisons=spec.comparisons)
            for a in arms
            if a is not baseline
        ]
        adjusted = stats.holm([c.p_value for c, *_ in raw])
        for (comparison, direction, interval, errored), p_adjusted in zip(
            raw, adjusted, strict=True
        ):
            comparison.p_adjusted = p_adjusted
            arm = next(a for a in arms if a.arm == comparison.arm)
            if arm.note and not errored:
                comparison.outcome, comparison.reason = "worse", arm.note
            elif baseline.note and not errored:
                comparison.outcome = "incomplete"
                comparison.reason = f"the baseline: {baseline.note}"
            else:
                comparison.outcome, comparison.reason = decide(
                    mode=mode,
                    p_adjusted=p_adjusted,
                    direction=direction,
                    interval=interval,
                    min_p=comparison.min_attainable_p or 1.0,
                    errored=errored,
                )
            comparisons.append(comparison)
    return Verdict(
        study=spec.name,
        task=spec.task,
        metric=metric,
        mode=mode,
        arms=arms,
        comparisons=comparisons,
        headline_metric=spec.headline_metric,
        held_out=spec.task_spec.held_out,
        target=target,
        target_source=target_source,
        warnings=spec.warnings + [f"{a.arm}: {w}" for a in arms for w in a.range_warnings],
        provenance=provenance(spec, records),
    )


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def _interval(low: float | None, high: float | None) -> str:
    return f"[{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else "-"


def format_verdict(verdict: Verdict) -> str:
    """A plain-text account of the verdict, for the command line: the numbers, the labels and
    the rules that made them."""
    direction = "higher" if verdict.mode == "max" else "lower"
    headline = verdict.headline_metric or verdict.metric
    split = "test split" if verdict.held_out else "no held-out data"
    lines = [
        f"Study {verdict.study!r} on {verdict.task}: {headline} ({direction} is better; "
        f"{split}), configs selected on {verdict.metric}",
        "",
        f"{'arm':14s} {'mean':>9s} {'95% CI':>21s} {'seeds':>5s} {'div':>3s} {'err':>3s} "
        f"{'to target':>9s} {'evals':>8s} {'step ms':>8s} {'impl':>7s} {'grad/step':>9s} "
        f"{'state MB':>8s}  best config",
    ]
    for arm in verdict.arms:
        to_target = (
            "-"
            if verdict.target is None
            else (
                f"{_fmt(arm.time_to_target_s, 3)}s" if arm.time_to_target_s is not None else "never"
            )
        )
        step = _fmt(arm.mean_step_time_s * 1e3 if arm.mean_step_time_s is not None else None, 3)
        state = _fmt(arm.state_bytes / 2**20 if arm.state_bytes is not None else None, 3)
        config = ", ".join(
            f"{k}={_fmt(v, 3) if isinstance(v, float) else v}"
            for k, v in (arm.best_config or {}).items()
        )
        name = arm.arm + (" *" if arm.baseline else "")
        lines.append(
            f"{name:14s} {_fmt(arm.mean):>9s} {_interval(arm.ci_low, arm.ci_high):>21s} "
            f"{len(arm.seed_values):>5d} {arm.seeds_diverged:>3d} {len(arm.seeds_errored):>3d} "
            f"{to_target:>9s} {_fmt(arm.time_to_target_evaluations, 3):>8s} {step:>8s} "
            f"{arm.step_impl or '-':>7s} {_fmt(arm.gradient_evaluations_per_step, 2):>9s} "
            f"{state:>8s}  {config or arm.note or 'no converging config'}"
        )
    if verdict.target is not None:
        lines.append(
            f"\ntarget {verdict.metric} {_fmt(verdict.target)} ({verdict.target_source}); "
            "time in seconds of training and in gradient evaluations, median over seeds"
        )
    if verdict.comparisons:
        first = verdict.comparisons[0]
        lines += [
            "",
            f"Against the baseline ({first.baseline}, marked *), paired by seed "
            f"({first.pairs} seeds: the smallest Holm-adjusted p they can give is "
            f"{_fmt(first.min_attainable_p, 3)}); p adjusted by Holm over "
            f"{len(verdict.comparisons)} comparison(s):",
        ]
        for c in verdict.comparisons:
            lines.append(
                f"  {c.arm:14s} diff {_fmt(c.mean_difference):>9s} "
                f"95% CI {_interval(c.ci_low, c.ci_high):>21s} "
                f"({_fmt(c.relative_difference_pct, 3)}%, d={_fmt(c.standardized_difference, 3)}) "
                f"{c.test} p {_fmt(c.p_value, 3)}, Holm {_fmt(c.p_adjusted, 3)} "
                f"-> {c.outcome}{f' ({c.reason})' if c.reason else ''}"
            )
    lines += ["", "Searched ranges (expected best after 1 / all search trials):"]
    for arm in verdict.arms:
        ranges = ", ".join(
            f"{r['name']} {r['choices']}"
            if "choices" in r
            else f"{r['name']} [{r['low']:g}, {r['high']:g}]{' log' if r['log'] else ''}"
            for r in arm.searched
        )
        curve = (
            f"{_fmt(arm.tuning_curve[0])} / {_fmt(arm.tuning_curve[-1])}"
            if arm.tuning_curve
            else "-"
        )
        lines.append(f"  {arm.arm:14s} {ranges or 'nothing searched'}  ({curve})")
        if len(arm.repeat_means) > 1:
            present = [m for m in arm.repeat_means if m is not None]
            if present:
                lines.append(
                    f"  {'':14s} over {len(arm.repeat_means)} repeats of the search: median "
                    f"{_fmt(statistics.median(present))}, range "
                    f"[{_fmt(min(present))}, {_fmt(max(present))}]"
                )
    if verdict.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in verdict.warnings]
    lines += ["", "Rules:"] + [f"  - {rule}" for rule in verdict.rules]
    versions = verdict.provenance.get("versions", {})
    if versions:
        lines.append(
            "\nMade with "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
            + f"; commit {verdict.provenance.get('commit') or 'unknown'}; devices "
            + (", ".join(verdict.provenance.get("devices", [])) or "-")
        )
    return "\n".join(lines)


_VERDICT = TypeAdapter(Verdict)
