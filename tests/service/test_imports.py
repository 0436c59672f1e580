"""The API's process stays light: ``memtune serve`` and ``memtune apikey`` import neither torch
nor Ray (a spec is validated without them; the worker, another process, imports both), nor a
tracker's library for a spec that asks for one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.environments import SERVE_IN_THREAD

SERVE_AND_USE = SERVE_IN_THREAD + textwrap.dedent(
    """
    spec = {"task": "digits_mlp", "arms": [{"optimizer": "sam", "fixed": {"base": "adamw"}}]}
    assert client.post("/studies", json=spec).status_code == 201
    bad = {"task": "digits_mlp", "arms": [{"optimizer": "am_sgd", "fixed": {"lam": -1}}]}
    assert client.post("/studies", json=bad).status_code == 422
    assert client.get("/optimizers").status_code == 200
    assert client.get("/tasks").status_code == 200
    tracked = {**spec, "tracking": {"mlflow": "http://127.0.0.1:9", "tensorboard": "/tmp/tb"}}
    assert client.post("/studies", json=tracked).status_code == 403  # open mode: no code scope
    code = {**spec, "task": "my_task.py:build", "metrics": {"val_loss": "min"}, "code": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}
    assert client.post("/studies", json=code).status_code == 403  # open mode: no code scope
    assert client.get("/studies").json()["count"] == 1
    assert cli.main(["apikey", "create", "--owner", "alice", "--scope", "code"]) == 0
    heavy = ("torch", "ray", "mlflow", "tensorboard")
    print(sorted(m for m in heavy if m in sys.modules))
    """
)


@pytest.mark.slow
def test_serve_and_apikey_import_neither_torch_nor_ray_nor_a_tracker(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_USE],
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'light.db'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
