"""What a verdict holds, and how verdicts stored by earlier versions are read.

Plain dataclasses (the API's response model and the client's return type): a
:class:`Verdict` has one :class:`ArmVerdict` per arm, each with its :class:`SearchScore` per
search, and one :class:`Comparison` per arm compared with the baseline. Stored verdicts keep
their ``schema_version``; :meth:`Verdict.from_dict` upgrades them without recomputing anything,
and a verdict made before searches were replicated says so in its labels ("config better").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import TypeAdapter

from memtune.studies import stats
from memtune.studies.nonfinite import Number

__all__ = [
    "SCHEMA_VERSION",
    "ArmVerdict",
    "Comparison",
    "Outcome",
    "Scope",
    "SearchScore",
    "Verdict",
]

# 3: K searches per arm, compared over their scores ("optimizer" scope); "config" labels for one
# search per arm. 2: held-out splits and Holm. 1: the first verdicts.
SCHEMA_VERSION = 3
ALPHA = stats.ALPHA

Outcome = Literal[
    "better",  # the optimizer, as tuned by the study's searches
    "worse",
    "config better",  # one search per arm: the config it found, not the optimizer
    "config worse",
    "no clear difference",
    "inconclusive",  # a best value at a soft range edge in most searches
    "underpowered",  # the budget cannot reach p < alpha after Holm
    "incomplete",  # nothing to compare yet (schema 2: a seed run errored)
]
# What a comparison is about: the optimizers (each arm's search replicated K >= 2 times) or the
# configs one search per arm happened to find.
Scope = Literal["optimizer", "config"]


@dataclass
class SearchScore:
    """One search of an arm: what it found and how its config did on the study's seeds."""

    index: int  # the search's number within its arm (the records' ``repeat``)
    seed: int | None = None  # the seed its trials trained with (and its sampler's)
    config: dict[str, Any] | None = None  # its best config; None: nothing converged
    seed_values: dict[int, Number] = field(default_factory=dict)  # headline; worst if diverged
    score: Number | None = None  # mean over seeds; the worst value if one diverged or failed
    trials: int = 0
    trials_diverged: int = 0
    seeds_diverged: int = 0
    seeds_errored: list[int] = field(default_factory=list)  # counted as the worst value
    best_validation: Number | None = None  # the selected trial's value (what it chose on)
    edges: list[str] = field(default_factory=list)  # "lam at 0.83, upper edge of [0.01, 1]"
    set_aside: bool = False  # ran under an older range of its arm: not in the verdict
    note: str | None = None


@dataclass
class ArmVerdict:
    arm: str
    optimizer: str
    baseline: bool
    searches: list[SearchScore] = field(default_factory=list)  # set-aside ones included
    searched: list[dict[str, Any]] = field(default_factory=list)  # name, range, edges of each
    edge_note: str | None = None  # a soft edge in more than half the searches: inconclusive
    search_trials: int = 0
    search_diverged: int = 0
    seeds_diverged: int = 0  # seed runs, over every search
    seeds_errored: int = 0
    node_losses: int = 0  # restarts of its trials after their Ray node died (not failures)
    mean: Number | None = None  # of the finite search scores; a 0/1 metric: the rate
    ci_low: Number | None = None  # t-interval over searches (with one search: over seeds)
    ci_high: Number | None = None
    validation_mean: Number | None = None  # the selection metric, the same runs
    time_to_target_s: Number | None = None  # median over every seed run; None when most missed
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
    note: str | None = None

    @property
    def counted(self) -> list[SearchScore]:
        """The searches the verdict compares (not those set aside)."""
        return [s for s in self.searches if not s.set_aside]

    @property
    def scores(self) -> list[float]:
        """The counted searches' scores (the worst value for a search that diverged)."""
        return [float(s.score) for s in self.counted if s.score is not None]

    @property
    def seed_values(self) -> dict[int, Number]:
        """The first counted search's values by seed: with one search per arm, every re-run."""
        first = self.counted[0] if self.counted else None
        return dict(first.seed_values) if first else {}


