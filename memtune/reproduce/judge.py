"""From the studies' results to one line per claim, by a rule written down before any run.

Two stages, so that the line always follows from the numbers written in the report's JSON:

- :func:`measure` reads the study files (and the step benchmark) and computes, per check, the
  paired improvements of the memory optimizer over its reference, their mean and 95%
  t-interval, and the raw p-value;
- :func:`judge_claim` takes those numbers (as they stand in ``report.json``), runs Holm across
  the claim's checks and labels each check and the claim by :data:`RULES`. The renderer calls
  it again, so a number changed in the JSON changes the line.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import stats as scipy_stats

from memtune.reproduce.claims import Check, Claim
from memtune.studies import stats
from memtune.studies.verdict import Verdict, decide

__all__ = [
    "LINES",
    "RULES",
    "claim_numbers",
    "detectable_effect",
    "judge_claim",
    "measure",
    "transform",
]

ALPHA = stats.ALPHA
POWER = 0.8
LINES = ("reproduced", "not reproduced", "mixed", "inconclusive")

RULES = (
    "Every check pairs the memory optimizer with one reference, seed by seed (benchmark: round "
    "by round), on the improvement of the memory optimizer: reference minus memory optimizer "
    "for a metric to minimize, the other way round to maximize; on the log of the metric for "
    "perplexity and time (a ratio), on 0/1 for an outcome per run (basin reached, escape). A "
    "diverged run scores the worst value (a loss for its arm in the rank test; left out of "
    "the mean, and counted).",
    "Superiority: p is the two-sided exact signed-rank p of the improvements (exact McNemar "
    "for 0/1 outcomes). Non-inferiority with margin m: the same test on the improvements "
    "plus m, i.e. against 'worse by m', two-sided (one-sided at 2.5%).",
    f"Holm across all of a claim's checks (tasks and references together). A check is "
    f"'supported' when its Holm-adjusted p is below {ALPHA} and the 95% t-interval of the "
    "mean improvement (plus the margin) lies above 0; 'contradicted' when the adjusted p is "
    f"below {ALPHA} and that interval lies below 0 (the reference better; for "
    "non-inferiority: worse by more than the margin); otherwise 'inconclusive'.",
    "A claim is 'reproduced' when every check is supported; 'not reproduced' when none is "
    "supported and at least one is contradicted; 'inconclusive' when none is either; "
    "'mixed' otherwise. No claim is reproduced unless every interval supports it.",
    f"Each claim states the smallest effect its seeds could detect: the standardized mean "
    f"improvement (in standard deviations of the paired improvements) found with "
    f"{POWER:.0%} power by a t-test at Holm's strictest level (alpha / checks), and that effect "
    "in each check's units (times its observed standard deviation).",
)

# --------------------------------------------------------------------------------------------
# Numbers per check
# --------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A float from a JSON value (memtune writes non-finite numbers as "inf", "-inf", "nan")."""
    if value is None or isinstance(value, bool):
        return None
    return float(value)


def transform(value: float, check: Check, mode: str) -> float:
    """One run's value on the scale its check compares, oriented so that larger is better."""
    if check.source == "basin":
        return 1.0 if math.isfinite(value) and value < check.threshold else 0.0
    if check.scale == "binary":
        return 1.0 if math.isfinite(value) and value > 0.5 else 0.0
    if check.scale == "log":
        value = math.log(value) if value > 0 else -math.inf
    return value if mode == "max" else -value


def _paired(a: Mapping[Any, float], b: Mapping[Any, float]) -> list[tuple[float, float]]:
    keys = [k for k in a if k in b]
    return [(a[k], b[k]) for k in keys]


def _improvements(pairs: Sequence[tuple[float, float]]) -> list[float]:
    """Memory optimizer minus reference on the oriented scale; both at the worst value: 0."""
    out = []
    for x, y in pairs:
        out.append(0.0 if math.isinf(x) and math.isinf(y) and x == y else x - y)
    return out


