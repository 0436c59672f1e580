"""Studies of a task from the user's code, end to end on a local Ray: from Python
(``memtune.run`` with a function), and what a user gets for a builder that fails, returns the
wrong thing, or whose metrics are not the declared ones: the study stops at its first trial
with the field named. The same task from YAML through ``memtune run``: tests/test_cli.py; on
two nodes with the file deleted: tests/service/test_distributed.py."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import pytest

import memtune
from memtune.studies.records import TrialState
from memtune.studies.spec import SpecError
from tests.tuning.recording import KeptTrials

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("local_ray"),
]

EXAMPLE = Path(memtune.__file__).parent / "examples" / "my_task.py"
ARMS = [{"optimizer": "adamw", "baseline": True}, {"optimizer": "am_adamw"}]
METRICS = {"val_loss": "min", "val_accuracy": "max"}
BUDGET = {"searches": 2, "trials_per_search": 2, "epochs": 2}


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _spec(**changes) -> dict:
    base = {"name": "code", "arms": ARMS, "metrics": METRICS, "metric": "val_accuracy"}
    return {**base, "budget": BUDGET, "seeds": [1, 2], **changes}


def test_memtune_run_with_a_function_gives_a_verdict_on_the_test_split(tmp_path):
    copy = shutil.copy(EXAMPLE, tmp_path / "wine_task.py")
    build = _import(Path(copy), "wine_task").build
    sink = KeptTrials()
    verdict = memtune.run(_spec(), task=build, sink=sink, progress=False)
    assert verdict.metric == "val_accuracy" and verdict.headline_metric == "test_accuracy"
    assert {a.arm for a in verdict.arms} == {"adamw", "am_adamw"}
    assert len(sink.records) == 2 * 2 * (2 + 2)  # arms x searches x (trials + seed runs)
    assert all(r.state == TrialState.COMPLETED for r in sink.records.values())
    seeded = [r for r in sink.records.values() if r.phase == "seed"]
    assert all("test_accuracy" in r.epochs[-1].metrics for r in seeded)
    searched = [r for r in sink.records.values() if r.phase == "search"]
    assert not any("test_accuracy" in e.metrics for r in searched for e in r.epochs)


def _broken(tmp_path: Path, body: str, **changes) -> tuple[SpecError, KeptTrials, float]:
    path = tmp_path / "broken.py"
    path.write_text(
        "import torch\nfrom memtune.studies.runs import TaskRun\n"
        f"exec(open({str(EXAMPLE)!r}).read())\n{body}"
    )
    sink = KeptTrials()
    started = time.monotonic()
    with pytest.raises(SpecError) as error:
        memtune.run(
            _spec(budget={"searches": 4, "trials_per_search": 3, "epochs": 2}, **changes),
            task=str(path.name) + ":build",
            task_dir=tmp_path,
            sink=sink,
            progress=False,
        )
    return error.value, sink, time.monotonic() - started


def test_a_builder_that_raises_stops_the_study_at_once_with_its_traceback_on_the_trial(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    error, sink, _ = _broken(
        tmp_path, "def build(options, seed, device):\n    raise RuntimeError('no data here')\n"
    )
    assert error.field == "task" and "no data here" in error.message
    assert "raised RuntimeError" in error.message and "holds the traceback" in error.message
    failed = [r for r in sink.records.values() if r.state == TrialState.ERROR]
    assert failed and "RuntimeError: no data here" in failed[0].traceback
    assert "broken.py" in failed[0].traceback  # the user's own line, in the trial's traceback
    # It would fail the same way again: not retried (a retry only delayed the stop).
    assert all(r.attempt == 1 for r in failed), [r.attempt for r in failed]
    assert len(sink.records) < 2 * 4 * 5  # stopped, not run to the end
    assert sink.failed and "no data here" in sink.failed


def test_a_builder_that_returns_the_wrong_type_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    error, _, _ = _broken(tmp_path, "def build(options, seed, device):\n    return 42\n")
    assert error.field == "task" and "returned int, not a TaskRun" in error.message


def test_metrics_that_evaluate_never_returns_stop_the_study_at_the_first_trial(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    error, sink, _ = _broken(
        tmp_path,
        "def build(options, seed, device):\n    return WineRun(options, seed, device)\n",
        metrics={"val_loss": "min", "val_acc": "max"},
        metric="val_acc",
    )
    assert error.field == "metrics"
    assert "val_acc" in error.message and "val_accuracy" in error.message  # asked vs returned
    assert len(sink.records) <= 4  # the trials already running when the first result came


def test_a_cluster_joined_before_the_study_without_its_files_is_refused(tmp_path, monkeypatch):
    # RAY_ADDRESS names a cluster, and Ray is up already (this package's): the job's runtime
    # environment cannot carry the files any more, so the study says so instead of failing
    # on every other node.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6390")
    copy = shutil.copy(EXAMPLE, tmp_path / "late_task.py")
    build = _import(Path(copy), "late_task").build
    with pytest.raises(SpecError) as error:
        memtune.run(_spec(), task=build, progress=False)
    assert error.value.field == "task" and "py_modules" in error.value.message
