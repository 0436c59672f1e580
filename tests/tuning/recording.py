"""A results sink for tests: every finished trial by id, and a failed study's error."""

from __future__ import annotations

from memtune.tuning.sinks import ResultsSink


class KeptTrials(ResultsSink):
    def __init__(self) -> None:
        self.records: dict = {}
        self.failed: str | None = None

    def trial_finished(self, record) -> None:
        self.records[record.trial_id] = record

    def study_failed(self, error: str) -> None:
        self.failed = error
