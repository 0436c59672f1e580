"""``report.md``'s text: the Markdown tables and sections of a
:class:`~memtune.reproduce.document.Report`, with the plots drawn beside it.

:func:`render_markdown` writes the whole document from the report alone;
:func:`memtune.reproduce.report.render_report` loads the JSON, judges it again and saves the
result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memtune.reproduce import judge
from memtune.reproduce.document import CheckRow, ClaimEntry, Report
from memtune.studies.numbers import as_number, format_number, format_p

__all__ = ["PLOTS", "render_markdown"]

PLOTS = "plots"  # the plots' folder, beside report.md


def _fmt(value: Any, digits: int = 3) -> str:
    return format_number(value, digits)


def _units(row: CheckRow) -> str:
    if row.scale == "log":
        return "log ratio"
    if row.scale == "binary" or row.source == "basin":
        return "rate"
    return "metric units"


def _ratio_text(row: CheckRow) -> str:
    """A log-scale improvement as the ratio reference / memory optimizer (>1: memory better)."""
    if row.scale != "log" or row.improvement is None:
        return ""
    text = f" (x{math.exp(row.improvement):.3f}"
    if row.ci_low is not None and row.ci_high is not None:
        text += f", {math.exp(row.ci_low):.3f} to {math.exp(row.ci_high):.3f}"
    return text + ")"


def _checks_table(rows: list[CheckRow]) -> list[str]:
    lines = [
        "| check | test | compared | improvement (interval) | p | Holm p | smallest detectable | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.hypothesis == "non_inferior":
            test = f"non-inferior, margin {_fmt(row.margin)} ({_units(row)})"
        else:
            test = f"superior ({_units(row)})"
        if row.improvement is None:
            improvement = "-"
        else:
            interval = "[-]"  # too few values for an interval at 95%
            if row.ci_low is not None and row.ci_high is not None:
                interval = f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}] {row.confidence:.1%}"
            improvement = f"{_fmt(row.improvement)} {interval}" + _ratio_text(row)
        compared = (
            f"{row.arm_n} vs {row.reference_n} searches"
            if row.unit == "searches"
            else f"{row.pairs} {row.unit}"
        )
        if row.arm_diverged or row.reference_diverged:
            compared += f", worst value {row.arm_diverged} / {row.reference_diverged}"
        outcome = f"**{row.outcome}**" + (f": {row.reason}" if row.reason else "")
        lines.append(
            f"| {row.label} | {test} | {compared} | {improvement} | {format_p(row.p_value)} | "
            f"{format_p(row.p_adjusted)} | {_fmt(row.detectable)} | {outcome} |"
        )
    return lines


def _secondary(claim: ClaimEntry) -> list[str]:
    if not claim.secondary:
        return []
    return [
        f"Beside the line, with a Holm family of its own ({len(claim.secondary)} checks), "
        "comparisons the paper does not make:",
        "",
        *_checks_table(claim.secondary),
        "",
    ]


def _config_text(config: Mapping[str, Any] | None) -> str:
    if not config:
        return "-"
    return ", ".join(f"{k}={_fmt(v)}" for k, v in config.items() if k != "run")


def _study_tables(claim: ClaimEntry, report: Report) -> list[str]:
    swept = {name for sweep in claim.sweeps for name in _sweep_studies(claim, sweep.name)}
    lines = []
    for name in claim.studies:
        if name in swept:
            continue
        summary = report.studies[name]
        if summary.status != "completed":
            lines += [f"*{name}*: {summary.status}", ""]
            continue
        options = ", ".join(f"{k}={v}" for k, v in summary.task_options.items())
        lines += [
            f"*{name}* ({summary.task}{': ' + options if options else ''}; {summary.budget}; "
            f"{summary.epochs} epochs; search seed {summary.search_seed}; headline "
            f"{summary.headline_metric}, "
            f"{'held-out test split' if summary.held_out else 'no held-out data'})",
            "",
            "| arm | mean score (95% CI) | search scores | diverged: seed runs, search trials | first search's config | step ms (impl) | state KiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for arm in summary.arms:
            step = arm.step_time_s
            scores = ", ".join(_fmt(s, 4) for s in arm.scores) if len(arm.scores) > 1 else "-"
            lines.append(
                f"| {arm.arm}{' (reference arm)' if arm.baseline else ''} | "
                f"{_fmt(arm.mean, 4)} [{_fmt(arm.ci_low, 4)}, {_fmt(arm.ci_high, 4)}] | {scores} | "
                f"{arm.seeds_diverged}/{arm.seeds}, {arm.search_diverged}/{arm.search_trials} | "
                f"{_config_text(arm.best_config)} | "
                f"{_fmt(step * 1e3 if step is not None else None)} ({arm.step_impl or '-'}) | "
                f"{_fmt(arm.state_bytes / 2**10 if arm.state_bytes is not None else None)} |"
            )
        lines.append("")
        for c in summary.comparisons:
            lines.append(f"- {c.get('statement') or c['arm'] + ' vs ' + c['baseline']}: "
                         f"shift {_fmt(c['difference'])} [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}], "
                         f"p {format_p(as_number(c['p_value']))}, Holm p within the study "
                         f"{format_p(as_number(c['p_adjusted']))}")  # fmt: skip
        for warning in summary.warnings:
            lines.append(f"\n> {warning}")
        lines.append("")
    return lines


def _sweep_studies(claim: ClaimEntry, sweep: str) -> list[str]:
    return [name for name in claim.studies if name.startswith(sweep + "-")]


def _sweep_tables(claim: ClaimEntry) -> list[str]:
    lines: list[str] = []
    for sweep in claim.sweeps:
        lrs = max((len(a.lrs) for a in sweep.arms.values()), default=0)
        counted = "diverged runs" if sweep.failure is None else (
            f"runs that failed to train (diverged, or {sweep.metric} above {sweep.failure:g})"
        )  # fmt: skip
        lines += [
            f"*{sweep.name}* ({sweep.task}; headline {sweep.metric}, mean over the seeds that "
            f"did not diverge [95% t-interval]; {counted} / runs; a learning rate with such a "
            "run is never near-optimal):",
            "",
            "| arm | " + " | ".join(f"lr #{i + 1}" for i in range(lrs))
            + " | best lr | near-optimal lr | width (decades) |",
            "|---|" + "---|" * (lrs + 3),
        ]  # fmt: skip
        for arm, line in sweep.arms.items():
            cells = []
            for i, lr in enumerate(line.lrs):
                band = (
                    f" [{_fmt(line.low[i], 3)}, {_fmt(line.high[i], 3)}]"
                    if line.low[i] is not None
                    else ""
                )
                bad = line.failed[i] if line.failed else line.diverged[i]
                cells.append(f"lr {_fmt(lr)}: {_fmt(line.mean[i], 4)}{band}, {bad}/{line.runs[i]}")
            near = (
                f"{_fmt(line.near_optimal[0])} to {_fmt(line.near_optimal[1])}"
                if line.near_optimal
                else "-"
            )
            if line.near_optimal and {line.near_optimal[0], line.near_optimal[1]} & {
                line.lrs[0],
                line.lrs[-1],
            }:
                near += " (reaches the grid's edge: the width is a lower bound)"
            lines.append(
                f"| {arm} | " + " | ".join(cells)
                + f" | {_fmt(line.best_lr)} | {near} | {_fmt(line.width_decades, 2)} |"
            )  # fmt: skip
        lines.append("")
    return lines


def _rate_tables(claim: ClaimEntry) -> list[str]:
    """Claims 4 and 5: each arm's rate of success (basin reached, escape) with its exact
    interval, and its median final value."""
    plots = claim.plots
    lines: list[str] = []
    if plots.get("basin"):
        lines += [
            "| study | arm | in the global basin (exact 95% CI) | median final value |",
            "|---|---|---|---|",
        ]
        for name, study in plots["basin"].items():
            for arm, rate in study["arms"].items():
                lines.append(
                    f"| {name} | {arm} | {_fmt(rate['rate'])} [{_fmt(rate['low'])}, "
                    f"{_fmt(rate['high'])}] of {rate['n']} | {_fmt(rate['median'], 4)} |"
                )
        lines.append("")
    if plots.get("escape"):
        levels = sorted(plots["escape"], key=float)
        arms = sorted({arm for level in levels for arm in plots["escape"][level]})
        lines += [
            "| arm | " + " | ".join(f"escape rate, s = {float(lv):g}" for lv in levels) + " |",
            "|---|" + "---|" * len(levels),
        ]
        for arm in arms:
            cells = []
            for level in levels:
                rate = plots["escape"][level].get(arm)
                cells.append(
                    f"{_fmt(rate['rate'])} [{_fmt(rate['low'])}, {_fmt(rate['high'])}]"
                    if rate
                    else "-"
                )
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _bench_tables(claim: ClaimEntry, report: Report) -> list[str]:
    bench = report.bench
    if bench is None or not any(row.source == "bench" for row in claim.checks):
        return []
    lines = [
        f"Benchmark: {bench.settings['rounds']} interleaved rounds of "
        f"{bench.settings['steps_per_round']} iterations per optimizer and workload, "
        f"{bench.threads} threads, before any study (1-minute load average "
        f"{_fmt(bench.load_before, 2)}); medians:",
        "",
        "| workload (parameters) | memory optimizer [impl] / reference [impl] | iteration ms | iteration ratio | step() ms | step() ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in claim.checks:
        if row.source != "bench" or not row.extra:
            continue
        workload = row.study.removeprefix("bench-")
        impls, it, st = row.extra["impls"], row.extra["iteration_ms"], row.extra["step_ms"]
        lines.append(
            f"| {workload} ({bench.parameters.get(workload, 0):,}) | {row.arm} "
            f"[{impls.get(row.arm)}] / {row.reference} [{impls.get(row.reference)}] | "
            f"{it[row.arm]:.3f} / {it[row.reference]:.3f} | {row.extra['iteration_ratio']:.3f} | "
            f"{st[row.arm]:.3f} / {st[row.reference]:.3f} | {row.extra['step_ratio']:.3f} |"
        )
    lines.append("")
    if claim.time_to_result:
        lines += [
            "Time to result: gradient evaluations to the task's target (median over claim 1's "
            "seed runs; the target is the performance profile's) times the iteration time "
            "above (inf: at least half the runs never reached it):",
            "",
            "| task | arm | evaluations | iteration ms | seconds | memory / reference |",
            "|---|---|---|---|---|---|",
        ]
        for r in claim.time_to_result:
            lines.append(
                f"| {r.study} | {r.arm} | {_fmt(r.evaluations)} | "
                f"{_fmt(r.iteration_s * 1e3 if r.iteration_s is not None else None)} | "
                f"{_fmt(r.seconds)} | {_fmt(r.ratio)} |"
            )
        lines.append("")
    return lines


def _provenance(report: Report) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items() if v)
    minutes = report.study_seconds / 60
    commits: dict[str, list[str]] = {}
    for name, summary in report.studies.items():
        if summary.commit:
            commits.setdefault(summary.commit[:10], []).append(name)
    ran_at = ""
    if len(commits) > 1:  # a resumed reproduction: say which studies ran at which commit
        ran_at = " The studies ran at several commits: " + "; ".join(
            f"`{commit}`: {len(names)} studies" for commit, names in commits.items()
        ) + "."  # fmt: skip
    return [
        f"- Made by `{report.command}` ({report.mode} mode) on {report.generated}, "
        f"commit `{report.commit or 'unknown'}`; report schema {report.report_schema}, "
        f"verdict schema {report.verdict_schema}, judge schema {report.judge_schema}, claims "
        f"version {report.claims_version}.",
        f"- Ran on {', '.join(report.devices)} ({report.machine['cpus']} CPU cores, "
        f"{report.machine['platform']}), {report.ray}; the studies took {minutes:.1f} minutes "
        f"of wall time, the benchmark {report.bench_seconds or 0:.0f} s." + ran_at,
        f"- Versions: {versions}.",
        *(f"- {note}" for note in report.mode_notes),
    ]


def _summary_table(report: Report) -> list[str]:
    lines = ["| claim | paper | line | checks |", "|---|---|---|---|"]
    for claim in report.claims:
        paper = "AM" if "2510.04988" in claim.paper else "CM"
        lines.append(
            f"| {claim.number}. {claim.title} | {paper} | **{claim.line}** | {claim.line_reason} |"
        )
    return lines


# The t-test's detectable effect overstates an exact rank test's power at few searches:
# simulated with normal scores, 2,000 draws each, at Holm's strictest level.
_EXACT_POWER = {
    "searches": "A t-test's figure: the exact rank-sum test used here is discrete, and its power "
    "at this effect is lower (simulated for normal scores at Holm's strictest level: 66% at 7 "
    "against 7 searches over 16 checks, 66% over 8).",
}


def _power_text(claim: ClaimEntry) -> str:
    d = claim.detectable
    if d.standardized is not None:
        return (
            f"With {d.n} {d.unit} per arm and {d.checks} checks under Holm, the smallest effect "
            f"detected with {judge.POWER:.0%} power is about {d.standardized:.2f} standard "
            "deviations of the compared values (per check, in its units: 'smallest detectable'). "
            + _EXACT_POWER.get(d.unit, "A t-test's figure: the exact tests used here are "
            "discrete and have somewhat less power.")
        )  # fmt: skip
    if d.n:
        return (
            f"With {d.n} {d.unit} and {d.checks} checks no effect can reach p < {judge.ALPHA} "
            f"after Holm (smallest attainable p {d.min_attainable_p:.3g})."
        )
    return "No run was available to test this claim."


def _profile_section(report: Report, plot_dir: Path) -> list[str]:
    from memtune.reproduce import plots

    if not report.profiles:
        return []
    lines = [
        "## Performance profiles",
        "",
        "Per family of optimizers, every profiled arm on every workload (a task of the claim's "
        "searched studies; sharp_flat and the toy landscapes are left out). A workload's target "
        "is fixed by the search trials alone, before any seed run, and belongs to no arm: the "
        "validation value that three quarters of all searches' selected trials reached (every "
        "arm). An arm's cost is the median over its seed runs (every search) of the cost at "
        "the end of the epoch that first met the target, in gradient evaluations and in "
        "seconds of training (two trials ran at a time); infinite when at least half the runs never met it. The curve is the fraction of workloads "
        "whose cost is within tau x the cheapest arm's, tau from 1 to 4.",
        "",
    ]
    for name, caption in plots.draw_profiles(report.profiles, plot_dir):
        lines += [f"![{caption}]({PLOTS}/{name})", ""]
    for profile in report.profiles:
        workloads = list(profile.workloads)
        lines += [
            f"*{profile.name}, in {profile.unit}* (targets: "
            + ", ".join(f"{w} {profile.metric[w]} {_fmt(t, 4)}" for w, t in profile.workloads.items())
            + ")",
            "",
            "| arm | " + " | ".join(workloads) + " |",
            "|---|" + "---|" * len(workloads),
        ]  # fmt: skip
        for arm, line in profile.arms.items():
            cells = [f"{_fmt(line.costs[w])} ({_fmt(line.ratios[w])}x)" for w in workloads]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _limits() -> list[str]:
    return [
        "## What these numbers do not show",
        "",
        "- **The budget.** An optimizer-against-optimizer line holds for the optimizers as "
        "tuned by searches of the stated number of trials; a larger search can change it. "
        "The searches' luck is inside the intervals (each arm's K searches differ in it), the "
        "seeds' too (each search re-runs on its own seeds).",
        "- **Scale.** The studies are small versions of the papers' settings; a claim about "
        "large models is not tested by them. The full mode (`--full`) is sized for a GPU "
        "cluster.",
        "- **Costs.** The benchmark runs alone, before the studies; the studies' own step "
        "times and seconds to target come from trials run two at a time on a shared machine.",
        "",
    ]


def render_markdown(report: Report, plot_dir: Path) -> str:
    """``report.md``'s text from ``report`` (judged), drawing its plots into ``plot_dir``."""
    from memtune.reproduce import plots

    lines = [
        f"# memtune reproduction report ({report.mode} mode)",
        "",
        "How the claims of two memory-optimizer papers hold up under memtune's fair, tuned, "
        "multi-search comparison. Neither paper's result tables could be obtained: each claim "
        "is compared with what the paper states, not with its numbers.",
        "",
        "- Adaptive memory momentum (AM-SGD, AM-AdamW): Topollai & Choromanska, arXiv 2510.04988.",
        "- Critical momenta (Adam+CM): Malviya et al., TMLR 2024.",
        "",
        *_provenance(report),
        "",
        "## Verdicts",
        "",
        *_summary_table(report),
        "",
        "## How a line follows from the numbers",
        "",
        *(f"{i}. {rule}" for i, rule in enumerate(report.rules, 1)),
        "",
        "Every searched study follows memtune's verdict rules besides: configs selected on "
        "validation data by an equal search budget per arm, reported on the held-out test "
        "split where the task has one, re-run on seeds no search saw; each study searches "
        "with its own search seed.",
        "",
    ]
    for claim in report.claims:
        number = claim.number
        figures = plots.draw_claim(claim, plot_dir)
        lines += [
            f"## Claim {number}: {claim.title}",
            "",
            f"> {claim.statement} ({claim.paper})",
            "",
            f"**Line: {claim.line}.** {claim.line_reason}.",
            "",
            f"How memtune tests it: {claim.design}",
            "",
            _power_text(claim),
            "",
            *_checks_table(claim.checks),
            "",
            *_secondary(claim),
            *_bench_tables(claim, report),
            *_sweep_tables(claim),
            *_rate_tables(claim),
            *(f"![{caption}]({PLOTS}/{name})\n" for name, caption in figures),
            "<details><summary>The studies' own verdicts</summary>",
            "",
            *_study_tables(claim, report),
            "</details>",
            "",
        ]
    lines += _profile_section(report, plot_dir)
    lines += _limits()
    return "\n".join(lines)
