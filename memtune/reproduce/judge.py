"""From the studies' results to one line per claim, by a rule written down before any run.

Two stages, so that the line always follows from the numbers written in the report's JSON:

- :func:`measure` reads the study files (and the benchmark) and computes, per check, the
  improvement of the memory optimizer over its reference, its 95% interval and the raw p-value
  (a :class:`~memtune.reproduce.document.CheckRow`);
- :func:`judge_claim` takes those rows (as they stand in ``report.json``), runs Holm across the
  claim's checks and labels each check and the claim by :data:`RULES`. The renderer calls it
  again, so a number changed in the JSON changes the line.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import stats as scipy_stats

from memtune.reproduce.claims import Check
from memtune.reproduce.document import CheckRow, ClaimEntry, Detectable
from memtune.studies import stats
from memtune.studies.numbers import as_number
from memtune.studies.verdict import ArmVerdict, Verdict, decide

__all__ = [
    "JUDGE_SCHEMA",
    "LINES",
    "RULES",
    "detectable_effect",
    "judge_claim",
    "measure",
    "transform",
]

# What a report would say for the same numbers: bump with any change to RULES or to how a
# check is measured or labelled (tests/reproduce/test_report.py holds the committed report to
# it). 2: search-level checks, stability and whole-iteration benchmark checks.
JUDGE_SCHEMA = 2
ALPHA = stats.ALPHA
POWER = 0.8
LINES = ("reproduced", "not reproduced", "mixed", "inconclusive")

RULES = (
    "Every check compares the memory optimizer with one reference on its improvement: "
    "reference minus memory optimizer for a metric to minimize, the other way round to "
    "maximize; on the log of the metric for perplexity and time (a ratio), on 0/1 for an "
    "outcome per run (basin reached, escape, a run that stayed finite). A diverged or failed "
    "run scores the worst value (a loss for its arm; left out of means, and counted).",
    "Optimizer against optimizer (claims 1 and 6): each arm ran K independent searches, each "
    "with its own seed, and each search's best config was re-run on seeds no search trained "
    "with; its score is the mean headline over them. p is the two-sided exact rank-sum p of "
    "the two arms' search scores (the searches both finished); the interval is the "
    "Hodges-Lehmann shift's distribution-free interval (at least 95%). Non-inferiority with "
    "margin m: the memory optimizer's scores moved by m. A soft range edge holding the best "
    "value in more than half of either arm's searches makes the check inconclusive.",
    "Fixed settings (claims 3, 4, 5): paired by random start (claim 3: by learning rate and "
    "seed); p is the two-sided exact signed-rank p (exact McNemar for 0/1 outcomes) and the "
    "interval the 95% t-interval of the mean paired improvement. Benchmark (claim 2): whole "
    "training iterations paired by round, non-inferiority of the time ratio against 1.10.",
    f"Holm across all of a claim's checks (tasks and references together). A check is "
    f"'supported' when its Holm-adjusted p is below {ALPHA} and its interval (plus the "
    "margin) lies above 0; 'contradicted' when the adjusted p is below "
    f"{ALPHA} and that interval lies below 0 (the reference better; for non-inferiority: worse "
    "by more than the margin); otherwise 'inconclusive'.",
    "A claim is 'reproduced' when every check is supported; 'not reproduced' when none is "
    "supported and at least one is contradicted; 'inconclusive' when none is either; 'mixed' "
    "otherwise. No claim is reproduced unless every interval supports it.",
    f"Each claim states the smallest effect its checks could detect: the standardized "
    f"improvement (in standard deviations of the compared values) found with {POWER:.0%} power "
    "by a t-test at Holm's strictest level (alpha / checks), and that effect in each check's "
    "units (times its observed standard deviation).",
)


def transform(value: float, check: Check | CheckRow, mode: str) -> float:
    """One run's value on the scale its check compares, oriented so that larger is better."""
    if check.source == "basin":
        return 1.0 if math.isfinite(value) and value < (check.threshold or 0.0) else 0.0
    if check.scale == "binary":
        return 1.0 if math.isfinite(value) and value > 0.5 else 0.0
    if check.scale == "log":
        if math.isinf(value):
            return -math.inf  # the worst value, whichever way the metric runs
        value = math.log(value) if value > 0 else -math.inf
    if math.isinf(value):
        return -math.inf  # a diverged run is the worst value on the oriented scale
    return value if mode == "max" else -value


