"""The command line meets bad input as the API does: one line naming the file and line, the
URL, or the field, and a documented exit code (tuning/cli.py: EXIT_*); -v adds the
traceback. Every case goes through the real entry point, ``python -m memtune``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import memtune
from memtune.service import services
from memtune.tuning.cli import (
    EXIT_BAD_INPUT,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
)
from tests.service.conftest import RunningServer, free_port
from tests.service.test_api import SMOKE

EXAMPLE = Path(memtune.__file__).parent / "examples" / "my_task.py"


def memtune_cli(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("MEMTUNE_URL", "MEMTUNE_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "memtune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def _one_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        (
            "bad.yaml",
            "name: x\narms: [{optimizer: sgd\ntask: digits_mlp\n",
            "spec: not YAML: line 3, column",
        ),
        ("bad.json", '{"name": "x",\n "arms": [}\n', "spec: not JSON: line 2, column"),
        ("list.yaml", "- 1\n- 2\n", "spec: "),
        (
            "field.yaml",
            "task: digits_mlp\narms: [{optimizer: sgd}]\nbudget: {epochs: 0}\n",
            "budget.epochs:",
        ),
        (
            "task.yaml",
            "task: ./nowhere.py:build\nmetrics: {loss: min}\narms: [{optimizer: sgd}]\n",
            "task: no file ./nowhere.py",
        ),
    ],
)
def test_run_and_submit_name_the_file_and_the_line_of_a_bad_spec(tmp_path, name, text, where):
    spec = tmp_path / name
    spec.write_text(text)
    commands = [["run", str(spec)]]
    if where != "budget.epochs:":  # the service checks the fields; the client reads the file
        commands.append(["submit", str(spec), "--url", "http://127.0.0.1:9"])
    for command in commands:
        done = memtune_cli(*command)
        line = _one_line(done)
        assert done.returncode == EXIT_BAD_INPUT and str(spec) in line and where in line, line


def test_a_missing_spec_file_is_bad_input(tmp_path):
    for command in (["run", str(tmp_path / "no.yaml")], ["submit", str(tmp_path / "no.yaml")]):
        done = memtune_cli(*command)
        assert done.returncode == EXIT_BAD_INPUT and "no such file" in _one_line(done)


def test_a_server_that_is_down_or_a_url_that_is_not_one_is_unreachable(tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump(SMOKE))
    down = f"http://127.0.0.1:{free_port()}"
    done = memtune_cli("submit", str(spec), "--url", down)
    assert done.returncode == EXIT_UNREACHABLE
    assert f"cannot reach a memtune service at {down}" in _one_line(done)
    done = memtune_cli("status", "1", "--url", "htp:/nowhere")
    assert done.returncode == EXIT_UNREACHABLE and "not a URL" in _one_line(done)
    verbose = memtune_cli("-v", "status", "1", "--url", down)
    assert verbose.returncode == EXIT_UNREACHABLE and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("error: cannot reach")


def test_a_refused_key_and_a_missing_study_have_their_own_exit_codes(tmp_path):
    running = RunningServer(f"sqlite:///{tmp_path / 'api.db'}")
    try:
        key = services.create_api_key(running.db, owner="alice")
        spec = tmp_path / "study.yaml"
        spec.write_text(yaml.safe_dump(SMOKE))
        url = ["--url", running.base]
        done = memtune_cli("status", "1", *url)  # keys exist: none given
        assert done.returncode == EXIT_REFUSED and "401" in _one_line(done)
        done = memtune_cli("status", "1", *url, "--key", "mt_wrong")
        assert done.returncode == EXIT_REFUSED and "invalid API key" in _one_line(done)
        done = memtune_cli("verdict", "99", *url, "--key", key)
        assert done.returncode == EXIT_NOT_FOUND and "404" in _one_line(done)
        shutil.copy(EXAMPLE, tmp_path / "my_task.py")
        code_spec = tmp_path / "code.yaml"
        code_spec.write_text(
            yaml.safe_dump(
                {**SMOKE, "task": "./my_task.py:build", "metrics": {"val_accuracy": "max"}}
            )
        )
        done = memtune_cli("submit", str(code_spec), *url, "--key", key)
        line = _one_line(done)
        assert (
            done.returncode == EXIT_REFUSED and "403: body.task:" in line and "--scope code" in line
        )
        # Another server at the URL (here: a path it does not serve) is said to be one.
        done = memtune_cli("status", "1", "--url", running.base + "/nothing", "--key", key)
        assert done.returncode == EXIT_NOT_FOUND and "404" in _one_line(done)
    finally:
        running.stop()


@pytest.mark.slow
@pytest.mark.ray
def test_memtune_run_runs_a_task_file_named_in_yaml(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(EXAMPLE, project / "my_task.py")
    spec = yaml.safe_load((EXAMPLE.parent / "my_task.yaml").read_text())
    spec["budget"] = {"searches": 1, "trials_per_search": 2, "epochs": 2}
    spec["seeds"] = [1, 2]
    (project / "study.yaml").write_text(yaml.safe_dump(spec))
    elsewhere = tmp_path / "elsewhere"  # relative to the spec, not to where memtune runs
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "memtune", "run", str(project / "study.yaml"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=elsewhere,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "am_adamw" in done.stdout and "test_accuracy" in done.stdout
