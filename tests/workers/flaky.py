"""A trainable that crashes once, after its second epoch's checkpoint (the resume test).

A module of its own so that Ray's workers import it by name.
"""

from __future__ import annotations

from pathlib import Path

from ray import tune

from memtune.workers import trainable
from memtune.workers.trainable import train_trial


def crash_once_after_two_epochs(config: dict, marker: str) -> None:
    """Use through ``tune.with_parameters(crash_once_after_two_epochs, marker=path)``."""
    trainable.CHECKPOINT_EVERY_S = 0.0  # a checkpoint every epoch (the default: every 2 s)
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
