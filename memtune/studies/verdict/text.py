"""The verdict as plain text, for the command line: the numbers, the labels, what they hold
for, and the rules that made them."""

from __future__ import annotations

import statistics

from memtune.studies.numbers import format_number as _fmt
from memtune.studies.verdict.types import ArmVerdict, Verdict

__all__ = ["format_verdict"]


def _interval(low: float | None, high: float | None) -> str:
    return f"[{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else "-"


def _scores(arm: ArmVerdict) -> str:
    """The arm's search scores, sorted (the points its interval summarizes)."""
    scores = sorted(arm.scores)
    return " ".join(_fmt(s, 3) for s in scores) if scores else "-"


def _chosen(arm: ArmVerdict) -> str:
    """What the arm's searches chose, per hyperparameter: its median and range."""
    configs = [s.config for s in arm.counted if s.config]
    if not configs:
        return arm.note or "no converging config"
    if len(configs) == 1:
        return ", ".join(
            f"{k}={_fmt(v, 3) if isinstance(v, float) else v}" for k, v in configs[0].items()
        )
    parts = []
    for name in configs[0]:
        values = [c[name] for c in configs if isinstance(c.get(name), int | float)]
        if not values:
            continue
        parts.append(
            f"{name} {_fmt(statistics.median(values), 3)} ({_fmt(min(values), 3)}.."
            f"{_fmt(max(values), 3)})"
        )
    return ", ".join(parts)


def format_verdict(verdict: Verdict) -> str:
    direction = "higher" if verdict.mode == "max" else "lower"
    headline = verdict.headline_metric or verdict.metric
    split = "test split" if verdict.held_out else "no held-out data"
    over = "searches" if verdict.scope == "optimizer" else "seeds of its one search"
    lines = [
        f"Study {verdict.study!r} on {verdict.task}: {headline} ({direction} is better; "
        f"{split}), configs selected on {verdict.metric}",
        f"Budget: {verdict.budget or '-'}; seeds {verdict.seeds or '-'}"
        + (" (search r of every arm: + r x 100,000)" if verdict.scope == "optimizer" else ""),
        "",
        f"{'arm':14s} {'mean':>9s} {'95% CI over ' + over:>28s} {'div':>3s} {'err':>3s} "
        f"{'to target':>9s} {'evals':>8s} {'step ms':>8s} {'impl':>7s} {'grad/step':>9s} "
        f"{'state MB':>8s}  search scores, sorted",
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
        name = arm.arm + (" *" if arm.baseline else "")
        lines.append(
            f"{name:14s} {_fmt(arm.mean):>9s} {_interval(arm.ci_low, arm.ci_high):>28s} "
            f"{arm.seeds_diverged:>3d} {arm.seeds_errored:>3d} "
            f"{to_target:>9s} {_fmt(arm.time_to_target_evaluations, 3):>8s} {step:>8s} "
            f"{arm.step_impl or '-':>7s} {_fmt(arm.gradient_evaluations_per_step, 2):>9s} "
            f"{state:>8s}  {_scores(arm)}"
        )
    lost = [f"{arm.arm} {arm.node_losses}" for arm in verdict.arms if arm.node_losses]
    if lost:
        lines.append(
            f"\nnode losses (trials resumed from their checkpoints after their Ray node died; "
            f"not failures): {', '.join(lost)}"
        )
    if verdict.target is not None:
        lines.append(
            f"\ntarget {verdict.metric} {_fmt(verdict.target)} ({verdict.target_source}); "
            "time in seconds of training and in gradient evaluations, median over seed runs"
        )
    if verdict.comparisons:
        first = verdict.comparisons[0]
        what = (
            "over search scores: exact rank-sum p, Hodges-Lehmann shift with its 95% interval"
            if first.scope == "optimizer"
            else "paired by seed (config vs config: search not replicated)"
        )
        lines += [
            "",
            f"Against the baseline ({first.baseline}, marked *), {what}; p adjusted by Holm "
            f"over {len(verdict.comparisons)} comparison(s), the smallest it can reach "
            f"{_fmt(first.min_attainable_p, 3)}:",
        ]
        for c in verdict.comparisons:
            lines.append(
                f"  {c.arm:14s} diff {_fmt(c.difference):>9s} "
                f"95% CI {_interval(c.ci_low, c.ci_high):>21s} "
                f"({_fmt(c.relative_difference_pct, 3)}%, d={_fmt(c.standardized_difference, 3)}) "
                f"p {_fmt(c.p_value, 3)}, Holm {_fmt(c.p_adjusted, 3)} -> {c.outcome}"
            )
            lines.append(f"  {'':14s} {c.statement or ''}")
            if c.reason:
                lines.append(f"  {'':14s} ({c.reason})")
    lines += ["", "Searched ranges (edges: hard or soft) and what the searches chose:"]
    for arm in verdict.arms:
        ranges = ", ".join(
            f"{r['name']} {r['choices']}"
            if "choices" in r
            else f"{r['name']} [{r['low']:g}, {r['high']:g}]{' log' if r['log'] else ''}"
            + (f" ({'/'.join(r['edges'])})" if r.get("edges") else "")
            for r in arm.searched
        )
        curve = (
            f"{_fmt(arm.tuning_curve[0])} / {_fmt(arm.tuning_curve[-1])}"
            if arm.tuning_curve
            else "-"
        )
        lines.append(f"  {arm.arm:14s} {ranges or 'nothing searched'}")
        lines.append(f"  {'':14s} chose {_chosen(arm)}; expected best after 1 / all trials {curve}")
        aside = sum(s.set_aside for s in arm.searches)
        if aside:
            lines.append(f"  {'':14s} {aside} searches under an older range set aside")
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
