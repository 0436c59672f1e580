"""How a verdict was made: its budget, seeds, package versions, the memtune commit, devices."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from memtune.studies.records import TrialRecord
from memtune.studies.spec import StudySpec

__all__ = ["package_versions", "provenance", "source_commit"]


def provenance(spec: StudySpec, records: Iterable[TrialRecord]) -> dict[str, Any]:
    """Seeds, the search budget and seeds, versions, the memtune commit and the devices."""
    versions = package_versions("memtune", "torch", "ray", "optuna", "scipy", "numpy", "pydantic")
    devices = sorted({e.device for r in records for e in r.epochs if e.device})
    return {
        "seeds": list(spec.seeds or ()),
        "search_seed": spec.search_seed,
        "searches": {
            arm.label: {str(s.index): s.seed for s in spec.searches(arm)} for arm in spec.arms
        },
        "searches_per_arm": spec.searches_per_arm,
        "trials_per_search": spec.budget.trials_per_search,
        "epochs": spec.budget.epochs,
        "equalize": spec.budget.equalize,
        "schedule": spec.schedule.model_dump(mode="json"),
        "spec_schema_version": spec.schema_version,
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
    root = Path(__file__).resolve().parents[3]
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
