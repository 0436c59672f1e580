"""Studies: submit (checked against the spec, the nodes' inventory, the owner's cap and the
code scope), list, read, cancel, extend, and their verdict and export."""

from __future__ import annotations

import csv
import io
from typing import Any

from memtune.service.schemas import (
    ArmProgress,
    StudiesPublic,
    StudyExtension,
    StudyPublic,
)
from memtune.service.services.common import (
    Caller,
    Conflict,
    Forbidden,
    InvalidSpec,
    TooMany,
)
from memtune.service.services.trials import trial_public
from memtune.service.store.models import Owner, Study
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.studies.code import CodeError, TaskCode
from memtune.studies.nonfinite import to_json
from memtune.studies.records import StudyStatus
from memtune.studies.spec import StudySpec
from memtune.studies.verdict import Verdict


def _study_public(
    repository: Repository,
    study: Study,
    progress: dict[str, dict[str, Any]] | None = None,
    owners: dict[int, str] | None = None,
) -> StudyPublic:
    """A study as the API shows it; a page of studies passes its progress and owners, read
    for the whole page at once."""
    mode = study.spec.get("mode", "max")  # resolved when the study was created
    if progress is None:
        progress = repository.progress([study.id])[study.id]
    if owners is None:
        owners = repository.owner_names([study.owner_id] if study.owner_id else [])
    per_arm_total = study.total_trials // max(len(study.arms), 1)
    arms = []
    for arm in study.arms:
        seen = progress.get(arm.label, {})
        arms.append(
            ArmProgress(
                arm=arm.label,
                optimizer=arm.optimizer,
                baseline=arm.baseline,
                done=seen.get("done", 0),
                total=per_arm_total,
                best=seen.get("min" if mode == "min" else "max"),
            )
        )
    return StudyPublic(
        id=study.id,
        name=study.name,
        task=study.task,
        owner=owners.get(study.owner_id) if study.owner_id else None,
        status=study.status,
        cancel_requested=study.cancel_requested,
        metric=study.spec.get("metric", ""),
        mode=mode,
        trials_done=sum(a.done for a in arms),
        trials_total=study.total_trials,
        progress=arms,
        error=study.error,
        warnings=study.warnings or [],
        created_at=study.created_at,
        started_at=study.started_at,
        finished_at=study.finished_at,
        spec=study.spec,
        spec_schema_version=int(study.spec.get("schema_version", 1)),
    )


def _check_inventory(repository: Repository, parsed: StudySpec, max_age_s: float) -> None:
    """A study the cluster cannot run fails now, not hours later: some node that a worker
    reported within ``max_age_s`` must have the task and every arm's optimizer installed and
    the CPUs and GPUs a trial asks for. Before any worker has reported, nothing is checked."""
    from datetime import timedelta

    nodes = repository.nodes(seen_within=timedelta(seconds=max_age_s))
    if not nodes:
        return
    # A task from code is installed nowhere: its files travel with the study (never imported here).
    names = [] if parsed.from_code else [("task", parsed.task, "tasks")]
    for index, arm in enumerate(parsed.arms):
        names.append((f"arms.{index}.optimizer", arm.optimizer, "optimizers"))
        if arm.optimizer_spec.wraps_base:
            base = arm.fixed.get("base", arm.optimizer_spec.defaults["base"])
            names.append((f"arms.{index}.fixed.base", base, "optimizers"))
    for field, name, kind in names:
        if not any(name in getattr(node, kind) for node in nodes):
            raise InvalidSpec(field, f"{name!r} is installed on none of the {len(nodes)} nodes")
    capable = [n for n in nodes if all(name in getattr(n, kind) for _, name, kind in names)]
    wanted = parsed.resources
    for field, amount, has in (
        ("resources.gpu", wanted.gpu, "gpus"),
        ("resources.cpu", wanted.cpu, "cpus"),
    ):
        most = max(getattr(n, has) for n in capable) if capable else 0.0
        if amount > most:
            raise InvalidSpec(
                field,
                f"{amount:g} per trial requested; the nodes that have this study's task and "
                f"optimizers offer at most {most:g}",
            )


def _check_capacity(repository: Repository, owner: Owner, max_active: int) -> None:
    active = repository.active_studies(owner.id)
    if active >= max_active:
        raise TooMany(
            f"{owner.name} has {active} studies queued or running (the cap is {max_active}, "
            "MEMTUNE_MAX_ACTIVE_STUDIES): wait for one to end, or cancel one"
        )


