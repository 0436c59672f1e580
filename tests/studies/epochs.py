"""An epoch as a trial reports it, with costs that make time to target easy to read: one second
and ten optimizer steps (and gradient evaluations) an epoch."""

from __future__ import annotations

from memtune.studies.records import EpochResult


def epoch(number: int, metrics: dict[str, float], diverged: bool = False) -> EpochResult:
    return EpochResult(
        epoch=number,
        train_loss=0.1,
        metrics=metrics,
        diverged=diverged,
        epoch_time_s=1.0,
        mean_step_time_s=0.01,
        training_time_s=float(number),
        optimizer_state_bytes=100,
        peak_memory_mb=10.0,
        steps=10 * number,
        gradient_evaluations=10 * number,
        optimizer_impl="fused",
        device="cpu",
    )
