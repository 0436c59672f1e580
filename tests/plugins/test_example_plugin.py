"""The example plugin (plugins/memtune-example) installed into a fresh environment: its task
and optimizer register through the entry points, run a study end to end, pass the optimizer
contract, and leave the API process free of torch and Ray; a broken plugin beside it is an
error line, never a crash. The environment is removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.environments import ROOT, SERVE_IN_THREAD, fresh_venv

PLUGIN = ROOT / "plugins" / "memtune-example"

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(600)]

SERVE = SERVE_IN_THREAD + textwrap.dedent(
    """
    tasks = client.get("/tasks").json()
    spec = {"task": "wine_mlp", "arms": [{"optimizer": "lion", "fixed": {"lr": 0.01}}]}
    created = client.post("/studies", json=spec).status_code
    unknown = client.post("/studies", json={**spec, "task": "nope"}).status_code
    print(json.dumps({
        "tasks": [t["name"] + " " + t["origin"] for t in tasks["data"]],
        "errors": [e["name"] for e in tasks["errors"]],
        "created": created,
        "unknown": unknown,
        "heavy": sorted(m for m in ("torch", "ray") if m in sys.modules),
    }))
    """
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv seeing this environment's packages and checkout (not as site dirs: the
    dependencies only), with the example plugin and a broken plugin installed in it."""
    home = tmp_path_factory.mktemp("plugin-venv")
    python = fresh_venv(home, PLUGIN, checkout=True)
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    broken = site / "broken_plugin-0.1.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (broken / "entry_points.txt").write_text("[memtune.tasks]\nbroken = no_such_module:tasks\n")
    return python.parent.parent


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")},
        "DATABASE_URL": f"sqlite:///{cwd / 'plugin.db'}",
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_plugin_task_and_optimizer_are_listed_with_their_origin_and_a_broken_one_is_an_error(
    venv, tmp_path
):
    done = _run(venv, str(venv / "bin" / "python"), "-m", "memtune", "list", "tasks", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wine_mlp" in done.stdout and "from memtune-example 0.1.0" in done.stdout
    assert "error: memtune.tasks plugin 'broken' from broken-plugin 0.1" in done.stdout
    assert "ModuleNotFoundError" in done.stdout
    optimizers = _run(
        venv, str(venv / "bin" / "python"), "-m", "memtune", "list", "optimizers", cwd=tmp_path
    )
    assert "lion" in optimizers.stdout


def test_plugin_optimizer_passes_the_contract_on_demand(venv, tmp_path):
    done = _run(
        venv, str(venv / "bin" / "python"), "-m", "memtune", "check-optimizer", "lion", cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lion: 7 passed, 0 failed" in done.stdout


def test_api_with_the_plugin_installed_imports_neither_torch_nor_ray(venv, tmp_path):
    done = _run(venv, str(venv / "bin" / "python"), "-c", SERVE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "wine_mlp memtune-example 0.1.0" in seen["tasks"] and seen["errors"] == ["broken"]
    assert (seen["created"], seen["unknown"]) == (201, 422)
    assert seen["heavy"] == []


def test_a_smoke_study_runs_the_plugins_task_and_optimizer_end_to_end(venv, tmp_path):
    spec = {
        "name": "plugin",
        "task": "wine_mlp",
        "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "lion"}],
        "budget": {"searches": 1, "trials_per_search": 2, "epochs": 2},
        "seeds": [1, 2],
    }
    (tmp_path / "plugin.json").write_text(json.dumps(spec))
    done = _run(
        venv,
        str(venv / "bin" / "python"),
        "-m",
        "memtune",
        "run",
        "plugin.json",
        "--smoke",
        "--quiet",
        "--json",
        "out.json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["status"] == "completed" and len(document["trials"]) == 8
    arms = {a["arm"]: a for a in document["verdict"]["arms"]}
    (search,) = arms["lion"]["searches"]
    assert search["config"] and len(search["seed_values"]) == 2
    assert document["verdict"]["headline_metric"] == "test_accuracy"
