"""Where results go: one interface, a JSON file here, the SQL store in the service."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from studies.jsonsafe import json_safe
from studies.spec import StudySpec
from studies.verdict import TrialRecord, Verdict

__all__ = ["JsonFileSink", "ResultsSink"]


class ResultsSink:
    """Receives a study's events as they happen. The default methods do nothing."""

    def study_started(self, spec: StudySpec) -> None:
        pass

    def trial_started(self, record: TrialRecord) -> None:
        pass

    def epoch_reported(self, record: TrialRecord, metrics: dict[str, Any]) -> None:
        pass

    def trial_finished(self, record: TrialRecord) -> None:
        pass

    def study_finished(self, verdict: Verdict | None, error: str | None = None) -> None:
        pass

    def cancel_requested(self) -> bool:
        """Polled while trials run: True stops the study's trials."""
        return False


class JsonFileSink(ResultsSink):
    """One JSON file per study: the spec, every trial with its epochs, and the verdict.

    Written atomically (temporary file, then rename) when a trial starts or ends, at most
    every ``interval_s`` on epochs, and at the end, so a crash loses at most a few epochs.
    """

    def __init__(self, path: str | Path, interval_s: float = 2.0) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._last_write = 0.0
        self._document: dict[str, Any] = {"status": "running", "trials": {}}

    def study_started(self, spec: StudySpec) -> None:
        self._document["spec"] = spec.model_dump(mode="json")
        self._write()

    def trial_started(self, record: TrialRecord) -> None:
        self._document["trials"][record.trial_id] = asdict(record)
        self._write()

    def epoch_reported(self, record: TrialRecord, metrics: dict[str, Any]) -> None:
        self._document["trials"][record.trial_id] = asdict(record)
        if time.monotonic() - self._last_write > self.interval_s:
            self._write()

    def trial_finished(self, record: TrialRecord) -> None:
        self._document["trials"][record.trial_id] = asdict(record)
        self._write()

    def study_finished(self, verdict: Verdict | None, error: str | None = None) -> None:
        self._document["status"] = "failed" if error else "completed"
        self._document["error"] = error
        self._document["verdict"] = verdict.to_dict() if verdict else None
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(handle, "w") as stream:
            json.dump(json_safe(self._document), stream, indent=1)
        os.replace(temporary, self.path)
        self._last_write = time.monotonic()