def _submitted_code(caller: Caller, spec: StudySpec, code: bytes | None) -> TaskCode | None:
    """The files of a task from code, checked as data: only a key with the code scope (or
    the admin) may submit one, since the workers will import and run them."""
    if not spec.from_code:
        if code is not None:
            raise InvalidSpec(
                "code", f"{spec.task} is a registered task; only a task from code has files"
            )
        return None
    if not caller.may_submit_code:
        raise Forbidden(
            "task",
            f"{spec.task} is a task from code, which the workers would import and run: it needs "
            "an API key with the code scope (an admin creates one: memtune apikey create "
            "--owner NAME --scope code)",
        )
    if code is None:
        if spec.task.split(":")[0].endswith(".py"):
            raise InvalidSpec(
                "code", f"{spec.task} names a file: send its files (memtune submit does)"
            )
        return None  # module:function of a module installed on the workers
    try:
        return TaskCode.received(code, spec.task)
    except CodeError as error:
        raise InvalidSpec(error.field, error.message) from None


def create_study(
    db: Database,
    *,
    caller: Caller,
    spec: StudySpec,
    code: bytes | None = None,
    inventory_max_age_s: float = 600.0,
    max_active: int = 20,
) -> StudyPublic:
    """Queues ``spec`` (validated by its model, without torch) for a worker; ``code``: the
    files of a task from code (a zip), stored with it."""
    files = _submitted_code(caller, spec, code)
    if spec.tracking is not None and not caller.may_submit_code:
        # Where the worker writes files and which servers it calls: as much the operator's
        # trust as code is (MLFLOW_TRACKING_URI on the workers serves everyone).
        raise Forbidden(
            "tracking",
            "a spec's own tracking makes the workers write files and call servers it names: it "
            "needs an API key with the code scope (the operator's MLFLOW_TRACKING_URI on the "
            "workers tracks every study)",
        )
    resolved, arms = _queueable(spec)
    with db.session() as session:
        repository = Repository(session)
        _check_inventory(repository, spec, inventory_max_age_s)
        if caller.owner_id is None:  # the admin submits as the owner "admin"
            owner = repository.owner_named("admin", create=True)
        else:
            owner = session.get(Owner, caller.owner_id)
        _check_capacity(repository, owner, max_active)
        study = repository.add_study(
            owner=owner,
            spec=resolved,
            arms=arms,
            total_trials=spec.total_trials,
            warnings=spec.warnings,
            code=files.archive if files else None,
        )
        return _study_public(repository, study)


