"""The logic the routes call: keyword-only functions over a Database, returning schemas.

Domain errors are exceptions of this module (and the repository's NotFound); the app maps them
to HTTP in one place. Nothing here imports torch or Ray: the spec and the registries are
torch-free, and the worker runs the checks that need torch.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from memtune.service.config import Settings
from memtune.service.schemas import (
    ArmCurves,
    ArmProgress,
    EpochMetrics,
    OptimizerPublic,
    OptimizersPublic,
    PluginErrorPublic,
    SearchPoint,
    StudiesPublic,
    StudyCurves,
    StudyExtension,
    StudyPublic,
    TaskPublic,
    TasksPublic,
    TrialCurve,
    TrialDetail,
    TrialPublic,
    TrialsPublic,
)
from memtune.service.store.models import Owner, Study, Trial
from memtune.service.store.repository import NotFound, Repository
from memtune.service.store.session import Database
from memtune.studies.code import CodeError, TaskCode
from memtune.studies.nonfinite import to_json
from memtune.studies.records import Phase, StudyStatus
from memtune.studies.spec import StudySpec
from memtune.studies.verdict import Verdict

__all__ = [
    "Caller",
    "Conflict",
    "Forbidden",
    "InvalidSpec",
    "NotFound",
    "TooMany",
    "Unauthorized",
]

OPEN_OWNER = "local"


class Unauthorized(PermissionError):
    """No valid API key where one is needed."""


class TooMany(RuntimeError):
    """An owner's queued and running studies are at the configured cap."""


class Conflict(RuntimeError):
    """The request does not fit the resource's state (cancel a finished study, say)."""