def _per_seed(document: Mapping[str, Any], check: Check) -> tuple[dict, dict, str, list[int]]:
    """(memory optimizer's values by seed, the reference's, the headline's mode, errored seeds)
    of one study, on the check's source."""
    verdict = Verdict.from_dict(document["verdict"])
    arms = {a.arm: a for a in verdict.arms}
    if check.arm not in arms or check.reference not in arms:
        raise LookupError(f"the study has no arm {check.arm!r} or {check.reference!r}")
    errored = sorted(
        {seed for arm in (check.arm, check.reference) for s in arms[arm].counted
         for seed in s.seeds_errored}
    )  # fmt: skip
    if check.source == "step_time":
        values: dict[str, dict[int, float]] = {check.arm: {}, check.reference: {}}
        for trial in document["trials"].values():
            if trial["phase"] == "seed" and trial["arm"] in values and trial["epochs"]:
                times = [_number(e.get("mean_step_time_s")) for e in trial["epochs"]]
                finite = [t for t in times if t is not None and math.isfinite(t)]
                if finite:
                    values[trial["arm"]][trial["seed"]] = statistics.fmean(finite)
        return values[check.arm], values[check.reference], "min", errored
    return (
        {int(k): float(v) for k, v in arms[check.arm].seed_values.items()},
        {int(k): float(v) for k, v in arms[check.reference].seed_values.items()},
        verdict.mode,
        errored,
    )


def _bench_pairs(bench: Mapping[str, Any], check: Check) -> tuple[dict, dict]:
    times = bench["times"]
    return dict(enumerate(times[check.arm])), dict(enumerate(times[check.reference]))


def measure(check: Check, documents: Mapping[str, Any], bench: Mapping[str, Any] | None) -> dict:
    """The numbers of one check (before Holm): what :func:`judge_claim` reads."""
    row: dict[str, Any] = {
        "label": check.label,
        "study": check.study,
        "arm": check.arm,
        "reference": check.reference,
        "hypothesis": check.hypothesis,
        "margin": check.margin,
        "scale": check.scale,
        "source": check.source,
        "threshold": check.threshold,
        "pairs": 0,
        "finite_pairs": 0,
        "improvement": None,
        "ci_low": None,
        "ci_high": None,
        "sd": None,
        "p_value": None,
        "direction": 0,
        "errored": [],
        "missing": None,
    }
    try:
        if check.source == "bench":
            if bench is None:
                raise LookupError("the step benchmark did not run")
            mine, theirs, mode, errored = (*_bench_pairs(bench, check), "min", [])
        else:
            document = documents.get(check.study)
            if document is None or document.get("status") != "completed":
                status = document.get("status") if document else "not run"
                raise LookupError(f"study {check.study} is {status}")
            mine, theirs, mode, errored = _per_seed(document, check)
    except LookupError as error:
        row["missing"] = str(error)
        return row
    pairs = _paired(mine, theirs)
    oriented = [(transform(x, check, mode), transform(y, check, mode)) for x, y in pairs]
    improvements = _improvements(oriented)
    finite = [d for d in improvements if math.isfinite(d)]
    interval = stats.mean_interval(finite) if finite else None
    raw_mine = [x for x, _ in pairs if math.isfinite(x)]
    raw_theirs = [y for _, y in pairs if math.isfinite(y)]
    row.update(
        mode=mode,
        pairs=len(pairs),
        finite_pairs=len(finite),
        improvement=interval.mean if interval else None,
        ci_low=interval.low if interval else None,
        ci_high=interval.high if interval else None,
        sd=statistics.stdev(finite) if len(finite) > 1 else None,
        errored=errored,
        arm_mean=statistics.fmean(raw_mine) if raw_mine else None,
        reference_mean=statistics.fmean(raw_theirs) if raw_theirs else None,
        arm_diverged=sum(not math.isfinite(x) for x, _ in pairs),
        reference_diverged=sum(not math.isfinite(y) for _, y in pairs),
    )
    if check.scale == "binary":
        wins_mine = [x > 0.5 for x, _ in oriented]
        wins_theirs = [y > 0.5 for _, y in oriented]
        row.update(
            p_value=stats.mcnemar_p(wins_mine, wins_theirs) if pairs else None,
            direction=int(math.copysign(1, sum(wins_mine) - sum(wins_theirs)))
            if sum(wins_mine) != sum(wins_theirs)
            else 0,
            arm_rate=sum(wins_mine) / len(pairs) if pairs else None,
            reference_rate=sum(wins_theirs) / len(pairs) if pairs else None,
        )
    else:
        shifted = [d + check.margin for d in improvements]
        row.update(
            p_value=stats.signed_rank_p(shifted),
            direction=stats.signed_rank_direction(shifted),
        )
    return row


