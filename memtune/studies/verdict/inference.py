"""From trial records to a verdict: every arm against the baseline, and the labels.

The unit of inference is the search: each arm runs K independent searches of the same budget,
and a search's score is its best config's mean over the study's seeds (``arms.py``). Two arms
are compared on their K search scores each, so the luck of the search (two searches of one
optimizer find different configs) is inside the test and the interval, not only the seeds'.
With one search per arm (K = 1) the verdict can only compare the two configs found, over
seeds, and its labels say so ("config better"). ``RULES`` is printed with every verdict and
written in the README; ``tests/studies/test_calibration.py`` checks the rule's false-label
rate and power by simulation, ``bench/aa_calibration.py`` end to end.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from memtune.studies import stats
from memtune.studies.records import Phase, TrialRecord, TrialState, best_value
from memtune.studies.spec import StudySpec
from memtune.studies.verdict.arms import arm_verdict, search_best_validation
from memtune.studies.verdict.provenance import provenance
from memtune.studies.verdict.types import ALPHA, ArmVerdict, Comparison, Outcome, Verdict

__all__ = ["RULES", "budget_text", "build_verdict", "decide"]

RULES = (
    "Configs are selected on validation data by each search (the same trials per search and "
    "per arm); the headline is the test split of each search's best config, re-run on seeds no "
    "search trained with.",
    "Each arm runs K independent searches, each with its own seed; search r of every arm "
    "re-runs its config on the study's seeds + r x 100,000 (common to the arms, other for "
    "each search). A search's score is its config's mean over those seeds. A seed run that "
    "diverged or failed (after its retry) makes its search's score the worst value, as does a "
    "search none of whose trials ran every epoch without diverging or failing (an arm that "
    "searches nothing has one config, which its seeds re-run even when its search trial "
    "diverged).",
    "Per arm against the baseline, over the search scores of each (the searches both arms "
    "finished, in their order within the arm; a time limit stops the trials still running "
    f"and leaves their searches without a score): 'better' / 'worse' when the Holm-adjusted two-sided exact rank-sum p is below "
    f"{ALPHA} and the Hodges-Lehmann interval of the shift (at least 95%) lies on the same "
    "side of 0. A label says what it holds for: the optimizer, as tuned by searches of this "
    "budget.",
    "'inconclusive': a searched hyperparameter's best value lies within 5% (log scale where the "
    "range is) of a soft edge of its range in more than half of the arm's searches (with one "
    "search: in it), or of the baseline's (then every comparison); 'underpowered': this many "
    "searches cannot reach p < 0.05 after Holm; otherwise 'no clear difference'.",
    "With one search per arm (K = 1) the configs are compared, not the optimizers: paired by "
    f"seed, the Holm-adjusted exact signed-rank p below {ALPHA} and the t-interval of the mean "
    "difference over finite pairs on the same side (with fewer than two finite pairs, or a 0/1 "
    "outcome judged by exact McNemar, the test alone) give 'config better' / 'config worse'; "
    "a search that found no config scores the worst value on every seed.",
    "Time to target: to the spec's target, or to the median of every search's best validation "
    "value over all arms (fixed by the search trials alone, before any seed run counts); "
    "misses count as never.",
    "A study extended after a verdict says so: choosing to extend after a look lifts the "
    "false-label rate above 5%.",
)


def budget_text(spec: StudySpec) -> str:
    """The budget a verdict's answer holds at, in words."""
    seeds = len(spec.seeds or ())
    if spec.searches_per_arm == 1:
        return (
            f"one search of {spec.budget.trials_per_search} trials per arm, its config re-run "
            f"on {seeds} seeds (config vs config: search not replicated)"
        )
    return (
        f"{spec.searches_per_arm} independent searches of {spec.budget.trials_per_search} "
        f"trials per arm, each search's config re-run on {seeds} seed{'s' * (seeds != 1)}"
    )