@dataclass
class Comparison:
    arm: str
    baseline: str
    scope: Scope = "optimizer"
    test: str = "exact rank-sum over search scores"
    searches: int = 0  # the arm's scored searches (scope "config": 1)
    baseline_searches: int = 0
    pairs: int = 0  # scope "config": seeds where both runs ended (diverged ones included)
    finite_pairs: int = 0
    # arm - baseline in metric units: the Hodges-Lehmann shift of the search scores (scope
    # "optimizer"), or the mean paired difference over finite seeds (scope "config")
    difference: Number | None = None
    ci_low: Number | None = None  # its 95% interval (distribution-free, or Student-t)
    ci_high: Number | None = None
    relative_difference_pct: Number | None = None  # of the baseline's median (mean) score
    standardized_difference: Number | None = None  # the difference / the scores' pooled sd
    p_value: Number | None = None
    p_adjusted: Number | None = None  # Holm over the arms compared with the baseline
    min_attainable_p: Number | None = None
    outcome: Outcome = "no clear difference"
    reason: str | None = None
    statement: str | None = None  # the outcome as a sentence that says what it holds for


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
    scope: Scope = "optimizer"
    budget: str | None = None  # "6 searches of 3 trials per arm, each config re-run on 2 seeds"
    searches_per_arm: int = 1
    trials_per_search: int = 0
    seeds: list[int] = field(default_factory=list)  # the re-run seeds of every search
    target: Number | None = None
    target_source: str | None = None
    alpha: float = ALPHA
    rules: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """The inverse of ``to_dict``, also after JSON (memtune.studies.nonfinite) wrote
        non-finite numbers as strings, and for verdicts stored by earlier versions."""
        version = data.get("schema_version", 1)
        if version < 2:
            data = _upgrade_v1(data)
        if version < 3:
            data = _upgrade_v2(data)
        return _VERDICT.validate_python(dict(data))


def _upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """Schema 1 (before held-out splits and Holm) into schema 2's fields, its labels kept as
    reasons: nothing is recomputed."""
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
        "arms": list(data.get("arms", [])),
        "comparisons": comparisons,
        "rules": ["schema 1: validation metric of the seed re-runs, no multiplicity correction"],
        "schema_version": 1,
    }


_V2_CONFIG_RULE = (
    "Made before searches were replicated (schema {version}): each arm ran one search, and its "
    "one config was re-run on seeds, so a label compares those configs, not the optimizers "
    "(config vs config: search not replicated)."
)


def _upgrade_v2(data: Mapping[str, Any]) -> dict[str, Any]:
    """Schema 1-2 (one config per arm, compared over seeds) into schema 3's fields: the config
    becomes the arm's one search, and a "better" / "worse" is served as "config better" /
    "config worse", scope "config". Nothing is recomputed."""
    keep_arm = set(ArmVerdict.__dataclass_fields__)
    arms = []
    for arm in data.get("arms", []):
        values = arm.get("seed_values") or {}
        search = {
            "index": 0,
            "config": arm.get("best_config"),
            "seed_values": values,
            "score": arm.get("mean"),
            "trials": arm.get("search_trials", 0),
            "trials_diverged": arm.get("search_diverged", 0),
            "seeds_diverged": arm.get("seeds_diverged", 0),
            "seeds_errored": list(arm.get("seeds_errored") or []),
        }
        upgraded = {k: v for k, v in arm.items() if k in keep_arm and k != "seeds_errored"}
        upgraded["seeds_errored"] = len(arm.get("seeds_errored") or [])
        upgraded["searches"] = [search] if values or arm.get("best_config") else []
        arms.append(upgraded)
    keep = set(Comparison.__dataclass_fields__)
    comparisons = []
    for c in data.get("comparisons", []):
        upgraded = {k: v for k, v in c.items() if k in keep}
        upgraded["difference"] = c.get("mean_difference")
        upgraded["scope"] = "config"
        upgraded["test"] = c.get("test") or "signed-rank"
        upgraded["searches"] = upgraded["baseline_searches"] = 1
        if c.get("outcome") in ("better", "worse"):
            upgraded["outcome"] = f"config {c['outcome']}"
        upgraded["statement"] = (
            f"{c['arm']}'s config against {c['baseline']}'s "
            "(config vs config: search not replicated)"
        )
        comparisons.append(upgraded)
    version = data.get("schema_version", 1)
    rules = [_V2_CONFIG_RULE.format(version=version), *data.get("rules", [])]
    keep_verdict = set(Verdict.__dataclass_fields__)
    upgraded_verdict = {k: v for k, v in data.items() if k in keep_verdict}
    return {
        **upgraded_verdict,
        "arms": arms,
        "comparisons": comparisons,
        "scope": "config",
        "searches_per_arm": 1,
        "budget": "one search per arm (made before searches were replicated)",
        "rules": rules,
        "schema_version": version,
    }


_VERDICT = TypeAdapter(Verdict)
