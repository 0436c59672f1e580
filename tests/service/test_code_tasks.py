"""A task from code through the service: only a key with the code scope may submit one (403
names ``task`` for any other), the files are checked as data and stored with the study, the
API process never imports them, and a worker runs the study to its verdict."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import memtune
from memtune.client import Client
from memtune.service import services
from memtune.service.store.models import Study
from tests.service.conftest import RunningServer

EXAMPLE = Path(memtune.__file__).parent / "examples" / "my_task.py"
SPEC = {
    "name": "code",
    "task": "my_task.py:build",
    "metrics": {"val_loss": "min", "val_accuracy": "max"},
    "metric": "val_accuracy",
    "arms": [{"optimizer": "adamw", "baseline": True}, {"optimizer": "am_adamw"}],
    "budget": {"searches": 1, "trials_per_search": 2, "epochs": 2},
    "seeds": [1, 2],
}


SMOKE_REGISTERED = {
    "task": "digits_mlp",
    "smoke": True,
    "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
}


def _zip(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def server(tmp_path):
    running = RunningServer(f"sqlite:///{tmp_path / 'api.db'}")
    yield running
    running.stop()


def test_only_a_key_with_the_code_scope_submits_code_and_the_api_never_imports_it(server, tmp_path):
    from memtune.service.store.repository import Repository
    from memtune.studies.tasks import TASKS

    marker = tmp_path / "imported"
    # Importing this file would leave the marker: the API must store it, never run it.
    body = {
        **SPEC,
        "code": _zip({"my_task.py": f"open({str(marker)!r}, 'w')\ndef build(o, s, d): ...\n"}),
    }
    plain = services.create_api_key(server.db, owner="alice")
    coder = services.create_api_key(server.db, owner="bob", scopes=["code"])
    with server.db.session() as session:  # a worker has reported its nodes: the check runs
        Repository(session).record_nodes(
            "w1",
            [{"node_id": "n1", "address": "10.0.0.1", "cpus": 4.0, "gpus": 0.0,
              "tasks": TASKS.names(), "optimizers": ["adamw", "am_adamw"]}],
        )  # fmt: skip
    with server.client(plain) as as_alice, server.client(coder) as as_bob:
        refused = as_alice.post("/studies", json=body)
        assert refused.status_code == 403
        (detail,) = refused.json()["detail"]
        assert detail["loc"] == ["body", "task"] and "--scope code" in detail["msg"]
        # A module of the workers' is code too: the key needs the scope for it as well.
        module = {**SPEC, "task": "os.path:join"}
        assert as_alice.post("/studies", json=module).status_code == 403
        accepted = as_bob.post("/studies", json=body)
        assert accepted.status_code == 201, accepted.text
        study = accepted.json()
        assert study["task"] == "my_task.py:build" and "code" not in study["spec"]
        assert "code" not in as_bob.get(f"/studies/{study['id']}").json()["spec"]
    assert not marker.exists()
    with server.db.session() as session:
        stored = session.get(Study, study["id"]).code
    with zipfile.ZipFile(io.BytesIO(stored)) as archive:
        assert archive.namelist() == ["my_task.py"]


@pytest.mark.parametrize(
    ("change", "loc", "message"),
    [
        ({"code": base64.b64encode(b"not a zip").decode()}, ["body", "code"], "not a zip"),
        ({"code": _zip({"other.py": ""})}, ["body", "code"], "holds no my_task.py"),
        ({"code": _zip({"../evil.py": "", "my_task.py": ""})}, ["body", "code"], "outside"),
        ({"code": None}, ["body", "code"], "send its files"),
        (
            {"code": _zip({"my_task.py": ""}), "task": "digits_mlp", "metrics": None},
            ["body", "code"],
            "registered",
        ),
        (
            {"metrics": None, "code": _zip({"my_task.py": ""})},
            ["body", "metrics"],
            "declares every metric",
        ),
        ({"code": "%%%"}, ["body", "code"], "zip"),
    ],
)
def test_bad_code_is_422_naming_the_field(server, change, loc, message):
    key = services.create_api_key(server.db, owner="bob", scopes=["code"])
    with server.client(key) as client:
        response = client.post("/studies", json={**SPEC, **change})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][: len(loc)] == loc and message.lower() in detail["msg"].lower()


def test_tracking_and_extending_code_need_the_code_scope_too(server):
    from memtune.service.store.repository import Repository
    from memtune.studies.records import StudyStatus

    plain = services.create_api_key(server.db, owner="bob")
    coder = services.create_api_key(server.db, owner="bob", scopes=["code"])
    tracked = {**SMOKE_REGISTERED, "tracking": {"tensorboard": "/etc/memtune-tb"}}
    with server.client(plain) as as_plain, server.client(coder) as as_coder:
        refused = as_plain.post("/studies", json=tracked)
        assert refused.status_code == 403
        assert refused.json()["detail"][0]["loc"] == ["body", "tracking"]
        assert as_coder.post("/studies", json=tracked).status_code == 201
        body = {**SPEC, "code": _zip({"my_task.py": "def build(o, s, d): ...\n"})}
        study = as_coder.post("/studies", json=body).json()
        with server.db.session() as session:  # as if a worker had run it
            Repository(session).find_study(study["id"], None).status = StudyStatus.COMPLETED
        extended = as_plain.post(f"/studies/{study['id']}/extend", json={"seeds": [7]})
        assert extended.status_code == 403, extended.text
        assert extended.json()["detail"][0]["loc"] == ["body", "task"]
        assert (
            as_coder.post(f"/studies/{study['id']}/extend", json={"seeds": [7]}).status_code == 200
        )


def test_open_mode_refuses_code_and_the_admin_may_submit_it(tmp_path):
    from memtune.service.config import Settings

    url = f"sqlite:///{tmp_path / 'admin.db'}"
    running = RunningServer(url)
    try:
        body = {**SPEC, "code": _zip({"my_task.py": "def build(o, s, d): ...\n"})}
        with running.client() as anonymous:
            assert anonymous.post("/studies", json=body).status_code == 403
        running.server.config.app.state.settings = Settings(database_url=url, admin_key="adm1n")
        with running.client("adm1n") as admin:
            assert admin.post("/studies", json=body).status_code == 201
    finally:
        running.stop()


def test_apikey_create_grants_the_code_scope_and_list_shows_it(server):
    def apikey(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "memtune", "apikey", *args],
            env={**os.environ, "DATABASE_URL": server.db.url},
            capture_output=True,
            text=True,
        )

    created = apikey("create", "--owner", "dana", "--scope", "code")
    assert created.returncode == 0 and "with scope code" in created.stderr
    listed = apikey("list").stdout
    assert "dana" in listed and " code " in listed
    bad = apikey("create", "--owner", "dana", "--scope", "root")
    assert bad.returncode == 2 and "invalid choice: 'root'" in bad.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_a_task_file_submitted_over_rest_runs_to_a_verdict_with_its_directory_gone(
    worker_server, tmp_path
):
    key = services.create_api_key(worker_server.db, owner="bob", scopes=["code"])
    source = tmp_path / "project"
    source.mkdir()
    shutil.copy(EXAMPLE, source / "my_task.py")
    spec = source / "study.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "task": "./my_task.py:build"}))
    with Client(worker_server.base, key) as client:
        study = client.submit(spec)
        shutil.rmtree(source)  # sent: the files live in the store now
        done = client.wait(study["id"], progress=False, timeout_s=240)
        assert done["status"] == "completed", done["error"]
        verdict = client.verdict(study["id"])
    assert verdict.headline_metric == "test_accuracy" and len(verdict.arms) == 2
