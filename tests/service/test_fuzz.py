"""The API fuzzed from its OpenAPI schema over a store that holds a finished study with
diverged trials: no input gives a 5xx, and every response matches its documented schema
(which is where a NaN written as ``null`` or a bare NaN would show)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.specs.openapi.checks import positive_data_acceptance

from memtune.service.api.app import create_app
from memtune.service.config import Settings
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.studies.records import Phase, StudyStatus, TrialState
from memtune.studies.verdict import ArmVerdict, Verdict

_URL = f"sqlite:///{Path(tempfile.mkdtemp(prefix='memtune-fuzz-')) / 'fuzz.db'}"


def _store_with_a_diverged_study(db: Database) -> tuple[int, int]:
    """A completed study whose ids are 1: one finished trial and one diverged (NaN loss)."""
    with db.session() as session:
        repository = Repository(session)
        owner = repository.owner_named("local", create=True)
        study = repository.add_study(
            owner=owner,
            spec={"name": "s", "task": "digits_mlp", "metric": "val_accuracy", "mode": "max"},
            arms=[
                {"label": "sgd", "optimizer": "sgd", "baseline": True},
                {"label": "am_sgd", "optimizer": "am_sgd", "baseline": False},
            ],
            total_trials=2,
        )
        trials = {}
        for arm, state, final, loss in (
            ("sgd", TrialState.COMPLETED, 0.9, 0.3),
            ("am_sgd", TrialState.DIVERGED, -math.inf, math.nan),
        ):
            trial = repository.upsert_trial(
                study.id,
                f"t-{arm}",
                arm=arm,
                phase=Phase.SEARCH,
                seed=0,
                config={"lr": 0.1},
                state=state,
                epochs_done=1,
                best_metric=None if state == TrialState.DIVERGED else final,
                final_metric=final,
                summary={"epoch_time_s": 1.0, "mean_beta": math.nan},
            )
            repository.add_metrics(
                [
                    {
                        "trial_id": trial.id,
                        "epoch": 1,
                        "attempt": 1,
                        "values": {"epoch": 1, "train_loss": loss, "val_accuracy": final},
                    }
                ]
            )
            trials[arm] = trial.id
        study.status = StudyStatus.COMPLETED
        study.verdict = Verdict(
            study="s",
            task="digits_mlp",
            metric="val_accuracy",
            mode="max",
            arms=[ArmVerdict("am_sgd", "am_sgd", False, mean=-math.inf)],
            comparisons=[],
        ).to_dict()
        return study.id, trials["am_sgd"]


_DB = Database(_URL)
STUDY_ID, DIVERGED_TRIAL_ID = _store_with_a_diverged_study(_DB)
APP = create_app(Settings(database_url=_URL), _DB)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def test_a_diverged_trial_reads_back_as_the_documented_strings_everywhere():
    client = TestClient(APP)
    trial = client.get(f"/trials/{DIVERGED_TRIAL_ID}").json()
    assert trial["state"] == "diverged" and trial["final_metric"] == "-inf"
    assert trial["history"][0]["values"]["train_loss"] == "nan"
    assert trial["summary"]["mean_beta"] == "nan"
    listed = client.get(f"/studies/{STUDY_ID}/trials").json()["data"]
    assert {t["final_metric"] for t in listed} == {0.9, "-inf"}
    assert client.get(f"/studies/{STUDY_ID}/verdict").json()["arms"][0]["mean"] == "-inf"
    exported = client.get(f"/studies/{STUDY_ID}/export").json()
    diverged = next(t for t in exported["trials"] if t["id"] == DIVERGED_TRIAL_ID)
    assert diverged["final_metric"] == "-inf" and diverged["history"][0]["train_loss"] == "nan"
    assert "NaN" not in client.get(f"/studies/{STUDY_ID}/export").text


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_input_gives_a_server_error_or_an_off_schema_answer(case):
    # Cases with an even id name the study and trial that exist, so that their trials, epochs
    # and verdict are serialized; the others probe ids that do not.
    parameters = case.path_parameters or {}
    for name, existing in (("study_id", STUDY_ID), ("trial_id", DIVERGED_TRIAL_ID)):
        if isinstance(parameters.get(name), int) and parameters[name] % 2 == 0:
            parameters[name] = existing
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


# The same store behind a server that requires keys: open mode (no key needed on loopback,
# documented) is the one thing schemathesis's authentication checks would flag.
ADMIN_KEY = "fuzz-admin-key"
KEYED = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(database_url=_URL, admin_key=ADMIN_KEY), _DB)
)


@KEYED.auth()
class _AdminKey:
    """Schemathesis's own authentication hook: it knows when a case tests a missing key."""

    def get(self, case, context):
        return ADMIN_KEY

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "X-API-Key": data}


@pytest.mark.slow
@KEYED.parametrize()
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same cases in every CI run
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_schemathesis_check_passes(case):
    """All of schemathesis's checks (status codes, content types, headers, response schemas,
    authentication, schema-violating data rejected...) on every operation, but one: a spec can
    be valid by the JSON Schema and still refused, for rules across fields that JSON Schema
    cannot say (re-run seeds never the search's, at most one baseline, distinct arm names);
    those refusals are 422s naming the field, which test_api checks."""
    parameters = case.path_parameters or {}
    for name, existing in (("study_id", STUDY_ID), ("trial_id", DIVERGED_TRIAL_ID)):
        if isinstance(parameters.get(name), int) and parameters[name] % 2 == 0:
            parameters[name] = existing
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
