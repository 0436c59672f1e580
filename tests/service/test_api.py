"""The API over a real uvicorn on a free loopback port, driven with httpx.

The end-to-end tests add a real worker process (``memtune worker``) on the same database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from memtune.client import Client, MemtuneError
from memtune.service import services
from memtune.service.config import Settings
from memtune.service.services import keys
from tests.service.conftest import RunningServer

SMOKE = {
    "name": "smoke",
    "task": "digits_mlp",
    "smoke": True,
    "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
    "budget": {"searches": 1, "trials_per_search": 2, "epochs": 2},
    "seeds": [1, 2],
}


@pytest.fixture
def server(tmp_path):
    running = RunningServer(f"sqlite:///{tmp_path / 'api.db'}")
    yield running
    running.stop()


def test_open_mode_without_keys_accepts_requests_and_says_so(server):
    with server.client() as client:
        health = client.get("/health").json()
        assert health == {"status": "ok", "database": "sqlite", "open_mode": True, "down": []}
        created = client.post("/studies", json=SMOKE)
    assert created.status_code == 201
    study = created.json()
    assert study["status"] == "queued" and study["owner"] == "local" and study["trials_total"] == 8
    assert [a["total"] for a in study["progress"]] == [4, 4]
    # one search per arm compares configs, and two seeds can never call one better: said up front
    configs, seeds = study["warnings"]
    assert configs.startswith("budget.searches: one search per arm")
    assert seeds.startswith("seeds: with 2 seeds") and "at least 6 seeds" in seeds


@pytest.mark.parametrize(
    ("change", "loc", "message"),
    [
        ({"arms": [{"optimizer": "adamx"}]}, ["body", "arms", "0", "optimizer"], "known: adam"),
        ({"task": "mnist"}, ["body", "task"], "known: ackley"),
        ({"seeds": []}, ["body", "seeds"], "at least 1"),
        ({"seeds": [1, 1]}, ["body", "seeds"], "distinct"),
        (
            {"arms": [{"optimizer": "sgd", "fixed": {"lr": -1}}]},
            ["body", "arms", "0", "fixed", "lr"],
            "greater than or equal to 0",
        ),
    ],
)
def test_bad_spec_is_422_naming_the_field(server, change, loc, message):
    with server.client() as client:
        response = client.post("/studies", json={**SMOKE, **change})
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == loc and message in detail["msg"]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"null"])
def test_malformed_body_is_422_without_a_stack_trace(server, body):
    with server.client() as client:
        response = client.post(
            "/studies", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert "Traceback" not in response.text


def test_a_body_over_the_limit_is_413_before_it_is_read(server):
    big = b'{"name": "' + b"x" * 2_000_000 + b'"}'
    with server.client() as client:
        sized = client.post("/studies", content=big, headers={"Content-Type": "application/json"})
        chunked = client.post(
            "/studies",
            content=(big[i : i + 65536] for i in range(0, len(big), 65536)),  # no length
            headers={"Content-Type": "application/json"},
        )
    for response in (sized, chunked):
        assert response.status_code == 413
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body"] and detail["type"] == "too_large"


def test_an_undecodable_body_has_the_documented_error_shape(server):
    deep = b"[" * 100_000 + b"]" * 100_000
    with server.client() as client:
        response = client.post(
            "/studies", content=deep, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert set(detail) == {"loc", "msg", "type"} and detail["loc"][0] == "body"


def test_an_owner_past_the_cap_of_active_studies_gets_429(server):
    server.server.config.app.state.settings = Settings(
        database_url=server.db.url, max_active_studies=2
    )
    with server.client() as client:
        first = client.post("/studies", json=SMOKE).json()
        assert client.post("/studies", json=SMOKE).status_code == 201
        refused = client.post("/studies", json=SMOKE)
        assert refused.status_code == 429 and "cap is 2" in refused.json()["detail"][0]["msg"]
        client.post(f"/studies/{first['id']}/cancel")  # one ends: room again
        assert client.post("/studies", json=SMOKE).status_code == 201


def test_trials_come_a_page_at_a_time_with_the_total_and_the_full_error(server):
    from memtune.service.store.repository import Repository

    with server.client() as client:
        study = client.post("/studies", json=SMOKE).json()
    with server.db.session() as session:
        repository = Repository(session)
        for i in range(5):
            repository.upsert_trial(
                study["id"],
                f"t{i}",
                arm="sgd",
                phase="search",
                seed=0,
                config={},
                state="error",
                error="RuntimeError: boom",
                traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
            )
    with server.client() as client:
        page = client.get(f"/studies/{study['id']}/trials", params={"limit": 2, "offset": 3})
        assert page.json()["count"] == 5 and len(page.json()["data"]) == 2
        trial = client.get(f"/trials/{page.json()['data'][0]['id']}").json()
        assert trial["error"] == "RuntimeError: boom" and trial["traceback"].startswith("Traceback")


def test_timestamps_carry_their_utc_offset(server):
    with server.client() as client:
        study = client.post("/studies", json=SMOKE).json()
    assert study["created_at"].endswith("Z") and study["spec_schema_version"] == 3


def test_missing_studies_and_trials_are_404(server):
    with server.client() as client:
        assert client.get("/studies/999").status_code == 404
        assert client.get("/trials/999").status_code == 404
        assert client.get("/studies/99999999999999999999").status_code == 422
        assert client.get("/studies/999/verdict").status_code == 404


def test_keys_separate_owners_and_a_missing_key_is_401(server):
    alice = services.create_api_key(server.db, owner="alice")
    bob = services.create_api_key(server.db, owner="bob")
    with (
        server.client(alice) as as_alice,
        server.client(bob) as as_bob,
        server.client() as anonymous,
    ):
        study = as_alice.post("/studies", json=SMOKE).json()
        assert study["owner"] == "alice"
        assert as_bob.get(f"/studies/{study['id']}").status_code == 404
        assert as_bob.post(f"/studies/{study['id']}/cancel").status_code == 404
        assert as_bob.get("/studies").json() == {"data": [], "count": 0}
        assert anonymous.get("/studies").status_code == 401
        assert as_alice.get("/studies", headers={"X-API-Key": "mt_wrong"}).status_code == 401
        assert as_alice.get("/studies").json()["count"] == 1


def test_keys_are_listed_by_prefix_and_a_revoked_key_is_refused(server):
    key = services.create_api_key(server.db, owner="carol")
    env = {"DATABASE_URL": server.db.url}
    listed = _memtune("apikey", "list", env=env).stdout
    assert key[:10] in listed and "carol" in listed and "active" in listed
    with server.client(key) as client:
        assert client.get("/studies").status_code == 200
        _memtune("apikey", "revoke", key[:10], env=env)
        keys._AUTHENTICATED.clear()  # what the auth cache's few seconds would do
        assert client.get("/studies").status_code == 401
    assert "revoked" in _memtune("apikey", "list", env=env).stdout


def test_admin_key_sees_every_owner(tmp_path):
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    running = RunningServer(url)
    running.server.config.app.state.settings = Settings(database_url=url, admin_key="admin-secret")
    try:
        alice = services.create_api_key(running.db, owner="alice")
        with running.client(alice) as as_alice, running.client("admin-secret") as admin:
            study = as_alice.post("/studies", json=SMOKE).json()
            assert admin.get(f"/studies/{study['id']}").json()["owner"] == "alice"
            assert admin.get("/studies").json()["count"] == 1
    finally:
        running.stop()


def test_cancel_a_queued_study_then_cancel_again_is_409(server):
    with server.client() as client:
        study = client.post("/studies", json=SMOKE).json()
        cancelled = client.post(f"/studies/{study['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert client.post(f"/studies/{study['id']}/cancel").status_code == 409
        assert client.get(f"/studies/{study['id']}/verdict").status_code == 409


def test_list_filters_by_status_task_and_optimizer(server):
    with server.client() as client:
        first = client.post("/studies", json=SMOKE).json()
        client.post("/studies", json={**SMOKE, "task": "logreg", "arms": [{"optimizer": "adam"}]})
        client.post(f"/studies/{first['id']}/cancel")
        assert client.get("/studies", params={"status": "cancelled"}).json()["count"] == 1
        assert client.get("/studies", params={"task": "logreg"}).json()["count"] == 1
        assert client.get("/studies", params={"optimizer": "am_sgd"}).json()["count"] == 1
        page = client.get("/studies", params={"limit": 1}).json()
        assert page["count"] == 2 and page["data"][0]["task"] == "logreg"  # newest first
        assert client.get("/studies", params={"status": "nonsense"}).status_code == 422
        assert client.get("/studies", params={"limit": 0}).status_code == 422


def test_catalogue_lists_the_registries(server):
    with server.client() as client:
        optimizers = {o["name"]: o for o in client.get("/optimizers").json()["data"]}
        tasks = {t["name"]: t for t in client.get("/tasks").json()["data"]}
    assert optimizers["sam"]["passes_per_step"] == 2 and optimizers["sam"]["origin"].startswith(
        "memtune"
    )
    assert optimizers["adam_cm"]["state_bytes_per_param"] == 32
    assert tasks["digits_mlp"]["metric"] == "val_accuracy"
    assert tasks["digits_mlp"]["directions"] == {"val_loss": "min", "val_accuracy": "max"}


def test_a_study_the_reported_nodes_cannot_run_is_422_at_submission(server):
    from memtune.optimizers import OPTIMIZERS
    from memtune.service.store.repository import Repository
    from memtune.studies.tasks import TASKS

    without_cm = [name for name in OPTIMIZERS.names() if name != "adam_cm"]
    with server.db.session() as session:
        Repository(session).record_nodes(
            "w1",
            [
                {
                    "node_id": "n1",
                    "address": "10.0.0.1",
                    "cpus": 8.0,
                    "gpus": 0.0,
                    "tasks": TASKS.names(),
                    "optimizers": without_cm,
                },
            ],
        )
    cases = [
        ({"resources": {"cpu": 1, "gpu": 1}}, ["body", "resources", "gpu"], "at most 0"),
        ({"resources": {"cpu": 16}}, ["body", "resources", "cpu"], "at most 8"),
        (
            {"arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "adam_cm"}]},
            ["body", "arms", "1", "optimizer"],
            "'adam_cm' is installed on none of the 1 nodes",
        ),
    ]
    with server.client() as client:
        for change, loc, message in cases:
            response = client.post("/studies", json={**SMOKE, **change})
            assert response.status_code == 422, change
            (detail,) = response.json()["detail"]
            assert detail["loc"] == loc and message in detail["msg"]
        assert client.post("/studies", json=SMOKE).status_code == 201


# -- with a worker ----------------------------------------------------------------------------


def _memtune(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "memtune", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done


def _wait(client: httpx.Client, study_id: int, until, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = client.get(f"/studies/{study_id}").json()
        if until(study):
            return study
        time.sleep(0.5)
    raise AssertionError(
        f"study {study_id} stuck at {study['status']}, {study['trials_done']} trials done"
    )


@pytest.mark.slow
@pytest.mark.ray
def test_submitted_study_runs_to_a_verdict_and_exports(worker_server):
    with worker_server.client() as client:
        study = client.post("/studies", json=SMOKE).json()
        done = _wait(client, study["id"], lambda s: s["status"] not in ("queued", "running"))
        assert done["status"] == "completed", done["error"]
        assert done["trials_done"] == 8
        with worker_server.db.session() as session:  # the worker recorded what it runs on
            from datetime import timedelta

            from memtune.service.store.repository import Repository

            (node,) = Repository(session).nodes(seen_within=timedelta(minutes=5))
            assert node.cpus >= 1 and "digits_mlp" in node.tasks and "am_sgd" in node.optimizers

        verdict = client.get(f"/studies/{study['id']}/verdict").json()
        assert [a["arm"] for a in verdict["arms"]] == ["sgd", "am_sgd"]
        assert verdict["comparisons"][0]["pairs"] == 2

        # The dashboard's curves were kept as the study completed, equal to a live read.
        curves = client.get(f"/studies/{study['id']}/curves").json()
        assert [a["seed_runs"] for a in curves["arms"]] == [2, 2]
        with worker_server.db.session() as session:
            from memtune.service import services

            kept = Repository(session).find_study(study["id"], None)
            assert kept.curves == curves
            live = services.study_curves(Repository(session), kept, services.SEARCH_CURVES)
            assert json.loads(live.model_dump_json()) == curves

        trials = client.get(f"/studies/{study['id']}/trials").json()
        assert trials["count"] == 8
        detail = client.get(f"/trials/{trials['data'][0]['id']}").json()
        assert [h["epoch"] for h in detail["history"]] == [1, 2]
        assert "val_accuracy" in detail["history"][0]["values"]

        csv_lines = (
            client.get(f"/studies/{study['id']}/export", params={"format": "csv"})
            .text.strip()
            .splitlines()
        )
        assert len(csv_lines) == 1 + 8 * 2 and csv_lines[0].startswith(
            "study,arm,phase,seed,trial,state,epoch"
        )
        exported = client.get(f"/studies/{study['id']}/export", params={"format": "json"}).json()
        assert len(exported["trials"]) == 8 and exported["verdict"]["task"] == "digits_mlp"

        # The Python client and the remote CLI over the same service.
        with Client(worker_server.base) as remote:
            assert len(list(remote.trials(study["id"], page_size=3))) == 8
            assert remote.verdict(study["id"]).comparisons[0].pairs == 2
            with pytest.raises(MemtuneError) as missing:
                remote.study(999)
            assert missing.value.status == 404
        url = ["--url", worker_server.base]
        status_line = _memtune("status", str(study["id"]), *url).stdout
        assert "completed, 8 / 8 trials" in status_line
        seed_trial = next(t for t in trials["data"] if t["phase"] == "seed")
        replayed = _memtune("replay", str(seed_trial["id"]), *url).stdout
        assert replayed.count("epoch ") == 2 and "stored" in replayed

        # Answer the power warning: one more seed; only its two re-runs are new.
        bad = client.post(f"/studies/{study['id']}/extend", json={"seeds": [1]})  # ran already
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "seeds"
        extended = client.post(f"/studies/{study['id']}/extend", json={"seeds": [3]})
        assert extended.status_code == 200 and extended.json()["status"] == "queued"
        with worker_server.db.session() as session:  # its curves are read live again
            assert Repository(session).find_study(study["id"], None).curves is None
        again = _wait(client, study["id"], lambda s: s["status"] not in ("queued", "running"))
        assert again["status"] == "completed", again["error"]
        trials = client.get(f"/studies/{study['id']}/trials").json()
        assert trials["count"] == 10
        curves = client.get(f"/studies/{study['id']}/curves").json()
        assert [a["seed_runs"] for a in curves["arms"]] == [3, 3]
        verdict = client.get(f"/studies/{study['id']}/verdict").json()
        assert verdict["comparisons"][0]["pairs"] == 3 and verdict["provenance"]["seeds"] == [
            1,
            2,
            3,
        ]
        assert client.post(f"/studies/{study['id']}/extend", json={}).status_code == 422


@pytest.mark.slow
@pytest.mark.ray
def test_cancel_running_study_stops_trials(worker_server):
    long = {**SMOKE, "budget": {"searches": 1, "trials_per_search": 20, "epochs": 500}}
    with worker_server.client() as client:
        study = client.post("/studies", json=long).json()
        _wait(client, study["id"], lambda s: s["status"] == "running")
        requested = time.monotonic()
        assert client.post(f"/studies/{study['id']}/cancel").status_code == 200
        cancelled = _wait(client, study["id"], lambda s: s["status"] == "cancelled", timeout=60)
        noticed = time.monotonic() - requested
        assert cancelled["trials_done"] < cancelled["trials_total"]
        print(f"cancel noticed and trials stopped in {noticed:.1f} s")


@pytest.mark.postgres
def test_a_database_that_blinks_is_a_503_with_retry_after_and_health_names_it():
    """While PostgreSQL does not answer (a proxy drops every connection for 4 s), every answer
    is 503 with Retry-After in the one error shape, never a 500; /health says the database is
    down, and everything answers again once it is back."""
    from tests.service.conftest import _postgres_database
    from tests.tcp_proxy import BlinkingProxy

    url, drop = _postgres_database()
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = BlinkingProxy(host, int(port))
    api = RunningServer(url.replace(host_port, f"127.0.0.1:{proxy.port}"))
    try:
        with api.client() as client:
            assert client.get("/health").json() == {
                "status": "ok", "database": "postgresql", "open_mode": True, "down": [],
            }  # fmt: skip
            assert client.get("/studies").status_code == 200
            proxy.blink(4)
            health = client.get("/health")
            assert health.status_code == 503 and health.headers["Retry-After"] == "5"
            assert health.json()["down"] == ["database"]
            studies = client.get("/studies?limit=7")  # not a cached answer
            assert studies.status_code == 503 and studies.headers["Retry-After"] == "5"
            assert studies.json()["detail"][0]["type"] == "unavailable"
            time.sleep(4.5)
            assert client.get("/health").status_code == 200
            assert client.get("/studies?limit=8").status_code == 200
    finally:
        api.stop()
        proxy.close()
        drop()
