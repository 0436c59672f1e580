"""Where results go: one interface, a JSON file here, the SQL store in the service."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from memtune.studies.nonfinite import to_json
from memtune.studies.records import EpochResult, StudyStatus, TrialRecord
from memtune.studies.spec import StudySpec
from memtune.studies.verdict import Verdict

__all__ = ["JsonFileSink", "ResultsSink", "write_json"]


class ResultsSink:
    """Receives a study's events as they happen. The default methods do nothing.

    A study ends with exactly one of ``study_finished`` (a verdict), ``study_failed`` or
    ``study_cancelled``.
    """

    def study_started(self, spec: StudySpec) -> None:
        pass

    def trial_started(self, record: TrialRecord) -> None:
        pass

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        pass

    def trial_checkpointed(self, record: TrialRecord) -> None:
        """The trial's epochs so far are in a checkpoint: a resume will not report them again,
        so a sink that buffers writes them now."""

    def trial_finished(self, record: TrialRecord) -> None:
        pass

    def study_finished(self, verdict: Verdict) -> None:
        pass

    def study_failed(self, error: str) -> None:
        pass

    def study_cancelled(self) -> None:
        pass

    def cancel_requested(self) -> bool:
        """Polled while trials run: True stops the study's trials."""
        return False


class JsonFileSink(ResultsSink):
    """One JSON file per study: the spec, every trial with its epochs, and the verdict.

    Written atomically (temporary file, then rename) when a trial starts or ends, at most
    every ``interval_s`` on epochs, and at the end, so a crash loses at most a few epochs.
    Non-finite numbers are written as memtune writes them everywhere ("nan", "inf", "-inf").
    """

    def __init__(self, path: str | Path, interval_s: float = 2.0) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._last_write = 0.0
        self._document: dict[str, Any] = {"status": StudyStatus.RUNNING, "trials": {}}

    def study_started(self, spec: StudySpec) -> None:
        self._document["spec"] = spec.model_dump(mode="json")
        self._write()

    def trial_started(self, record: TrialRecord) -> None:
        self._document["trials"][record.trial_id] = record.to_dict()
        self._write()

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        self._document["trials"][record.trial_id] = record.to_dict()
        if time.monotonic() - self._last_write > self.interval_s:
            self._write()

    def trial_finished(self, record: TrialRecord) -> None:
        self._document["trials"][record.trial_id] = record.to_dict()
        self._write()

    def study_finished(self, verdict: Verdict) -> None:
        self._end(StudyStatus.COMPLETED, verdict=verdict.to_dict())

    def study_failed(self, error: str) -> None:
        self._end(StudyStatus.FAILED, error=error)

    def study_cancelled(self) -> None:
        self._end(StudyStatus.CANCELLED)

    def _end(self, status: StudyStatus, *, verdict: dict | None = None, error: str | None = None):
        self._document.update(status=status, error=error, verdict=verdict)
        self._write()

    def _write(self) -> None:
        write_json(self.path, self._document)
        self._last_write = time.monotonic()


def write_json(path: Path, document: Any) -> None:
    """``document`` as JSON at ``path``, atomically (a temporary file, then a rename), with
    non-finite numbers as memtune writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        json.dump(to_json(document), stream, indent=1)
    os.replace(temporary, path)
