"""The verdict of a study: does an arm's optimizer beat the baseline's, by how much, at what
cost, and how sure are we.

- ``types``: what a verdict holds (the API's response model) and how older ones are read;
- ``arms``: each search's score and each arm's summary and costs;
- ``inference``: the comparisons with the baseline, their labels, and ``RULES``;
- ``provenance``: how it was made; ``text``: the plain-text account.
"""

from __future__ import annotations

from memtune.studies.verdict.inference import RULES, budget_text, build_verdict, decide
from memtune.studies.verdict.provenance import package_versions, provenance, source_commit
from memtune.studies.verdict.text import format_verdict
from memtune.studies.verdict.types import (
    SCHEMA_VERSION,
    ArmVerdict,
    Comparison,
    Outcome,
    Scope,
    SearchScore,
    Verdict,
)

__all__ = [
    "RULES",
    "SCHEMA_VERSION",
    "ArmVerdict",
    "Comparison",
    "Outcome",
    "Scope",
    "SearchScore",
    "Verdict",
    "budget_text",
    "build_verdict",
    "decide",
    "format_verdict",
    "package_versions",
    "provenance",
    "source_commit",
]
