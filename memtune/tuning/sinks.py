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
        pass

    def trial_finished(self, record: TrialRecord) -> None:
        pass

    def between_steps(self) -> None:
        """Called between the steps of Tune's loop, events or not: a sink that buffers by time
        writes here once its interval has passed."""

    def before_snapshot(self) -> None:
        """Tune is about to save the experiment's state, which a resume starts from: trials it
        records as ended are not run again, and running ones report again only the epochs
        after their last checkpoint. A sink that buffers writes everything it holds now, so
        that what it keeps is never behind what a resume takes as done."""

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

    Written atomically (temporary file, then rename) at most every ``interval_s``, before
    each of Tune's experiment snapshots and at the end, so a crash loses at most the last
    seconds, which a resume runs again. (A write per event would make a study of thousands of
    trials quadratic: the file holds every trial.)
    Non-finite numbers are written as memtune writes them everywhere ("nan", "inf", "-inf").
    """

    def __init__(self, path: str | Path, interval_s: float = 2.0) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._last_write, self._dirty = 0.0, False
        self._document: dict[str, Any] = {"status": StudyStatus.RUNNING, "trials": {}}

    def study_started(self, spec: StudySpec) -> None:
        self._document["spec"] = spec.model_dump(mode="json")
        self._write()

    def trial_started(self, record: TrialRecord) -> None:
        self._changed(record)

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        self._changed(record)

    def trial_finished(self, record: TrialRecord) -> None:
        self._changed(record)

    def between_steps(self) -> None:
        if self._dirty and time.monotonic() - self._last_write > self.interval_s:
            self._write()

    def before_snapshot(self) -> None:
        if self._dirty:
            self._write()

    def _changed(self, record: TrialRecord) -> None:
        self._document["trials"][record.trial_id] = record.to_dict()
        self._dirty = True
        self.between_steps()

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
        self._last_write, self._dirty = time.monotonic(), False


def write_json(path: Path, document: Any) -> None:
    """``document`` as JSON at ``path``, atomically (a temporary file, then a rename), with
    non-finite numbers as memtune writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        json.dump(to_json(document), stream, indent=1)
    os.replace(temporary, path)
