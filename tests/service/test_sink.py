"""The worker's StoreSink writes epochs in batches and loses none of them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from memtune.service.store.models import Metric, Trial
from memtune.service.store.repository import Repository
from memtune.service.worker import StoreSink
from memtune.studies.records import EpochResult, Phase, TrialRecord, TrialState


@pytest.fixture
def sink(db) -> StoreSink:
    with db.session() as session:
        repository = Repository(session)
        owner = repository.owner_named("tester", create=True)
        study = repository.add_study(
            owner=owner, spec={"name": "s", "task": "digits_mlp"}, arms=[], total_trials=1
        )
        study_id = study.id
    sink = StoreSink(db, study_id, "worker-1", metric="val_accuracy", mode="max", retry_s=0)
    sink.flush_every_s = 3600.0  # by time never, in these tests
    return sink


def _epoch(number: int) -> EpochResult:
    return EpochResult(
        epoch=number,
        train_loss=1.0 / number,
        metrics={"val_accuracy": 0.5 + number / 100},
        diverged=False,
        epoch_time_s=0.1,
        mean_step_time_s=0.001,
        training_time_s=0.1 * number,
        optimizer_state_bytes=64,
        peak_memory_mb=1.0,
    )


def _report(sink: StoreSink, record: TrialRecord, numbers: range) -> None:
    for number in numbers:
        epoch = _epoch(number)
        record.epochs.append(epoch)
        sink.epoch_reported(record, epoch)


def _stored(sink: StoreSink) -> tuple[list[int], int | None]:
    """The epochs stored for the study, and the trial row's epochs_done."""
    with sink.db.session() as session:
        epochs = session.scalars(select(Metric.epoch).order_by(Metric.epoch)).all()
        done = session.scalar(select(func.max(Trial.epochs_done)))
    return list(epochs), done


def _record() -> TrialRecord:
    return TrialRecord(trial_id="t1", arm="sgd", phase=Phase.SEARCH, seed=0, config={"lr": 0.1})


def test_a_trial_and_its_epochs_wait_for_tunes_next_snapshot_and_then_all_are_written(sink):
    record = _record()
    sink.trial_started(record)
    _report(sink, record, range(1, 4))
    sink.trial_checkpointed(record)
    assert _stored(sink) == ([], None)  # buffered, the trial's row too
    sink.before_snapshot()  # a resume would not report epochs 1-3 again
    assert _stored(sink) == ([1, 2, 3], 3)
    _report(sink, record, range(4, 6))
    record.state = TrialState.COMPLETED
    sink.trial_finished(record)
    assert _stored(sink) == ([1, 2, 3], 3)
    sink.before_snapshot()  # a resume would not run the trial again
    assert _stored(sink) == ([1, 2, 3, 4, 5], 5)
    with sink.db.session() as session:
        assert session.scalar(select(Trial.state)) == "completed"


def test_between_steps_writes_what_waited_once_the_interval_has_passed(sink):
    record = _record()
    sink.trial_started(record)
    sink.between_steps()
    assert _stored(sink) == ([], None)
    sink.flush_every_s = 0.0
    sink.between_steps()  # no event needed
    assert _stored(sink) == ([], 0)


def test_epochs_are_written_once_the_flush_interval_has_passed(sink):
    sink.flush_every_s = 0.0
    record = _record()
    _report(sink, record, range(1, 3))
    assert _stored(sink) == ([1, 2], 2)


def test_a_failed_write_keeps_the_epochs_for_the_next_one(sink, monkeypatch):
    record = _record()
    _report(sink, record, range(1, 3))
    write = sink._write

    def unavailable(operation):
        raise OperationalError("INSERT", {}, Exception("the database went away"))

    monkeypatch.setattr(sink, "_write", unavailable)
    with pytest.raises(OperationalError):
        sink.before_snapshot()
    monkeypatch.setattr(sink, "_write", write)
    _report(sink, record, range(3, 4))
    sink.before_snapshot()
    assert _stored(sink) == ([1, 2, 3], 3)
