"""A finished study written into a store without training anything: the dashboard's tests and
``bench/dashboard_load.py`` read it.

The trials are synthetic (learning curves that saturate, faster near each arm's best lr,
diverging above it) but everything around them is memtune's own: the spec is a
:class:`StudySpec`, the verdict comes from :func:`build_verdict` over the same records, and
trials and epochs are stored through the :class:`Repository` as the worker stores them.
"""

from __future__ import annotations

import math
import random

from memtune.service.services import keep_curves
from memtune.service.services.studies import _queueable
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.studies.records import EpochResult, Phase, StudyStatus, TrialRecord, TrialState
from memtune.studies.spec import StudySpec
from memtune.studies.verdict import build_verdict

ARMS = [
    {"optimizer": "sgd", "baseline": True},
    {"optimizer": "am_sgd"},
    {"optimizer": "adam_cm"},
]
# Per arm: the best log10(lr), the plateau accuracy and how fast it is reached (epochs).
SHAPE = {"sgd": (-1.0, 0.955, 4.0), "am_sgd": (-0.5, 0.962, 3.0), "adam_cm": (-2.5, 0.950, 3.5)}


def _curve(arm: str, lr: float, epochs: int, rng: random.Random) -> tuple[list[float], bool]:
    best_log_lr, plateau, tau = SHAPE[arm]
    distance = math.log10(lr) - best_log_lr
    if distance > 1.2:  # far above the best lr: the loss blows up after a few epochs
        return [0.1 + 0.02 * e for e in range(min(3, epochs))], True
    height = plateau - 0.08 * distance**2
    speed = tau * (1 + abs(distance))
    return [
        height - (height - 0.1) * math.exp(-e / speed) + rng.gauss(0, 0.003)
        for e in range(1, epochs + 1)
    ], False


def _record(arm, phase, seed, config, values, diverged, number, held_out, repeat) -> TrialRecord:
    epochs = []
    for e, value in enumerate(values, start=1):
        metrics = {"val_accuracy": value}
        if held_out and e == len(values) and not diverged:
            metrics["test_accuracy"] = value - 0.004
        epochs.append(
            EpochResult(
                epoch=e,
                train_loss=(1 - value) * 2 if not (diverged and e == len(values)) else math.nan,
                metrics=metrics,
                diverged=diverged and e == len(values),
                epoch_time_s=0.5,
                mean_step_time_s={"sgd": 2e-4, "am_sgd": 2.4e-4, "adam_cm": 3.6e-4}[arm],
                training_time_s=0.5 * e,
                optimizer_state_bytes=1000,
                peak_memory_mb=50.0,
                mean_beta=0.8 - 0.3 * math.exp(-e / 3) if arm == "am_sgd" else None,
                steps=10 * e,
                gradient_evaluations=10 * e,
                optimizer_impl="forloop",
                device="cpu",
            )
        )
    return TrialRecord(
        trial_id=f"{arm}-{phase}-{repeat}-{number}",
        arm=arm,
        phase=phase,
        seed=seed,
        config=config,
        state=TrialState.DIVERGED if diverged else TrialState.COMPLETED,
        epochs=epochs,
        repeat=repeat,
    )


def write_finished_study(
    db: Database,
    *,
    searches: int = 6,
    trials_per_search: int = 4,
    epochs: int = 8,
    name: str = "dashboard",
    seed: int = 0,
) -> int:
    """Stores a completed study with its trials, epochs and verdict; returns its id."""
    rng = random.Random(seed)
    spec = StudySpec.model_validate(
        {
            "name": name,
            "task": "digits_mlp",
            "arms": ARMS,
            "budget": {
                "searches": searches,
                "trials_per_search": trials_per_search,
                "epochs": epochs,
            },
            "seeds": [101, 102],
        }
    )
    held_out = spec.task_spec.held_out
    records: list[TrialRecord] = []
    for arm in ARMS:
        label = arm["optimizer"]
        for search in spec.searches(spec.arms[ARMS.index(arm)]):
            finals = []
            for n in range(trials_per_search):
                lr = 10 ** rng.uniform(-4, 0.5)
                topc = {"topc": rng.choice([5, 10, 20])} if label == "adam_cm" else {}
                config = {"lr": lr, **topc}
                values, diverged = _curve(label, lr, epochs, rng)
                records.append(
                    _record(label, Phase.SEARCH, search.seed, config, values, diverged, n, False,
                            search.index)
                )  # fmt: skip
                finals.append((values[-1] if not diverged else -1.0, config))
            best = max(finals, key=lambda pair: pair[0])[1]
            for s in search.rerun_seeds:
                values, diverged = _curve(label, best["lr"], epochs, rng)
                records.append(
                    _record(label, Phase.SEED, s, best, values, diverged, s, held_out, search.index)
                )
    verdict = build_verdict(spec, records)
    with db.session() as session:
        repository = Repository(session)
        owner = repository.owner_named("local", create=True)
        stored_spec, arms = _queueable(spec)  # as the API stores a submitted spec
        study = repository.add_study(
            owner=owner, spec=stored_spec, arms=arms, total_trials=len(records)
        )
        rows = []
        for record in records:
            last = record.epochs[-1]
            trial = repository.upsert_trial(
                study.id,
                record.trial_id,
                arm=record.arm,
                phase=record.phase,
                seed=record.seed,
                repeat=record.repeat,
                config=record.config,
                state=record.state,
                epochs_done=len(record.epochs),
                best_metric=record.best("val_accuracy", "max"),
                final_metric=record.final("val_accuracy", "max"),
                summary=last.costs(),
            )
            rows += [
                {"trial_id": trial.id, "epoch": e.epoch, "attempt": 1, "values": e.as_dict()}
                for e in record.epochs
            ]
        repository.add_metrics(rows)
        study.status = StudyStatus.COMPLETED
        study.verdict = verdict.to_dict()
        keep_curves(repository, study.id)  # as the worker does when a study completes
        return study.id
