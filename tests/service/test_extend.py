"""Extending a completed study with more searches or other ranges (no Ray: what is stored, and
what the runner will keep and run)."""

from __future__ import annotations

import pytest

from memtune.service import services
from memtune.service.schemas import StudyExtension
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.service.worker import stored_records
from memtune.studies.spec import parse_spec
from memtune.tuning.runner import StudyRunner
from tests.synthetic_study import write_finished_study

ADMIN = services.Caller(owner_id=None, owner="admin")


@pytest.fixture
def finished(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'extend.db'}")
    return db, write_finished_study(db, searches=4, trials_per_search=2, epochs=2)


def _extend(db, study_id, **extension):
    return services.extend_study(
        db, caller=ADMIN, study_id=study_id, extension=StudyExtension(**extension)
    )


def _stored(db, study_id):
    with db.session() as session:
        repository = Repository(session)
        spec = parse_spec(repository.find_study(study_id, None).spec)
        return spec, stored_records(repository, study_id, spec)


def test_a_wider_range_sets_the_arms_earlier_searches_aside(finished):
    db, study_id = finished
    study = _extend(db, study_id, space={"am_sgd": {"lam": {"low": 0.001, "high": 10}}})
    assert study.status == "queued"
    spec, records = _stored(db, study_id)
    arm = spec.arms[1]
    assert arm.set_aside == 4 and {p.name: (p.low, p.high) for p in spec.searched(arm)}["lam"] == (
        0.001,
        10.0,
    )
    searches = spec.searches(arm)
    assert [s.set_aside for s in searches] == [True] * 4 + [False] * 4
    assert study.trials_total == spec.total_trials == (4 + 8 + 4) * (2 + 2)
    # the runner keeps every finished trial, set-aside ones included, and runs 4 new searches
    kept = StudyRunner.reusable(spec, records)
    assert len(kept) == len([r for r in records if r.state.ended])
    new = [s for s in searches if not s.set_aside]
    assert not {r.repeat for r in records if r.arm == "am_sgd"} & {s.index for s in new}


def test_more_searches_per_arm_run_only_the_new_ones(finished):
    db, study_id = finished
    _extend(db, study_id, searches=6)
    spec, records = _stored(db, study_id)
    assert spec.searches_per_arm == 6
    assert spec.extensions == 1 and any(
        w.startswith("extensions: extended 1") for w in spec.warnings
    )
    kept = StudyRunner.reusable(spec, records)
    assert {r.repeat for r in kept} == {0, 1, 2, 3}  # searches 4 and 5 of each arm run anew


@pytest.mark.parametrize(
    ("extension", "field"),
    [
        ({"searches": 2}, "searches"),  # fewer than ran
        ({"space": {"nope": {"lr": {"high": 1}}}}, "space.nope"),
        ({"space": {"am_sgd": {"momentum": {"high": 1}}}}, "arms.1.space.momentum"),
        ({}, "seeds"),
    ],
)
def test_a_bad_extension_names_its_field(finished, extension, field):
    db, study_id = finished
    with pytest.raises(services.InvalidSpec) as error:
        _extend(db, study_id, **extension)
    assert error.value.field == field
