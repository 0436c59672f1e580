"""MLflow and TensorBoard see every trial's epochs and the verdict, read back with their own
readers; a tracking server that is down or never answers does not fail or stall a study."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import memtune
from memtune.studies.records import TrialState
from memtune.tuning import tracking
from tests.service.conftest import free_port
from tests.tuning.recording import KeptTrials

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("local_ray"),
]

EPOCHS = 2
SPEC = {
    "name": "tracked",
    "task": "digits_mlp",
    "smoke": True,
    "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
    "budget": {"searches": 2, "trials_per_search": 2, "epochs": EPOCHS},
    "seeds": [1, 2],
}
TRIALS = 2 * 2 * (2 + 2)  # arms x searches x (trials + seed runs)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` with a SQLite backend on a free loopback port."""
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("needs mlflow (pip install 'memtune[mlflow]'; the dev extra has it)")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = f"server --host 127.0.0.1 --port {port} --workers 1".split()
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None, server.stderr.read().decode()[-2000:]
        time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_mlflow_sees_the_study_as_a_parent_run_and_every_trial_nested(mlflow_server):
    from mlflow.tracking import MlflowClient

    sink = KeptTrials()
    verdict = memtune.run(
        {**SPEC, "tracking": {"mlflow": mlflow_server, "experiment": "memtune-test"}},
        sink=sink,
        progress=False,
        study_key="tracked-1",
    )
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("memtune-test")
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`memtune.study` = 'tracked-1'"
    )
    assert parent.info.status == "FINISHED" and parent.data.params["task"] == "digits_mlp"
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000,
    )
    assert len(children) == TRIALS == len(sink.records)
    for child in children:
        record = sink.records[child.data.tags["memtune.trial_id"]]
        tags = child.data.tags
        assert (tags["arm"], tags["phase"], tags["seed"]) == (
            record.arm,
            record.phase,
            str(record.seed),
        )
        assert tags["optimizer"] == record.arm and tags["search"] == str(record.repeat)
        assert tags["state"] == "completed" and tags["attempt"] == "1"
        assert set(child.data.params) == set(record.config)  # the config, as params
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [e.metrics["val_accuracy"] for e in record.epochs]
        )
        assert "mean_step_time_s" in child.data.metrics  # the costs too
    # The verdict: an artifact, and its headline numbers as the parent's metrics.
    path = client.download_artifacts(parent.info.run_id, "verdict.json")
    stored = json.loads(Path(path).read_text())
    assert stored["headline_metric"] == verdict.headline_metric == "test_accuracy"
    assert parent.data.metrics["am_sgd.mean"] == pytest.approx(verdict.arms[1].mean)
    assert "am_sgd_vs_sgd.p_adjusted" in parent.data.metrics


def test_a_resumed_study_continues_its_mlflow_parent_run(mlflow_server):
    from mlflow.tracking import MlflowClient

    from memtune.studies.spec import parse_spec

    spec = parse_spec({**SPEC, "name": "resumed"})
    first = tracking.MlflowTracker(mlflow_server, key="memtune-study-7", experiment="resume")
    first.study_started(spec)
    first.study_failed("its worker died")  # closes: everything sent
    second = tracking.MlflowTracker(mlflow_server, key="memtune-study-7", experiment="resume")
    second.study_started(spec)
    second.close()
    assert first.parent is not None and second.parent == first.parent
    client = MlflowClient(tracking_uri=mlflow_server)
    assert client.get_run(first.parent).info.status == "RUNNING"  # going on again


def _black_hole() -> tuple[str, threading.Event]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    stop, held = threading.Event(), []

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        listener.close()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", stop


@pytest.mark.parametrize("server", ["down", "silent"])
def test_a_tracking_server_that_is_down_or_silent_neither_fails_nor_stalls_a_study(
    server, monkeypatch, caplog
):
    pytest.importorskip("mlflow")
    monkeypatch.setattr(tracking, "FLUSH_TIMEOUT_S", 3.0)
    stop = None
    if server == "down":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        url, stop = _black_hole()
    sink = KeptTrials()
    try:
        verdict = memtune.run({**SPEC, "tracking": {"mlflow": url}}, sink=sink, progress=False)
    finally:
        if stop is not None:
            stop.set()
    assert len(sink.records) == TRIALS and len(verdict.arms) == 2
    assert all(r.state == TrialState.COMPLETED for r in sink.records.values())
    assert any(
        "mlflow" in r.getMessage() and "the study goes on" in r.getMessage() for r in caplog.records
    )


def test_tensorboard_reads_every_trials_epochs_and_the_verdict(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = KeptTrials()
    memtune.run({**SPEC, "tracking": {"tensorboard": str(tmp_path)}}, sink=sink, progress=False)
    runs = sorted(p.parent for p in tmp_path.rglob("events.out.tfevents.*"))
    trial_runs = [run for run in runs if run.name != "verdict"]
    assert len(trial_runs) == TRIALS  # one event file per trial
    for run in trial_runs:
        arm, phase = run.parent.parent.name, run.parent.name
        record = sink.records[run.name.split("-", 1)[1]]
        assert (arm, phase, run.name.split("-")[0]) == (
            record.arm,
            record.phase,
            f"seed{record.seed}",
        )
        events = EventAccumulator(str(run))
        events.Reload()
        scalars = events.Scalars("val_accuracy")
        assert [s.step for s in scalars] == list(range(1, EPOCHS + 1))
        assert [s.value for s in scalars] == pytest.approx(
            [e.metrics["val_accuracy"] for e in record.epochs]
        )
        if phase == "seed":
            assert events.Scalars("test_accuracy")[-1].step == EPOCHS
    (verdict_run,) = [run for run in runs if run.name == "verdict"]
    events = EventAccumulator(str(verdict_run), size_guidance={"tensors": 0})
    events.Reload()
    (text,) = events.Tensors("verdict/text_summary")
    assert b"am_sgd" in text.tensor_proto.string_val[0]
