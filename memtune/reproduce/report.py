"""The report: ``report.json`` (every number and every plot's data), ``report.md`` and PNG plots.

:func:`build_report` reads a reproduction's study files and the benchmark and writes
``report.json``, a :class:`~memtune.reproduce.document.Report`; :func:`render_report` turns
that JSON, and nothing else, into the Markdown and its plots (matplotlib, Agg: no display, no
network). Rendering judges every claim again from the numbers in the JSON
(:func:`memtune.reproduce.judge.judge_claim`), so the lines cannot drift from them. The
Markdown's tables and sections are written by :mod:`~memtune.reproduce.report_markdown`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memtune.reproduce import judge, summaries
from memtune.reproduce.claims import BASIN, CLAIMS_VERSION, Claim, Mode
from memtune.reproduce.document import BenchResult, ClaimEntry, Report, StudySummary
from memtune.reproduce.report_markdown import PLOTS, render_markdown
from memtune.reproduce.run import BENCH_FILE, MANIFEST_FILE, load_study
from memtune.studies.verdict import SCHEMA_VERSION, package_versions, source_commit

__all__ = ["REPORT_JSON", "REPORT_MD", "build_report", "load_report", "render_report"]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


# --------------------------------------------------------------------------------------------
# report.json
# --------------------------------------------------------------------------------------------


def _plot_data(
    claim: Claim, studies: Mapping[str, StudySummary], documents: Mapping[str, Any]
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    completed = [s for s in claim.studies if studies[s.name].status == "completed"]
    swept = {name for sweep in claim.sweeps for name in sweep.studies}
    if "curves" in claim.plots:
        data["curves"] = {
            s.name: {
                "metric": documents[s.name]["verdict"]["metric"],
                "arms": summaries.curves(documents[s.name]),
            }
            for s in completed
            if s.name not in swept
        }
    if "basin" in claim.plots:
        data["basin"] = {
            s.name: {
                "threshold": BASIN[s.task],
                "arms": summaries.rates(studies[s.name], BASIN[s.task]),
            }
            for s in completed
        }
    if "escape" in claim.plots:
        data["escape"] = {
            str(s.task_options.get("sharpness")): summaries.rates(studies[s.name], None)
            for s in completed
        }
    if "memory" in claim.plots:
        data["memory"] = {
            s.name: [
                {
                    "arm": a.arm,
                    "mean": a.mean,
                    "ci_low": a.ci_low,
                    "ci_high": a.ci_high,
                    "state_bytes": a.state_bytes,
                }
                for a in studies[s.name].arms
            ]
            for s in completed
        }
    return data


def _claim_entry(
    claim: Claim,
    documents: Mapping[str, Any],
    studies: Mapping[str, StudySummary],
    bench: BenchResult | None,
) -> ClaimEntry:
    entry = ClaimEntry(
        number=claim.number,
        title=claim.title,
        statement=claim.statement,
        paper=claim.paper,
        design=claim.design,
        budget=claim.budget,
        studies=[spec.name for spec in claim.studies],
        checks=[judge.measure(check, documents, bench) for check in claim.checks],
        secondary=[judge.measure(check, documents, bench) for check in claim.secondary],
        plots=_plot_data(claim, studies, documents),
        sweeps=[r for s in claim.sweeps if (r := summaries.sweep_result(s, documents))],
    )
    return judge.judge_claim(entry)


def build_report(
    claims: list[Claim], mode: Mode, out: Path, *, command: str, ray_address: str | None = None
) -> Report:
    """``report.json`` from the study files and the benchmark under ``out``; written and
    returned."""
    documents = {s.name: load_study(out, s.name) for c in claims for s in c.studies}
    studies = {name: summaries.study_summary(name, doc) for name, doc in documents.items()}
    bench_path = out / "data" / BENCH_FILE
    bench = BenchResult.model_validate_json(bench_path.read_text()) if bench_path.exists() else None
    manifest_path = out / "data" / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    by_number = {c.number: c for c in claims}
    profiles = []
    for number, name in (
        (1, "adaptive memory (claim 1's studies)"),
        (6, "critical momenta (claim 6's studies)"),
    ):
        if number in by_number:
            profiles += summaries.profiles(name, by_number[number], documents)
    entries = [_claim_entry(claim, documents, studies, bench) for claim in claims]
    am_evaluations = next(
        (p for p in profiles if p.name.startswith("adaptive") and p.unit != "seconds"), None
    )
    for entry, claim in zip(entries, claims, strict=True):
        if claim.benchmark:
            entry.time_to_result = summaries.time_to_result(am_evaluations, bench)
    devices = sorted({d for s in studies.values() for d in s.devices})
    report = Report(
        verdict_schema=SCHEMA_VERSION,
        judge_schema=judge.JUDGE_SCHEMA,
        claims_version=CLAIMS_VERSION,
        mode=mode.name,
        mode_notes=list(mode.notes),
        command=command,
        generated=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        ray=ray_address or "local Ray on 127.0.0.1",
        devices=devices or ["cpu"],
        machine={
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        versions=package_versions(
            "memtune", "torch", "ray", "optuna", "scipy", "numpy", "matplotlib", "pydantic"
        ),
        commit=source_commit(),
        study_seconds=sum(
            run.get("seconds", 0)
            for name, run in manifest.get("studies", {}).items()
            if name in studies
        ),
        bench_seconds=bench.seconds if bench else None,
        alpha=judge.ALPHA,
        rules=list(judge.RULES),
        claims=entries,
        studies=studies,
        bench=bench,
        profiles=profiles,
    )
    (out / REPORT_JSON).write_text(report.model_dump_json(indent=1))
    return report


def load_report(out: Path) -> Report:
    return Report.model_validate_json((out / REPORT_JSON).read_text())


# --------------------------------------------------------------------------------------------
# report.md and the plots
# --------------------------------------------------------------------------------------------


def render_report(out: Path) -> Path:
    """``report.md`` and ``plots/*.png`` from ``out/report.json`` alone; returns the Markdown's
    path. Every claim is judged again from the JSON's numbers."""
    report = load_report(out)
    for claim in report.claims:
        judge.judge_claim(claim)
    plot_dir = out / PLOTS
    plot_dir.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_MD
    path.write_text(render_markdown(report, plot_dir))
    return path
