"""Curves, what the dashboard plots: aggregated on the server per arm and epoch, kept in the
store when a study completes."""

from __future__ import annotations

import math
from typing import Any

from memtune.service.schemas import (
    ArmCurves,
    SearchPoint,
    StudyCurves,
    TrialCurve,
)
from memtune.service.services.common import (
    Caller,
)
from memtune.service.store.models import Study
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.studies.records import Phase, StudyStatus


def _sampled(items: list[Any], at_most: int) -> list[Any]:
    """At most ``at_most`` items, evenly spread over ``items`` (the first and last kept)."""
    if len(items) <= at_most:
        return items
    if at_most == 1:
        return items[:1]
    step = (len(items) - 1) / (at_most - 1)
    return [items[round(i * step)] for i in range(at_most)]


def _per_epoch(histories: list[list[dict[str, Any]]], key: str) -> list[list[float]]:
    """values[e] = every run's ``key`` at epoch e + 1 (runs that lack it left out)."""
    epochs = max((m["epoch"] for history in histories for m in history), default=0)
    values: list[list[float]] = [[] for _ in range(epochs)]
    for history in histories:
        for m in history:
            value = m.get(key)
            if isinstance(value, int | float) and m["epoch"] >= 1:
                values[m["epoch"] - 1].append(float(value))
    return values


def _interval(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean and 95% Student-t interval of one arm's values at one epoch (the verdict's)."""
    if not values:
        return None, None, None
    from memtune.studies.stats import mean_interval  # scipy: only when a page asks

    found = mean_interval(values)
    return found.mean, found.low, found.high


SEARCH_CURVES = 30  # search trials per arm whose curve GET /studies/{id}/curves sends by default


def get_curves(
    db: Database, *, caller: Caller, study_id: int, search_curves: int = SEARCH_CURVES
) -> StudyCurves:
    """Per arm: the seed runs' mean metric per epoch with its 95% interval, a sample of the
    search trials' curves, and every search trial's config and final value.

    A completed study's default answer was kept when it completed (:func:`keep_curves`);
    anything else is read from its trials.
    """
    with db.session() as session:
        repository = Repository(session)
        study = repository.find_study(study_id, caller.owner_id)
        kept = study.status == StudyStatus.COMPLETED and study.curves is not None
        if kept and search_curves == SEARCH_CURVES:
            return StudyCurves.model_validate(study.curves)
        return study_curves(repository, study, search_curves)


def keep_curves(repository: Repository, study_id: int) -> None:
    """Keeps a study's curves as they are now: the worker calls it as the study completes."""
    study = repository.find_study(study_id, None)
    study.curves = study_curves(repository, study, SEARCH_CURVES).model_dump(mode="json")


def study_curves(repository: Repository, study: Study, search_curves: int) -> StudyCurves:
    """What :func:`get_curves` answers, read from the study's trials and epochs.

    Reads the metric rows of the seed runs and of the sampled search trials only, so a study
    of 1,000 trials x 100 epochs costs a few thousand rows, not 100,000.
    """
    metric, mode = study.spec.get("metric", ""), study.spec.get("mode", "max")
    trials = repository.trials_of(study.id)
    arms = []
    for arm in study.arms:
        own = [t for t in trials if t.arm == arm.label]
        search = [t for t in own if t.phase == Phase.SEARCH]
        seeds = [t for t in own if t.phase == Phase.SEED and t.state.ended]
        sampled = _sampled(search, search_curves)
        histories = repository.metric_values(
            [t.id for t in seeds + sampled], [metric, "training_time_s", "mean_beta"]
        )
        seed_histories = [histories[t.id] for t in seeds]
        per_epoch = _per_epoch(seed_histories, metric)
        intervals = [_interval([v for v in vs if math.isfinite(v)]) for vs in per_epoch]
        times = _per_epoch(seed_histories, "training_time_s")
        betas = _per_epoch(seed_histories, "mean_beta")
        arms.append(
            ArmCurves(
                arm=arm.label,
                optimizer=arm.optimizer,
                baseline=arm.baseline,
                seed_runs=len(seeds),
                epochs=list(range(1, len(per_epoch) + 1)),
                mean=[i[0] for i in intervals],
                ci_low=[i[1] for i in intervals],
                ci_high=[i[2] for i in intervals],
                time_s=[sum(v) / len(v) if v else None for v in times],
                mean_beta=[sum(v) / len(v) if v else None for v in betas] if any(betas) else None,
                search_curves=[
                    TrialCurve(
                        trial_id=t.id,
                        values=[m.get(metric) for m in histories[t.id]],
                        time_s=[m.get("training_time_s") for m in histories[t.id]],
                    )
                    for t in sampled
                ],
                search=[
                    SearchPoint(
                        trial_id=t.id,
                        number=n,
                        config=t.config,
                        state=t.state,
                        final=t.final_metric,
                        best=t.best_metric,
                    )
                    for n, t in enumerate(search, start=1)
                ],
            )
        )
    return StudyCurves(study_id=study.id, metric=metric, mode=mode, arms=arms)
