"""The store's contract, run against every backend (a SQLite file and PostgreSQL)."""

from __future__ import annotations

import math
import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from memtune.service.store.models import Study, utcnow
from memtune.service.store.repository import NotFound, Repository

SPEC = {"name": "s", "task": "digits_mlp", "metric": "val_accuracy", "mode": "max"}
ARMS = [
    {"label": "sgd", "optimizer": "sgd", "baseline": True},
    {"label": "am_sgd", "optimizer": "am_sgd", "baseline": False},
]


def _study(db, owner="alice", **spec):
    with db.session() as session:
        repository = Repository(session)
        owner_row = repository.owner_named(owner, create=True)
        return repository.add_study(
            owner=owner_row, spec={**SPEC, **spec}, arms=ARMS, total_trials=10
        ).id


def _trial(db, study_id, tune_id="t1"):
    with db.session() as session:
        return (
            Repository(session)
            .upsert_trial(
                study_id,
                tune_id,
                arm="sgd",
                phase="search",
                seed=0,
                config={"lr": 0.1},
                state="running",
            )
            .id
        )


class TestStoreContract:
    def test_non_finite_metric_values_come_back_as_they_went_in(self, db):
        trial_id = _trial(db, _study(db))
        values = {
            "val_loss": math.nan,
            "train_loss": math.inf,
            "low": -math.inf,
            "ok": 0.5,
            "nested": [math.inf],
        }
        with db.session() as session:
            Repository(session).add_metrics(
                [{"trial_id": trial_id, "epoch": 1, "attempt": 1, "values": values}]
            )
        with db.session() as session:
            (row,) = Repository(session).metrics_of([trial_id])[trial_id]
        assert math.isnan(row.values["val_loss"])
        assert row.values["train_loss"] == math.inf and row.values["low"] == -math.inf
        assert row.values["ok"] == 0.5 and row.values["nested"] == [math.inf]

    def test_metric_values_pick_keys_exactly_with_non_finite_and_missing_ones(self, db):
        trial_id = _trial(db, _study(db))
        rows = [
            {"val_accuracy": 0.20439673707993308, "training_time_s": 0.5, "device": "cpu"},
            {"val_accuracy": -math.inf, "training_time_s": 1.25, "mean_beta": 0.9},
            {"val_accuracy": math.nan, "training_time_s": 3},
        ]
        with db.session() as session:
            Repository(session).add_metrics(
                [  # epoch 2 twice: the later attempt is the one read
                    {"trial_id": trial_id, "epoch": e, "attempt": 1, "values": v}
                    for e, v in enumerate(rows, start=1)
                ]
                + [{"trial_id": trial_id, "epoch": 2, "attempt": 2, "values": rows[1]}]
            )
        keys = ["val_accuracy", "training_time_s", "mean_beta"]
        with db.session() as session:
            found = Repository(session).metric_values([trial_id, 999], keys)
        first, second, third = found[trial_id]
        assert found[999] == []
        assert first == {
            "val_accuracy": 0.20439673707993308,  # every digit: the plots' intervals are exact
            "training_time_s": 0.5,
            "mean_beta": None,
            "epoch": 1,
        }
        assert second["val_accuracy"] == -math.inf and second["mean_beta"] == 0.9
        assert math.isnan(third["val_accuracy"]) and third["training_time_s"] == 3
        assert [m["epoch"] for m in found[trial_id]] == [1, 2, 3]

    def test_retried_report_never_duplicates_an_epoch(self, db):
        trial_id = _trial(db, _study(db))
        for _ in range(3):
            with db.session() as session:
                Repository(session).add_metrics(
                    [{"trial_id": trial_id, "epoch": 1, "attempt": 1, "values": {"a": 1.0}}]
                )
        with db.session() as session:
            Repository(session).add_metrics(
                [{"trial_id": trial_id, "epoch": 1, "attempt": 2, "values": {"a": 2.0}}]
            )
            history = Repository(session).metrics_of([trial_id])[trial_id]
        assert [(m.epoch, m.attempt, m.values["a"]) for m in history] == [
            (1, 2, 2.0)
        ]  # latest attempt shown

    def test_studies_list_newest_first_filtered_and_paginated(self, db):
        ids = [_study(db, task=task) for task in ("digits_mlp", "logreg", "digits_mlp")]
        with db.session() as session:
            repository = Repository(session)
            owner = repository.owner_named("alice").id
            rows, count = repository.list_studies(owner_id=owner, limit=2)
            assert count == 3 and [s.id for s in rows] == [ids[2], ids[1]]
            rows, count = repository.list_studies(owner_id=owner, task="digits_mlp")
            assert count == 2
            rows, count = repository.list_studies(owner_id=owner, optimizer="am_sgd", offset=2)
            assert count == 3 and [s.id for s in rows] == [ids[0]]
            assert repository.list_studies(owner_id=owner, optimizer="adam")[1] == 0

    def test_another_owners_study_is_not_found(self, db):
        study_id = _study(db, owner="alice")
        with db.session() as session:
            repository = Repository(session)
            bob = repository.owner_named("bob", create=True)
            with pytest.raises(NotFound):
                repository.find_study(study_id, bob.id)
            assert repository.find_study(study_id, None).id == study_id  # the admin sees it

    def test_claim_takes_the_oldest_queued_study_once(self, db):
        first, second = _study(db), _study(db)
        with db.session() as session:
            claimed = Repository(session).claim_study("w1", lease_s=30).id
        with db.session() as session:
            again = Repository(session).claim_study("w2", lease_s=30).id
        with db.session() as session:
            assert Repository(session).claim_study("w3", lease_s=30) is None
        assert (claimed, again) == (first, second)

    def test_concurrent_workers_never_claim_the_same_study(self, db):
        for _ in range(6):
            _study(db)
        claims: list[int] = []
        lock = threading.Lock()

        def worker(name: str) -> None:
            while True:
                with db.session() as session:
                    study = Repository(session).claim_study(name, lease_s=30)
                if study is None:
                    return
                with lock:
                    claims.append(study.id)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claims) == sorted(set(claims)) and len(claims) == 6

    def test_study_of_a_vanished_worker_is_claimed_again_after_its_lease(self, db):
        study_id = _study(db)
        with db.session() as session:
            Repository(session).claim_study("gone", lease_s=30)
        with db.session() as session:
            assert Repository(session).claim_study("w2", lease_s=30) is None  # lease still valid
            session.execute(
                update(Study)
                .where(Study.id == study_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        with db.session() as session:
            study = Repository(session).claim_study("w2", lease_s=30)
            assert (study.id, study.worker_id, study.attempt) == (study_id, "w2", 2)
        with db.session() as session:  # the vanished worker can neither renew nor finish it
            assert Repository(session).renew_lease(study_id, "gone", 30) == (False, False)
            assert not Repository(session).finish_study(study_id, "gone", status="completed")
        with db.session() as session:  # its new worker finishes it and still holds it
            assert Repository(session).finish_study(study_id, "w2", status="completed")
            assert Repository(session).renew_lease(study_id, "w2", 30) == (True, False)

    def test_progress_counts_finished_trials_and_best_per_arm(self, db):
        study_id = _study(db)
        with db.session() as session:
            repository = Repository(session)
            for tune_id, state, best in (
                ("a", "completed", 0.8),
                ("b", "diverged", None),
                ("c", "running", 0.9),
            ):
                repository.upsert_trial(
                    study_id,
                    tune_id,
                    arm="sgd",
                    phase="search",
                    seed=0,
                    config={},
                    state=state,
                    best_metric=best,
                )
            progress = repository.progress([study_id, 12345])
        assert progress[study_id]["sgd"] == {"done": 2, "min": 0.8, "max": 0.9}
        assert progress[12345] == {}