class Forbidden(PermissionError):
    """A valid key that may not do this; ``field`` names what needs the scope."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class InvalidSpec(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


# What a key may be granted beyond its owner's studies. "code": submit a task from code, which
# the workers import and run with their own rights (README: "Tasks from code").
CODE_SCOPE = "code"
SCOPES = (CODE_SCOPE,)


@dataclass(frozen=True)
class Caller:
    owner_id: int | None  # None: the admin, who sees every owner's studies
    owner: str
    scopes: frozenset[str] = frozenset()

    @property
    def may_submit_code(self) -> bool:
        return self.owner_id is None or CODE_SCOPE in self.scopes  # the admin may


# -- API keys ------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(db: Database, *, owner: str, scopes: Iterable[str] = ()) -> str:
    """A new key for ``owner`` (created if new), with ``scopes`` (of :data:`SCOPES`); the key
    is returned once, its hash stored."""
    scopes = sorted(set(scopes))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    key = "mt_" + secrets.token_urlsafe(32)
    with db.session() as session:
        repository = Repository(session)
        repository.add_api_key(
            repository.owner_named(owner, create=True), hash_key(key), key[:10], scopes
        )
    _AUTHENTICATED.clear()
    return key


def list_api_keys(db: Database) -> list[dict[str, Any]]:
    """Every key: its prefix (the first characters, to tell keys apart), owner and dates."""
    with db.session() as session:
        return [
            {
                "prefix": key.prefix,
                "owner": key.owner.name,
                "scopes": list(key.scopes or ()),
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
            }
            for key in Repository(session).api_keys()
        ]


def revoke_api_key(db: Database, *, prefix: str) -> int:
    """Revokes the keys that start with ``prefix``; returns how many (0: none matched)."""
    with db.session() as session:
        revoked = Repository(session).revoke_api_keys(prefix)
    _AUTHENTICATED.clear()
    return revoked


def is_open(db: Database, settings: Settings) -> bool:
    """Open mode: no key in the store and no admin key; the server then binds loopback only."""
    if settings.admin_key:
        return False
    try:  # what authenticating no key found, if it did within the cache's seconds
        expiry, caller = _AUTHENTICATED[(db.url, None, False)]
        if expiry >= time.monotonic():
            return isinstance(caller, Caller)
    except KeyError:
        pass
    with db.session() as session:
        return not Repository(session).has_api_keys()


# (database url, key hash or None, whether an admin key is set) -> (expiry, the caller or the
# refusal); a few seconds of memory so that a request costs no authentication query (a revoke
# takes effect within them).
_AUTHENTICATED: dict[tuple[str, str | None, bool], tuple[float, Caller | Unauthorized]] = {}


def authenticate(db: Database, settings: Settings, *, key: str | None) -> Caller:
    """The caller a key names (or open mode's owner); raises :class:`Unauthorized`."""
    found = authenticate_cached(settings, db=db, key=key)
    if found is None:
        found = (time.monotonic() + settings.auth_cache_s, _authenticate(db, settings, key))
        if len(_AUTHENTICATED) > 10_000:  # bounded: random keys cannot grow it forever
            _AUTHENTICATED.clear()
        _AUTHENTICATED[_auth_cache_key(db, settings, key)] = found
    if isinstance(found[1], Unauthorized):
        raise found[1]
    return found[1]


def _auth_cache_key(db: Database, settings: Settings, key: str | None) -> tuple:
    return (db.url, hash_key(key) if key else None, bool(settings.admin_key))


def authenticate_cached(
    settings: Settings, *, db: Database, key: str | None
) -> tuple[float, Caller | Unauthorized] | None:
    """What :func:`authenticate` would answer without touching the database, or ``None``
    when that needs a query (the API runs the query in a thread, the rest on its loop)."""
    if key and settings.admin_key and hmac.compare_digest(key, settings.admin_key):
        return (float("inf"), Caller(owner_id=None, owner="admin"))
    cached = _AUTHENTICATED.get(_auth_cache_key(db, settings, key))
    if cached is None or cached[0] < time.monotonic():
        return None
    return cached


def _authenticate(db: Database, settings: Settings, key: str | None) -> Caller | Unauthorized:
    """One query: the key's owner, or (no key) whether keys exist and the open owner."""
    with db.session() as session:
        repository = Repository(session)
        if key:
            found = repository.key_and_owner(hash_key(key))
            if found is not None:
                api_key, owner = found
                scopes = frozenset(api_key.scopes or ())
                return Caller(owner_id=owner.id, owner=owner.name, scopes=scopes)
            return Unauthorized("invalid API key")
        if settings.admin_key or repository.has_api_keys():
            return Unauthorized("an API key is required (header X-API-Key)")
        owner = repository.owner_named(OPEN_OWNER, create=True)
        return Caller(owner_id=owner.id, owner=owner.name)


# -- studies -------------------------------------------------------------------------------


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


def _check_inventory(repository: Repository, parsed: Any, max_age_s: float) -> None:
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


def _queueable(parsed: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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


def _trial_public(trial: Trial) -> TrialPublic:
    return TrialPublic.model_validate(trial)


def list_trials(
    db: Database, *, caller: Caller, study_id: int, offset: int = 0, limit: int = 100
) -> TrialsPublic:
    with db.session() as session:
        repository = Repository(session)
        repository.find_study(study_id, caller.owner_id)
        rows, count = repository.trials_page(study_id, offset=offset, limit=limit)
        return TrialsPublic(data=[_trial_public(t) for t in rows], count=count)


def get_trial(db: Database, *, caller: Caller, trial_id: int) -> TrialDetail:
    with db.session() as session:
        repository = Repository(session)
        trial = repository.find_trial(trial_id, caller.owner_id)
        history = repository.metrics_of([trial.id])[trial.id]
        return TrialDetail(
            **_trial_public(trial).model_dump(),
            history=[
                EpochMetrics(epoch=m.epoch, attempt=m.attempt, values=m.values) for m in history
            ],
            traceback=trial.traceback,
        )


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
                        **_trial_public(t).model_dump(mode="json"),
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


# -- the catalogue -------------------------------------------------------------------------


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


# -- curves: what the dashboard plots ------------------------------------------------------


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