def decide(
    *,
    mode: str,
    p_adjusted: float | None,
    direction: int,
    interval: tuple[float | None, float | None] | None,
    min_p: float,
    scope: str = "optimizer",
) -> tuple[Outcome, str | None]:
    """The label of one comparison from its numbers (RULES). ``direction`` is the sign of the
    arm's ranks (arm - baseline); ``interval`` is (low, high) of the shift, or None."""
    sign = 1 if mode == "max" else -1
    prefix = "config " if scope == "config" else ""
    if p_adjusted is not None and p_adjusted < ALPHA and direction != 0:
        side = sign * direction  # +1: the arm is better
        low, high = interval if interval else (None, None)
        if low is None or high is None:
            agrees = True  # too few finite values for an interval: the ranks decide
        else:
            signed = (sign * low, sign * high)
            agrees = min(signed) > 0 if side > 0 else max(signed) < 0
        if agrees:
            return f"{prefix}{'better' if side > 0 else 'worse'}", None  # type: ignore[return-value]
        return "no clear difference", "the rank test and the interval disagree"
    if min_p >= ALPHA:
        unit = "seeds" if scope == "config" else "searches"
        return "underpowered", f"these {unit} cannot reach p < {ALPHA} after Holm ({min_p:.3g})"
    return "no clear difference", None


# --------------------------------------------------------------------------------------------
# Against the baseline
# --------------------------------------------------------------------------------------------


def _effect_sizes(
    difference: float | None, base: float | None, spread: float | None
) -> dict[str, float | None]:
    """The difference relative to the baseline's level (%) and to the spread (standardized)."""
    usable = difference is not None and math.isfinite(difference)
    return {
        "relative_difference_pct": 100 * difference / abs(base) if usable and base else None,
        "standardized_difference": difference / spread if usable and spread else None,
    }


def _over_searches(
    arm: ArmVerdict, baseline: ArmVerdict, comparisons: int
) -> tuple[Comparison, int, tuple[float | None, float | None] | None]:
    """Scope "optimizer": the exact rank-sum test and the Hodges-Lehmann shift of the arms'
    search scores. Only the searches both arms finished are compared, by their place in the
    arm (the first counted search of each, the second...): a time limit that cut some short
    must not favour the arm whose searches happened to come first or end early."""
    pairs = list(zip(arm.counted, baseline.counted, strict=False))
    both = [(x, y) for x, y in pairs if x.score is not None and y.score is not None]
    a = [float(x.score) for x, _ in both]  # type: ignore[arg-type]
    b = [float(y.score) for _, y in both]  # type: ignore[arg-type]
    shift = stats.hodges_lehmann(a, b)
    finite_b = [v for v in b if math.isfinite(v)]
    base = statistics.median(finite_b) if finite_b else None
    difference = shift.estimate if shift else None
    comparison = Comparison(
        arm=arm.arm,
        baseline=baseline.arm,
        scope="optimizer",
        test="exact rank-sum over search scores",
        searches=len(a),
        baseline_searches=len(b),
        difference=difference,
        ci_low=shift.low if shift else None,
        ci_high=shift.high if shift else None,
        **_effect_sizes(difference, base, stats.pooled_sd(a, b)),
        p_value=stats.rank_sum_p(a, b),
        min_attainable_p=stats.min_attainable_rank_sum_p(len(a), comparisons, len(b)),
    )
    interval = (shift.low, shift.high) if shift else None
    return comparison, stats.rank_sum_direction(a, b), interval


def _difference(a: float, b: float) -> float:
    """arm - baseline; both diverged (both the worst value) is no difference."""
    if math.isinf(a) and math.isinf(b) and a == b:
        return 0.0
    return a - b


def _by_seed(arm: ArmVerdict, other: ArmVerdict) -> dict[int, float]:
    """The arm's values by seed; a search that found no config to re-run scored the worst value,
    which it takes on every seed the other arm ran (so the paired test, not a shortcut, judges
    it)."""
    values = {int(k): float(v) for k, v in arm.seed_values.items()}
    search = arm.counted[0] if arm.counted else None
    if not values and search is not None and search.score is not None and search.config is None:
        values = dict.fromkeys(other.seed_values, float(search.score))
    return values