def _improvements(pairs: Sequence[tuple[float, float]]) -> list[float]:
    """Memory optimizer minus reference on the oriented scale; both at the worst value: 0."""
    return [0.0 if math.isinf(x) and math.isinf(y) and x == y else x - y for x, y in pairs]


def _row(check: Check, unit: str) -> CheckRow:
    return CheckRow(
        label=check.label,
        study=check.study,
        arm=check.arm,
        reference=check.reference,
        hypothesis=check.hypothesis,
        margin=check.margin,
        scale=check.scale,
        source=check.source,
        threshold=check.threshold,
        unit=unit,
    )


def _verdict_arms(document: Mapping[str, Any] | None, check: Check) -> tuple[Verdict, dict]:
    if document is None or document.get("status") != "completed":
        status = document.get("status") if document else "not run"
        raise LookupError(f"study {check.study} is {status}")
    verdict = Verdict.from_dict(document["verdict"])
    arms = {a.arm: a for a in verdict.arms}
    if check.arm not in arms or check.reference not in arms:
        raise LookupError(f"the study has no arm {check.arm!r} or {check.reference!r}")
    return verdict, arms


def _paired_numbers(row: CheckRow, oriented: list[tuple[float, float]]) -> None:
    """Signed-rank (McNemar for 0/1) p and the t-interval of paired improvements into ``row``."""
    improvements = _improvements(oriented)
    finite = [d for d in improvements if math.isfinite(d)]
    interval = stats.mean_interval(finite) if finite else None
    row.pairs = row.arm_n = row.reference_n = len(oriented)
    row.improvement = interval.mean if interval else None
    row.ci_low = interval.low if interval else None
    row.ci_high = interval.high if interval else None
    row.confidence = 0.95 if interval else None
    row.sd = statistics.stdev(finite) if len(finite) > 1 else None
    if row.scale == "binary" or row.source == "basin":
        mine = [x > 0.5 for x, _ in oriented]
        theirs = [y > 0.5 for _, y in oriented]
        row.p_value = stats.mcnemar_p(mine, theirs) if oriented else None
        row.direction = (sum(mine) > sum(theirs)) - (sum(mine) < sum(theirs))
        row.arm_rate = sum(mine) / len(oriented) if oriented else None
        row.reference_rate = sum(theirs) / len(oriented) if oriented else None
    else:
        shifted = [d + row.margin for d in improvements]
        row.p_value = stats.signed_rank_p(shifted)
        row.direction = stats.signed_rank_direction(shifted)


