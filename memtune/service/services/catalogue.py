"""The catalogue: the registered optimizers and tasks, with the plugins that failed to load."""

from __future__ import annotations

from typing import Any

from memtune.service.schemas import (
    OptimizerPublic,
    OptimizersPublic,
    PluginErrorPublic,
    TaskPublic,
    TasksPublic,
)


def _errors(registry: Any) -> list[PluginErrorPublic]:
    return [PluginErrorPublic(**vars(error)) for error in registry.errors]


def list_optimizers(*, offset: int = 0, limit: int = 100) -> OptimizersPublic:
    from memtune.optimizers import OPTIMIZERS

    data = [
        OptimizerPublic(
            name=spec.name,
            origin=spec.origin,
            summary=spec.summary,
            defaults=dict(spec.defaults),
            search_space=[{"kind": type(p).__name__, **vars(p)} for p in spec.space()],
            reduces_to=spec.reduces_to.baseline if spec.reduces_to else None,
            passes_per_step=spec.passes_per_step,
            needs_closure=spec.needs_closure,
            state_bytes_per_param=spec.state_bytes_per_param(),
            source=spec.source,
        )
        for spec in OPTIMIZERS
    ]
    return OptimizersPublic(
        data=data[offset : offset + limit], count=len(data), errors=_errors(OPTIMIZERS)
    )


def list_tasks(*, offset: int = 0, limit: int = 100) -> TasksPublic:
    from memtune.studies.tasks import TASKS

    data = [
        TaskPublic(
            name=task.name,
            origin=task.origin,
            summary=task.summary,
            metric=task.metric,
            mode=task.mode,
            metrics=list(task.metrics),
            directions=dict(task.metrics),
            reports=task.test_metric(task.metric) or task.metric,
            data=task.data,
            options=task.options.model_json_schema(),
        )
        for task in TASKS
    ]
    return TasksPublic(data=data[offset : offset + limit], count=len(data), errors=_errors(TASKS))