# --------------------------------------------------------------------------------------------
# Holm, labels, the line
# --------------------------------------------------------------------------------------------


def detectable_effect(seeds: int, comparisons: int, power: float = POWER) -> float | None:
    """The smallest standardized mean difference (mean / sd of the paired differences) that a
    two-sided t-test at level alpha / comparisons finds with ``power`` on ``seeds`` pairs;
    None when these seeds cannot reach p < alpha after Holm at all."""
    if seeds < 2 or stats.min_attainable_p(seeds, comparisons) >= ALPHA:
        return None
    level = ALPHA / max(comparisons, 1)
    df = seeds - 1
    quantiles = scipy_stats.t.ppf(1 - level / 2, df) + scipy_stats.t.ppf(power, df)
    return float(quantiles / math.sqrt(seeds))


def _check_outcome(
    row: Mapping[str, Any], p_adjusted: float | None, k: int
) -> tuple[str, str | None]:
    if row.get("missing"):
        return "inconclusive", row["missing"]
    if row.get("errored"):
        return "inconclusive", f"seed runs errored after their retry: {row['errored']}"
    margin = row.get("margin") or 0.0
    low, high = row.get("ci_low"), row.get("ci_high")
    interval = None
    if row.get("improvement") is not None:
        interval = (
            None if low is None else low + margin,
            None if high is None else high + margin,
        )
    outcome, reason = decide(
        mode="max",  # improvements: larger is better for the memory optimizer
        p_adjusted=p_adjusted,
        direction=int(row.get("direction") or 0),
        interval=interval,
        min_p=stats.min_attainable_p(int(row.get("pairs") or 0), k),
    )
    if outcome == "better":
        return "supported", None
    if outcome == "worse":
        return "contradicted", None
    return "inconclusive", reason


def judge_claim(claim: dict[str, Any]) -> dict[str, Any]:
    """Holm across the claim's checks, a label per check, the claim's line and its reason:
    written into ``claim`` (a claim of ``report.json``) and returned."""
    checks = claim["checks"]
    k = len(checks)
    adjusted = stats.holm([_number(c.get("p_value")) for c in checks])
    for row, p_adjusted in zip(checks, adjusted, strict=True):
        row["p_adjusted"] = p_adjusted
        row["outcome"], row["reason"] = _check_outcome(row, p_adjusted, k)
        if row.get("sd") and (effect := detectable_effect(int(row.get("pairs") or 0), k)):
            row["detectable"] = effect * float(row["sd"])
        else:
            row["detectable"] = None
    counts = {
        o: sum(c["outcome"] == o for c in checks)
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
    claim["counts"] = counts
    claim["line"] = line
    claim["line_reason"] = (
        f"{counts['supported']} of {k} checks supported, {counts['contradicted']} contradicted, "
        f"{counts['inconclusive']} inconclusive (Holm over the {k})"
    )
    seeds = [
        int(c.get("pairs") or 0)
        for c in checks
        if not c.get("missing") and c.get("source") != "bench"
    ]
    n = min(seeds) if seeds else 0
    effect = detectable_effect(n, k)
    claim["detectable"] = {
        "seeds": n,
        "checks": k,
        "min_attainable_p": stats.min_attainable_p(n, k) if n else None,
        "standardized": effect,
    }
    return claim


def claim_numbers(
    claim: Claim, documents: Mapping[str, Any], bench: Mapping[str, Any] | None
) -> dict:
    """A claim's entry of ``report.json``: its texts, its checks measured and judged."""
    entry = {
        "number": claim.number,
        "title": claim.title,
        "statement": claim.statement,
        "paper": claim.paper,
        "design": claim.design,
        "studies": [spec.name for spec in claim.studies],
        "checks": [measure(check, documents, bench) for check in claim.checks],
    }
    return judge_claim(entry)