def _measure_searches(row: CheckRow, check: Check, document: Mapping[str, Any] | None) -> None:
    """Search scores of two arms: the exact rank-sum test and the Hodges-Lehmann shift."""
    verdict, arms = _verdict_arms(document, check)
    mine_arm: ArmVerdict = arms[check.arm]
    their_arm: ArmVerdict = arms[check.reference]
    both = [
        (x.score, y.score)
        for x, y in zip(mine_arm.counted, their_arm.counted, strict=False)
        if x.score is not None and y.score is not None
    ]
    mine = [transform(float(x), check, verdict.mode) for x, _ in both]
    theirs = [transform(float(y), check, verdict.mode) for _, y in both]
    shift = stats.hodges_lehmann(mine, theirs)
    moved = [v + check.margin for v in mine]
    row.arm_n = row.reference_n = row.pairs = len(both)
    row.errored = sorted(
        {seed for a in (mine_arm, their_arm) for s in a.counted for seed in s.seeds_errored}
    )
    row.improvement = shift.estimate if shift else None
    row.ci_low = shift.low if shift else None
    row.ci_high = shift.high if shift else None
    row.confidence = shift.confidence if shift else None
    row.sd = stats.pooled_sd(mine, theirs)
    row.p_value = stats.rank_sum_p(moved, theirs)
    row.direction = stats.rank_sum_direction(moved, theirs)
    raw_mine = [float(x) for x, _ in both if math.isfinite(float(x))]
    raw_theirs = [float(y) for _, y in both if math.isfinite(float(y))]
    row.arm_mean = statistics.fmean(raw_mine) if raw_mine else None
    row.reference_mean = statistics.fmean(raw_theirs) if raw_theirs else None
    row.arm_diverged = sum(not math.isfinite(v) for v in mine)
    row.reference_diverged = sum(not math.isfinite(v) for v in theirs)
    notes = [n for n in (mine_arm.edge_note, their_arm.edge_note) if n]
    row.extra = {
        "trials_per_search": verdict.trials_per_search,
        "seeds_per_search": len(verdict.seeds),
        "edges": notes,
        "scores": [x for x, _ in both],
        "reference_scores": [y for _, y in both],
    }


def _measure_seeds(row: CheckRow, check: Check, document: Mapping[str, Any] | None) -> None:
    """Fixed settings, one search per arm: the headline paired by seed (random start)."""
    verdict, arms = _verdict_arms(document, check)
    mine = {int(k): float(v) for k, v in arms[check.arm].seed_values.items()}
    theirs = {int(k): float(v) for k, v in arms[check.reference].seed_values.items()}
    row.errored = sorted(
        {seed for a in (check.arm, check.reference) for s in arms[a].counted
         for seed in s.seeds_errored}
    )  # fmt: skip
    pairs = [(mine[k], theirs[k]) for k in mine if k in theirs]
    oriented = [
        (transform(x, check, verdict.mode), transform(y, check, verdict.mode)) for x, y in pairs
    ]
    _paired_numbers(row, oriented)
    raw_mine = [x for x, _ in pairs if math.isfinite(x)]
    raw_theirs = [y for _, y in pairs if math.isfinite(y)]
    row.arm_mean = statistics.fmean(raw_mine) if raw_mine else None
    row.reference_mean = statistics.fmean(raw_theirs) if raw_theirs else None
    row.arm_diverged = sum(not math.isfinite(x) for x, _ in pairs)
    row.reference_diverged = sum(not math.isfinite(y) for _, y in pairs)


def stable_runs(
    document: Mapping[str, Any], failure: float | None = None
) -> tuple[dict[str, dict[int, bool]], list[int]]:
    """Per arm, per seed: whether the seed run trained (it did not diverge, and its final
    headline is not above ``failure``, for a metric to minimize); and the seeds whose run
    errored (after its retry: a failure of the machine, not of the optimizer). Only seed runs
    count: the one search trial of a fixed setting is not a sample."""
    headline = document["verdict"].get("headline_metric") or document["verdict"]["metric"]
    runs: dict[str, dict[int, bool]] = {}
    errored = []
    for trial in document["trials"].values():
        if trial["phase"] != "seed":
            continue
        seed = int(trial["seed"])
        if trial["state"] == "error":
            errored.append(seed)
        trained = trial["state"] == "completed"
        if trained and failure is not None:
            final = as_number(trial["epochs"][-1].get(headline)) if trial["epochs"] else None
            trained = final is not None and math.isfinite(final) and final <= failure
        runs.setdefault(trial["arm"], {})[seed] = trained
    return runs, sorted(set(errored))


