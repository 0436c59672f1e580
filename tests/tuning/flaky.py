"""Trainables for the runner tests: one that crashes once, after its second epoch's
checkpoint (the resume test), one that logs what each report carries (report batching), one
that logs the environment its worker process was started with.

A module of its own so that Ray's workers import it by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ray import tune

from memtune.tuning import trainable
from memtune.tuning.trainable import train_trial


def crash_once_after_two_epochs(config: dict, marker: str) -> None:
    """Use through ``tune.with_parameters(crash_once_after_two_epochs, marker=path)``."""
    trainable.CHECKPOINT_EVERY_S = 0.0  # a checkpoint every epoch (the default: every 10 s)
    checkpoint = tune.get_checkpoint()
    with Path(marker).open("a") as log:  # which epoch each attempt starts from
        log.write(f"{'resumed' if checkpoint else 'fresh'}\n")
    if not checkpoint:
        original_report = tune.report

        def report_then_crash(metrics, checkpoint=None):
            original_report(metrics, checkpoint=checkpoint)
            if metrics["epoch"] == 2:
                raise RuntimeError("simulated worker crash after epoch 2")

        tune.report = report_then_crash
        try:
            train_trial(config)
        finally:
            tune.report = original_report
        return
    train_trial(config)


def log_reports(config: dict, log: str) -> None:
    """Use through ``tune.with_parameters(log_reports, log=path)``: reports are batched as far
    as they can be (no report for time alone), and each report's epochs go to ``log``."""
    trainable.REPORT_EVERY_S = float("inf")
    original_report = tune.report

    def logged(metrics, checkpoint=None):
        epochs = [e["epoch"] for e in metrics[trainable.EARLIER_EPOCHS]] + [metrics["epoch"]]
        with Path(log).open("a") as out:
            out.write(json.dumps({"phase": config["run"].phase, "epochs": epochs}) + "\n")
        original_report(metrics, checkpoint=checkpoint)

    tune.report = logged
    try:
        train_trial(config)
    finally:
        tune.report = original_report


def log_environment(config: dict, log: str) -> None:
    """Use through ``tune.with_parameters(log_environment, log=path)``: appends the value of
    ``PL_DISABLE_FORK`` in this worker (``unset`` without one), then trains."""
    with Path(log).open("a") as out:
        out.write(os.environ.get("PL_DISABLE_FORK", "unset") + "\n")
    train_trial(config)