def _over_seeds(
    arm: ArmVerdict, baseline: ArmVerdict, *, binary: bool, comparisons: int
) -> tuple[Comparison, int, tuple[float | None, float | None] | None]:
    """Scope "config" (one search per arm): the paired signed-rank test over seeds (exact
    McNemar for a 0/1 outcome) and the t-interval of the mean difference over finite pairs."""
    arm_values, base_values = _by_seed(arm, baseline), _by_seed(baseline, arm)
    seeds = sorted(set(arm_values) & set(base_values))
    a = [float(arm_values[s]) for s in seeds]
    b = [float(base_values[s]) for s in seeds]
    differences = [_difference(x, y) for x, y in zip(a, b, strict=True)]
    finite = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    finite_differences = [x - y for x, y in finite]
    interval = stats.mean_interval(finite_differences) if finite_differences else None
    if binary:
        wins_a = [math.isfinite(x) and x > 0.5 for x in a]
        wins_b = [math.isfinite(y) and y > 0.5 for y in b]
        p_value = stats.mcnemar_p(wins_a, wins_b)
        direction = int(math.copysign(1, sum(wins_a) - sum(wins_b))) if wins_a != wins_b else 0
        test, interval = "exact McNemar over seeds", None
        mean_difference = (sum(wins_a) - sum(wins_b)) / len(seeds) if seeds else None
    else:
        p_value = stats.signed_rank_p(differences)
        direction = stats.signed_rank_direction(differences)
        test = "exact signed-rank over seeds"
        mean_difference = interval.mean if interval else None
    base_mean = statistics.fmean(y for _, y in finite) if finite else None
    spread = statistics.stdev(finite_differences) if len(finite_differences) > 1 else 0.0
    comparison = Comparison(
        arm=arm.arm,
        baseline=baseline.arm,
        scope="config",
        test=test,
        searches=1,
        baseline_searches=1,
        pairs=len(seeds),
        finite_pairs=len(finite),
        difference=mean_difference,
        ci_low=interval.low if interval else None,
        ci_high=interval.high if interval else None,
        **_effect_sizes(mean_difference, base_mean, spread),
        p_value=p_value,
        min_attainable_p=stats.min_attainable_p(len(seeds), comparisons),
    )
    return comparison, direction, (interval.low, interval.high) if interval else None


def _statement(comparison: Comparison, spec: StudySpec) -> str:
    """The outcome as a sentence that says what it holds for."""
    arm, base, outcome = comparison.arm, comparison.baseline, comparison.outcome
    if comparison.scope == "config":
        held = "config vs config: search not replicated"
        if outcome in ("config better", "config worse"):
            return f"{arm}'s config {outcome.split()[1]} than {base}'s ({held})"
        return f"{arm}'s config against {base}'s: {outcome} ({held})"
    held = (
        f"each tuned by {spec.budget.trials_per_search}-trial searches "
        f"({comparison.searches} against {comparison.baseline_searches} searches)"
    )
    if outcome in ("better", "worse"):
        return f"{arm} {outcome} than {base}, {held}"
    return f"{arm} against {base}: {outcome}, {held}"


def _label(
    comparison: Comparison,
    arm: ArmVerdict,
    baseline: ArmVerdict,
    *,
    mode: str,
    direction: int,
    interval: tuple[float | None, float | None] | None,
) -> tuple[Outcome, str | None]:
    """RULES, in order: nothing to compare, a soft range edge, then the test."""
    if comparison.p_value is None and not (arm.scores and baseline.scores):
        missing = arm.arm if not arm.scores else baseline.arm
        return "incomplete", f"no search of {missing} has a score"
    if comparison.p_value is None and comparison.scope == "optimizer":
        return "incomplete", "no search finished in both arms"
    if baseline.edge_note:
        return "inconclusive", f"the baseline's {baseline.edge_note}"
    if arm.edge_note:
        return "inconclusive", arm.edge_note
    outcome, reason = decide(
        mode=mode,
        p_adjusted=comparison.p_adjusted,
        direction=direction,
        interval=interval,
        min_p=comparison.min_attainable_p or 1.0,
        scope=comparison.scope,
    )
    notes = [n for n in (arm.note, baseline.note and f"the baseline: {baseline.note}", reason) if n]
    return outcome, "; ".join(notes) or None