def _queueable(parsed: StudySpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stored form of a validated spec (metric and mode resolved) and its arms' rows."""
    resolved = parsed.model_dump(mode="json")
    resolved["metric"], resolved["mode"] = parsed.resolved_metric, parsed.resolved_mode
    arms = [
        {"label": a.label, "optimizer": a.optimizer, "baseline": a.baseline} for a in parsed.arms
    ]
    return resolved, arms


def extend_study(
    db: Database,
    *,
    caller: Caller,
    study_id: int,
    extension: StudyExtension,
    inventory_max_age_s: float = 600.0,
    max_active: int = 20,
) -> StudyPublic:
    """Queues a completed study again with more seeds, arms, searches or other ranges.
    Everything that already ran is reused: new seeds re-run each search's chosen config, a new
    arm and each new search run with the study's budget, and an arm whose ranges change
    searches anew while its earlier searches are set aside; the verdict is recomputed."""
    from memtune.studies.spec import SpecError, parse_spec

    if not (extension.seeds or extension.arms or extension.searches or extension.space):
        raise InvalidSpec("seeds", "give more seeds, arms, searches or a space to extend with")
    with db.session() as session:
        repository = Repository(session)
        study = repository.find_study(study_id, caller.owner_id)
        if study.status != StudyStatus.COMPLETED:
            raise Conflict(f"study {study_id} is {study.status}: only a completed study extends")
        try:
            parsed = parse_spec(_extended_spec(study.spec, extension))
        except SpecError as error:
            raise InvalidSpec(error.field, error.message) from None
        if (parsed.from_code or parsed.tracking is not None) and not caller.may_submit_code:
            # Extending runs the stored code (and tracking) again: the same scope as submitting.
            field = "task" if parsed.from_code else "tracking"
            raise Forbidden(field, f"this study's {field} needs an API key with the code scope")
        _check_inventory(repository, parsed, inventory_max_age_s)
        _check_capacity(repository, session.get(Owner, study.owner_id), max_active)
        resolved, arm_rows = _queueable(parsed)
        repository.reopen_study(
            study,
            spec=resolved,
            arms=arm_rows,
            total_trials=parsed.total_trials,
            warnings=parsed.warnings,
        )
        return _study_public(repository, study)


def _extended_spec(stored: dict[str, Any], extension: StudyExtension) -> dict[str, Any]:
    """The stored spec with the extension applied (checked by the caller's parse)."""
    from memtune.studies.spec import parse_spec

    spec = dict(stored)
    current = parse_spec(spec)  # the budget and seeds as the study ran them
    spec["seeds"] = [*(spec.get("seeds") or []), *extension.seeds]
    budget = dict(spec.get("budget") or {})
    if extension.searches is not None:
        if extension.searches < current.searches_per_arm:
            raise InvalidSpec(
                "searches",
                f"the study ran {current.searches_per_arm} searches per arm: give at least as many",
            )
        budget.pop("repeats", None)
        budget["searches"] = extension.searches
    spec["budget"] = budget
    arms = [dict(arm) for arm in spec.get("arms") or []]
    labels = [arm.get("name") or arm["optimizer"] for arm in arms]
    for label, overrides in extension.space.items():
        if label not in labels:
            raise InvalidSpec(f"space.{label}", f"no arm {label!r}; the arms: {', '.join(labels)}")
        arm = arms[labels.index(label)]
        # the searches it ran so far were under the old range: set them aside
        arm["set_aside"] = arm.get("set_aside", 0) + current.searches_per_arm
        arm["space"] = {
            **(arm.get("space") or {}),
            **{name: o.model_dump(exclude_none=True) for name, o in overrides.items()},
        }
    spec["arms"] = [*arms, *(a.model_dump() for a in extension.arms)]
    spec["extensions"] = spec.get("extensions", 0) + 1  # a look after a verdict: said in it
    return spec


def list_studies(
    db: Database,
    *,
    caller: Caller,
    status: str | None,
    task: str | None,
    optimizer: str | None,
    offset: int,
    limit: int,
) -> StudiesPublic:
    with db.session() as session:
        repository = Repository(session)
        rows, count = repository.list_studies(
            owner_id=caller.owner_id,
            status=status,
            task=task,
            optimizer=optimizer,
            offset=offset,
            limit=limit,
        )
        progress = repository.progress([s.id for s in rows])  # one query for the page
        owners = repository.owner_names([s.owner_id for s in rows if s.owner_id])
        return StudiesPublic(
            data=[_study_public(repository, s, progress[s.id], owners) for s in rows],
            count=count,
        )


def get_study(db: Database, *, caller: Caller, study_id: int) -> StudyPublic:
    with db.session() as session:
        repository = Repository(session)
        return _study_public(repository, repository.find_study(study_id, caller.owner_id))


def cancel_study(db: Database, *, caller: Caller, study_id: int) -> StudyPublic:
    with db.session() as session:
        repository = Repository(session)
        study = repository.find_study(study_id, caller.owner_id)
        if study.status.ended:
            raise Conflict(f"study {study_id} is {study.status}: nothing to cancel")
        if study.status == StudyStatus.QUEUED:
            study.status = StudyStatus.CANCELLED
            study.error = "cancelled before it started"
        study.cancel_requested = True  # a running study: its worker stops the trials
        session.flush()
        return _study_public(repository, study)


def get_verdict(db: Database, *, caller: Caller, study_id: int) -> Verdict:
    """The verdict as stored, read through its schema (verdicts of schema 1 upgraded)."""
    with db.session() as session:
        study = Repository(session).find_study(study_id, caller.owner_id)
        if study.status != StudyStatus.COMPLETED or study.verdict is None:
            raise Conflict(
                f"study {study_id} is {study.status}: the verdict comes when it completes"
            )
        return Verdict.from_dict(study.verdict)


def export_study(db: Database, *, caller: Caller, study_id: int, format: str) -> tuple[str, str]:
    """The study's trials with every epoch, as (media type, body)."""
    import json

    with db.session() as session:
        repository = Repository(session)
        study = repository.find_study(study_id, caller.owner_id)
        trials = repository.trials_of(study_id)
        history = repository.metrics_of([t.id for t in trials])
        if format == "json":
            document = {
                "study": _study_public(repository, study).model_dump(mode="json"),
                "verdict": study.verdict,
                "trials": [
                    {
                        **trial_public(t).model_dump(mode="json"),
                        "history": [{"epoch": m.epoch, **m.values} for m in history[t.id]],
                    }
                    for t in trials
                ],
            }
            return "application/json", json.dumps(to_json(document))
        rows = [
            {
                "study": study.id,
                "arm": t.arm,
                "phase": t.phase,
                "seed": t.seed,
                "trial": t.id,
                "state": str(t.state),
                **m.values,
            }
            for t in trials
            for m in history[t.id]
        ]
        columns: list[str] = []
        for row in rows:
            columns += [key for key in row if key not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns or ["study"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return "text/csv", buffer.getvalue()
