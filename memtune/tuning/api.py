"""``memtune.run``: a study from Python, for a notebook or a script; no YAML needed.

    import memtune
    from memtune.studies.verdict import format_verdict
    from my_task import build

    verdict = memtune.run(
        {"arms": [{"optimizer": "adamw", "baseline": True}, {"optimizer": "am_adamw"}],
         "metrics": {"val_loss": "min", "val_accuracy": "max"}},
        task=build,
    )
    print(format_verdict(verdict))

The builder is never pickled: the file that defines it is read now and imported again by path
in every trial (``memtune.studies.code``), so it must live in a ``.py`` file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memtune.studies.code import CodeError, TaskCode
from memtune.studies.spec import SpecError, StudySpec, attach_code, load_spec, parse_spec

if TYPE_CHECKING:
    from memtune.studies.verdict import Verdict
    from memtune.tuning.runner import StudyRunner
    from memtune.tuning.sinks import ResultsSink

__all__ = ["progress_bar", "run", "study_spec"]


def study_spec(
    spec: StudySpec | Mapping[str, Any] | str | Path,
    *,
    task: Callable[..., Any] | str | None = None,
    task_dir: str | Path | None = None,
) -> StudySpec:
    """The spec ``run`` runs: a file is loaded (its task's files read from its directory), a
    mapping or a spec is validated; ``task`` (a builder function, or a reference) replaces the
    spec's, its files read now. Raises SpecError naming the field."""
    if isinstance(spec, str | Path):
        if task is not None:
            raise SpecError("task", "give the task in the spec file or as task=, not both")
        return load_spec(spec)
    data = spec.model_dump() if isinstance(spec, StudySpec) else dict(spec)
    code: TaskCode | None = None
    if task_dir is not None:
        data["task_dir"] = str(task_dir)
    if callable(task):
        try:
            data["task"], code = TaskCode.for_function(
                task, directory=Path(task_dir).resolve() if task_dir else None
            )
        except CodeError as error:
            raise SpecError(error.field, error.message) from None
    elif task is not None:
        data["task"] = task
    parsed = parse_spec(data)
    if code is not None:
        return parsed.with_code(code)
    if isinstance(spec, StudySpec) and spec.task_code is not None and task is None:
        return parsed.with_code(spec.task_code)
    return attach_code(parsed, Path.cwd())


def progress_bar(
    spec: StudySpec, *, quiet: bool = False
) -> tuple[Any, Callable[[StudyRunner], None]]:
    """A tqdm bar over the study's trials, with each arm's best value so far, and the
    runner's progress callback that moves it."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=spec.total_trials,
        unit="trial",
        desc=spec.name,
        disable=quiet,
        file=sys.stderr,
        mininterval=1.0,
    )

    def progress(runner: StudyRunner) -> None:
        best = runner.best_by_arm()
        bar.set_postfix_str(
            ", ".join(f"{arm} {value:.4g}" for arm, value in best.items()), refresh=False
        )
        bar.update(runner.trials_done - bar.n)  # tqdm redraws at most once per mininterval

    return bar, progress


def run(
    spec: StudySpec | Mapping[str, Any] | str | Path,
    *,
    task: Callable[..., Any] | str | None = None,
    task_dir: str | Path | None = None,
    sink: ResultsSink | None = None,
    progress: bool = True,
    **runner_options: Any,
) -> Verdict:
    """Runs a study to its verdict on the local Ray (or ``RAY_ADDRESS``), with a progress bar.

    ``spec``: a StudySpec, a mapping of its fields, or a YAML / JSON file. ``task``: the builder
    ``build(options, seed, device) -> TaskRun`` (a function defined in a ``.py`` file) or a
    reference (``my_task.py:build``); with it, ``metrics`` in the spec declares what its
    ``evaluate`` returns. ``task_dir``: ship that directory with the task's file. The other
    keyword arguments go to :class:`~memtune.tuning.runner.StudyRunner`.
    """
    from memtune.tuning.cluster import configure_ray_environment

    configure_ray_environment()  # before Ray is imported
    from memtune.tuning.runner import StudyRunner

    parsed = study_spec(spec, task=task, task_dir=task_dir)
    bar, advance = progress_bar(parsed, quiet=not progress)
    try:
        return StudyRunner(parsed, sink, progress=advance, **runner_options).run()
    finally:
        bar.close()