def _comparisons(spec: StudySpec, arms: list[ArmVerdict]) -> list[Comparison]:
    baseline = next((a for a in arms if a.baseline), None)
    if baseline is None:
        return []
    mode = spec.resolved_mode
    binary = spec.headline_metric in spec.task_spec.binary
    raw = []
    for arm in arms:
        if arm is baseline:
            continue
        if spec.searches_per_arm == 1:
            compared = _over_seeds(arm, baseline, binary=binary, comparisons=spec.comparisons)
        else:
            compared = _over_searches(arm, baseline, spec.comparisons)
        raw.append((arm, *compared))
    adjusted = stats.holm([c.p_value for _, c, _, _ in raw])
    comparisons = []
    for (arm, comparison, direction, interval), p_adjusted in zip(raw, adjusted, strict=True):
        comparison.p_adjusted = p_adjusted
        comparison.outcome, comparison.reason = _label(
            comparison, arm, baseline, mode=mode, direction=direction, interval=interval
        )
        comparison.statement = _statement(comparison, spec)
        comparisons.append(comparison)
    return comparisons


# --------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------


def _target(spec: StudySpec, records: list[TrialRecord]) -> tuple[float | None, str | None]:
    """The spec's target; else the median over every counted search of every arm of its best
    validation value. It belongs to no arm, and only search trials set it: no seed run moves
    it."""
    if spec.target is not None:
        return spec.target, "spec"
    metric, mode = spec.resolved_metric, spec.resolved_mode
    bests = []
    for arm in spec.arms:
        for search in spec.searches(arm):
            if search.set_aside:
                continue
            trials = [
                r
                for r in records
                if r.arm == arm.label and r.repeat == search.index and r.phase == Phase.SEARCH
            ]
            best = search_best_validation(trials, metric, mode)
            if best is not None:
                bests.append(best)
    if not bests:
        return None, None
    return (
        statistics.median(bests),
        f"the median of every search's best validation value ({len(bests)} searches, all arms)",
    )


def _worst_search_value(spec: StudySpec, records: Iterable[TrialRecord]) -> float:
    """The worst finite final value of the study's search trials (what a diverged trial
    counts as in the tuning curves)."""
    metric, mode = spec.resolved_metric, spec.resolved_mode
    finals = [
        r.epochs[-1].value(metric)
        for r in records
        if r.phase == Phase.SEARCH and r.state != TrialState.DIVERGED and r.epochs
    ]
    finite = [v for v in finals if v is not None and math.isfinite(v)]
    return (max if mode == "min" else min)(finite) if finite else math.nan


def build_verdict(spec: StudySpec, records: Iterable[TrialRecord]) -> Verdict:
    records = list(records)
    target, target_source = _target(spec, records)
    worst = _worst_search_value(spec, records)
    arms = [
        arm_verdict(
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
    set_aside = [
        f"{a.arm}: {sum(s.set_aside for s in a.searches)} searches ran under an older range and "
        "are set aside (shown, not compared)"
        for a in arms
        if any(s.set_aside for s in a.searches)
    ]
    # A time limit, or a verdict read while the study runs, leaves searches without a score.
    unscored = [
        f"{a.arm}: {missing} of {len(a.counted)} searches have no score (cut short by the "
        "time limit, or still running); only the searches both arms finished are compared"
        for a in arms
        if (missing := sum(s.score is None for s in a.counted))
    ]
    return Verdict(
        study=spec.name,
        task=spec.task,
        metric=spec.resolved_metric,
        mode=spec.resolved_mode,
        arms=arms,
        comparisons=_comparisons(spec, arms),
        headline_metric=spec.headline_metric,
        held_out=spec.task_spec.held_out,
        scope="config" if spec.searches_per_arm == 1 else "optimizer",
        budget=budget_text(spec),
        searches_per_arm=spec.searches_per_arm,
        trials_per_search=spec.budget.trials_per_search,
        seeds=list(spec.seeds or ()),
        target=target,
        target_source=target_source,
        rules=list(RULES),
        warnings=[*spec.warnings, *set_aside, *unscored]
        + [f"{a.arm}: {a.edge_note}" for a in arms if a.edge_note],
        provenance=provenance(spec, records),
    )