def _measure_stability(
    row: CheckRow, check: Check, documents: Mapping[str, Mapping[str, Any] | None]
) -> None:
    """A sweep's runs paired by (study, seed): did each train. A pair with a run missing on
    either side makes the check incomplete (never dropped: the runs that go missing are the
    ones that failed)."""
    oriented: list[tuple[float, float]] = []
    missing, errored = [], []
    for name in check.pooled:
        document = documents.get(name)
        if document is None or document.get("status") != "completed":
            missing.append(name)
            continue
        runs, failed = stable_runs(document, check.threshold)
        errored += failed
        mine, theirs = runs.get(check.arm, {}), runs.get(check.reference, {})
        seeds = set(document["spec"].get("seeds") or ()) | set(mine) | set(theirs)
        if any(s not in mine or s not in theirs for s in seeds):
            missing.append(f"{name} (seed runs missing)")
            continue
        oriented += [(float(mine[s]), float(theirs[s])) for s in sorted(seeds)]
    if missing:
        raise LookupError(f"sweep studies not complete: {', '.join(missing)}")
    _paired_numbers(row, oriented)
    row.errored = sorted(set(errored))
    row.arm_diverged = sum(x < 0.5 for x, _ in oriented)  # failed to train, per the threshold
    row.reference_diverged = sum(y < 0.5 for _, y in oriented)


def _measure_bench(row: CheckRow, check: Check, bench: Any) -> None:
    """Whole training iterations, paired by round, on the log of the time."""
    if bench is None:
        raise LookupError("the benchmark did not run")
    workload = check.study.removeprefix("bench-")
    times = bench.iteration.get(workload)
    if not times or check.arm not in times or check.reference not in times:
        raise LookupError(f"the benchmark has no workload {workload!r}")
    pairs = list(zip(times[check.arm], times[check.reference], strict=True))
    oriented = [(-math.log(x), -math.log(y)) for x, y in pairs]
    _paired_numbers(row, oriented)
    row.arm_mean = statistics.fmean(times[check.arm])
    row.reference_mean = statistics.fmean(times[check.reference])
    steps = bench.step[workload]
    row.extra = {
        "iteration_ratio": statistics.median(x / y for x, y in pairs),
        "step_ratio": statistics.median(
            x / y for x, y in zip(steps[check.arm], steps[check.reference], strict=True)
        ),
        "iteration_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "step_ms": {k: 1e3 * statistics.median(v) for k, v in steps.items()},
        "impls": bench.impls.get(workload, {}),
    }


_UNITS = {"searches": "searches", "seeds": "seeds", "basin": "seeds", "stability": "runs",
          "bench": "rounds"}  # fmt: skip


def measure(check: Check, documents: Mapping[str, Any], bench: Any = None) -> CheckRow:
    """The numbers of one check (before Holm): what :func:`judge_claim` reads."""
    row = _row(check, _UNITS[check.source])
    try:
        if check.source == "searches":
            _measure_searches(row, check, documents.get(check.study))
        elif check.source in ("seeds", "basin"):
            _measure_seeds(row, check, documents.get(check.study))
        elif check.source == "stability":
            _measure_stability(row, check, documents)
        else:
            _measure_bench(row, check, bench)
    except LookupError as error:
        row.missing = str(error)
    return row


# --------------------------------------------------------------------------------------------
# Holm, labels, the line
# --------------------------------------------------------------------------------------------


def detectable_effect(
    n: int, comparisons: int, power: float = POWER, *, unit: str = "seeds"
) -> float | None:
    """The smallest standardized difference found with ``power`` by a two-sided t-test at
    level alpha / comparisons: paired over ``n`` pairs (mean / sd of the differences), or
    two samples of ``n`` searches each (difference / pooled sd). None when the exact test
    cannot reach p < alpha after Holm at all."""
    if unit == "searches":  # two samples of n; every other unit is paired
        if n < 2 or stats.min_attainable_rank_sum_p(n, comparisons) >= ALPHA:
            return None
        df, scale = 2 * n - 2, math.sqrt(2 / n)
    else:
        if n < 2 or stats.min_attainable_p(n, comparisons) >= ALPHA:
            return None
        df, scale = n - 1, 1 / math.sqrt(n)
    level = ALPHA / max(comparisons, 1)
    quantiles = scipy_stats.t.ppf(1 - level / 2, df) + scipy_stats.t.ppf(power, df)
    return float(quantiles * scale)


def _min_p(row: CheckRow, k: int) -> float:
    if row.unit == "searches":
        return stats.min_attainable_rank_sum_p(row.arm_n, k, row.reference_n)
    return stats.min_attainable_p(row.pairs, k)


def _check_outcome(row: CheckRow, k: int) -> tuple[str, str | None]:
    if row.missing:
        return "inconclusive", row.missing
    if row.errored:
        return "inconclusive", f"seed runs errored after their retry: {row.errored}"
    if row.extra.get("edges"):
        return "inconclusive", "; ".join(row.extra["edges"])
    interval = None
    if row.improvement is not None:
        interval = (
            None if row.ci_low is None else row.ci_low + row.margin,
            None if row.ci_high is None else row.ci_high + row.margin,
        )
    outcome, reason = decide(
        mode="max",  # improvements: larger is better for the memory optimizer
        p_adjusted=row.p_adjusted,
        direction=row.direction,
        interval=interval,
        min_p=_min_p(row, k),
        scope="optimizer" if row.unit == "searches" else "config",
    )
    if outcome in ("better", "config better"):
        return "supported", None
    if outcome in ("worse", "config worse"):
        return "contradicted", None
    return "inconclusive", reason


def _judge_family(checks: list[CheckRow]) -> None:
    """Holm across ``checks``, and each one's label and smallest detectable effect."""
    k = len(checks)
    adjusted = stats.holm([row.p_value for row in checks])
    for row, p_adjusted in zip(checks, adjusted, strict=True):
        row.p_adjusted = p_adjusted
        row.outcome, row.reason = _check_outcome(row, k)
        n = row.arm_n if row.unit == "searches" else row.pairs
        effect = detectable_effect(n, k, unit=row.unit) if row.sd else None
        row.detectable = effect * row.sd if effect and row.sd else None


def judge_claim(claim: ClaimEntry) -> ClaimEntry:
    """Holm across the claim's checks, a label per check, the claim's line and its reason:
    written into ``claim`` and returned. Its secondary checks form a family of their own and
    do not enter the line."""
    checks = claim.checks
    k = len(checks)
    _judge_family(checks)
    if claim.secondary:
        _judge_family(claim.secondary)
    counts = {
        o: sum(row.outcome == o for row in checks)
        for o in ("supported", "contradicted", "inconclusive")
    }
    if k and counts["supported"] == k:
        line = "reproduced"
    elif counts["supported"] == 0 and counts["contradicted"]:
        line = "not reproduced"
    elif counts["supported"] == 0:
        line = "inconclusive"
    else:
        line = "mixed"
    claim.counts, claim.line = counts, line
    claim.line_reason = (
        f"{counts['supported']} of {k} checks supported, {counts['contradicted']} contradicted, "
        f"{counts['inconclusive']} inconclusive (Holm over the {k}), at {claim.budget}"
    )
    tested = [row for row in checks if not row.missing]
    unit = tested[0].unit if tested else "seeds"
    n = min((row.arm_n if row.unit == "searches" else row.pairs) for row in tested) if tested else 0
    if unit == "searches":
        floor = stats.min_attainable_rank_sum_p(n, k) if n else None
    else:
        floor = stats.min_attainable_p(n, k) if n else None
    claim.detectable = Detectable(
        n=n,
        unit=unit,
        checks=k,
        min_attainable_p=floor,
        standardized=detectable_effect(n, k, unit=unit),
    )
    return claim
