"""The service's commands of ``memtune`` (assembled in :mod:`memtune.cli`).

memtune serve                 API + one worker on 127.0.0.1 (SQLite and a local Ray)
memtune worker                a worker only (production: many, on one PostgreSQL)
memtune apikey create|list|revoke
memtune submit STUDY.yaml [--url URL --key KEY --wait]; status ID; verdict ID; replay TRIAL_ID
memtune demo                  the README's main command: serve, submit the demo, follow it
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from memtune.tuning.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
)

log = logging.getLogger("memtune")
DEMO_SPEC = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stop(process: subprocess.Popen, timeout: float) -> None:
    """Ctrl-C for a child (a worker stops its trials and Ray), then a kill if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def _settings(args: argparse.Namespace):
    from memtune.service.config import Settings

    overrides = {
        k: v
        for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)))
        if v
    }
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from memtune.service import services
    from memtune.service.api.app import create_app
    from memtune.service.store.session import Database

    settings = _settings(args)
    db = Database(settings.database_url, upgrade=settings.migrate_on_start)
    if services.is_open(db, settings):
        if not _is_loopback(settings.host):
            print(
                f"error: no API keys are configured, so memtune serves only on 127.0.0.1, not {settings.host}. "
                "Create one with: memtune apikey create --owner NAME",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        log.warning("no API keys configured: running open on %s only", settings.host)
    worker = None
    if not args.no_worker:
        # The worker is its own process: Ray and torch stay out of the API's process.
        worker = subprocess.Popen(
            [sys.executable, "-m", "memtune", "worker"],
            env={**os.environ, "DATABASE_URL": db.url},
        )
    try:
        uvicorn.run(
            create_app(settings, db), host=settings.host, port=settings.port, log_level="warning"
        )
    finally:
        if worker is not None:
            _stop(worker, timeout=20)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from memtune.service.store.session import Database
    from memtune.service.worker import StudyWorker

    settings = _settings(args)
    try:
        database = Database(settings.database_url, upgrade=settings.migrate_on_start)
        StudyWorker(database, settings).run_forever(once=args.once)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Upgrades the database to this version's schema (Alembic) and says where it stands."""
    from sqlalchemy import text

    from memtune.service.store.session import Database

    settings = _settings(args)
    db = Database(settings.database_url)  # upgrades to head
    with db.engine.connect() as connection:
        revision = connection.execute(
            text("SELECT version_num FROM memtune_alembic_version")
        ).scalar()
    where = db.engine.url.render_as_string(hide_password=True)
    print(f"{where} is at revision {revision}", file=sys.stderr)
    return 0


def _apikey(args: argparse.Namespace) -> int:
    from memtune.service import services
    from memtune.service.store.session import Database

    db = Database(_settings(args).database_url)
    if args.apikey_command == "create":
        key = services.create_api_key(db, owner=args.owner, scopes=args.scope or ())
        print(key)
        scopes = f" with scope {', '.join(args.scope)}" if args.scope else ""
        print(
            f"API key for owner {args.owner!r}{scopes}: shown once, only its hash is stored.",
            file=sys.stderr,
        )
        return 0
    if args.apikey_command == "list":
        keys = services.list_api_keys(db)
        for key in keys:
            state = f"revoked {key['revoked_at']:%Y-%m-%d}" if key["revoked_at"] else "active"
            scopes = ",".join(key["scopes"]) or "-"
            print(
                f"{key['prefix']}  {key['owner']:20s}  {key['created_at']:%Y-%m-%d %H:%M}  "
                f"{scopes:6s}  {state}"
            )
        if not keys:
            print("no API keys: the service runs open, on loopback only", file=sys.stderr)
        return 0
    revoked = services.revoke_api_key(db, prefix=args.prefix)
    if not revoked:
        print(
            f"error: no active key starts with {args.prefix!r} (memtune apikey list)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print(f"revoked {revoked} key(s); servers forget them within a few seconds", file=sys.stderr)
    return 0


def _follow(client, study: dict, *, quiet: bool = False) -> int:
    """Waits for a submitted study with a progress bar, then prints its verdict or error."""
    from memtune.studies.records import StudyStatus
    from memtune.studies.verdict import format_verdict

    study = client.wait(study["id"], progress=not quiet)
    if study["status"] != StudyStatus.COMPLETED:
        print(f"study {study['id']} {study['status']}: {study['error']}", file=sys.stderr)
        return EXIT_FAILED
    print(format_verdict(client.verdict(study["id"])))
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Starts the service, submits the demo study over REST, follows it, prints the verdict."""
    import httpx

    from memtune.client import Client, MemtuneError

    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "memtune", "serve", "--port", str(args.port)])
    try:
        with Client(base) as client:
            for _ in range(120):
                try:
                    httpx.get(f"{base}/health").raise_for_status()
                    break
                except httpx.HTTPError:
                    if server.poll() is not None:
                        print("error: the service did not start (see above)", file=sys.stderr)
                        return EXIT_FAILED
                    time.sleep(0.5)
            try:
                study = client.submit(args.study)
            except MemtuneError as error:
                print(f"error: {error}", file=sys.stderr)
                return EXIT_FAILED
            print(
                f"submitted study {study['id']} ({study['name']}); "
                f"dashboard: {base}/  API: {base}/docs",
                file=sys.stderr,
            )
            _follow(client, study)
        print(f"\ndashboard: {base}/   API docs: {base}/docs   (Ctrl-C stops the service)")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop(server, timeout=30)
    return 0


def _remote(handler):
    """A command that talks to a service: --url and --key (or MEMTUNE_URL, MEMTUNE_API_KEY).
    Whatever goes wrong is one line naming the URL, the field or the file, and an exit code
    that says which (tuning/cli.py: EXIT_*); -v adds the traceback."""

    def run(args: argparse.Namespace) -> int:
        import httpx

        from memtune.client import Client, MemtuneError
        from memtune.studies.spec import SpecError

        url = args.url or os.environ.get("MEMTUNE_URL") or "http://127.0.0.1:8000"
        try:
            with Client(url, args.key) as client:
                return handler(client, args)
        except MemtuneError as error:
            code, hint = _REFUSALS.get(error.status, (EXIT_FAILED, ""))
            _say(args, f"{url}: {error}{hint}")
            return code
        except SpecError as error:
            where = getattr(args, "study", None)
            _say(args, f"{f'{where}: ' if where else ''}{error.field}: {error.message}")
            return EXIT_BAD_INPUT
        except (FileNotFoundError, IsADirectoryError) as error:
            _say(args, f"{error.filename}: no such file")
            return EXIT_BAD_INPUT
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            _say(args, f"{url}: not a URL memtune can call ({error}); give http(s)://HOST:PORT")
            return EXIT_UNREACHABLE
        except httpx.TransportError as error:  # refused, unresolvable, timed out
            cause = str(error) or type(error).__name__
            _say(
                args,
                f"cannot reach a memtune service at {url}: {cause} (memtune serve starts one; --url or MEMTUNE_URL names another)",
            )
            return EXIT_UNREACHABLE

    return run


# What an API refusal means for the exit code, and what to do about it.
_REFUSALS = {
    401: (EXIT_REFUSED, " (give a key: --key or MEMTUNE_API_KEY)"),
    403: (EXIT_REFUSED, ""),
    404: (EXIT_NOT_FOUND, ""),
    413: (EXIT_BAD_INPUT, ""),
    422: (EXIT_BAD_INPUT, ""),
}


def _say(args: argparse.Namespace, message: str) -> None:
    """One line on stderr; with -v the traceback of what is being handled before it."""
    if args.verbose:
        import traceback

        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)


def _submit(client, args: argparse.Namespace) -> int:
    study = client.submit(args.study)
    for warning in study.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"submitted study {study['id']} ({study['name']}) to {client.url}", file=sys.stderr)
    print(study["id"])
    return _follow(client, study, quiet=args.quiet) if args.wait else 0


def _status(client, args: argparse.Namespace) -> int:
    study = client.study(args.study_id)
    print(
        f"study {study['id']} {study['name']!r} on {study['task']}: {study['status']}, "
        f"{study['trials_done']} / {study['trials_total']} trials"
    )
    for arm in study["progress"]:
        best = arm["best"] if arm["best"] is not None else "-"
        print(f"  {arm['arm']:14s} {arm['done']:>4d} / {arm['total']:<4d} best {best}")
    for warning in study["warnings"]:
        print(f"  warning: {warning}")
    if study["error"]:
        print(f"  error: {study['error']}")
    return 0


def _verdict(client, args: argparse.Namespace) -> int:
    from memtune.studies.verdict import format_verdict

    verdict = client.verdict(args.study_id)
    print(json.dumps(verdict.to_dict(), default=str) if args.json else format_verdict(verdict))
    return 0


def _replay(client, args: argparse.Namespace) -> int:
    """Re-runs one stored trial here, from its stored config and seed, epoch by epoch beside
    what the study recorded."""
    from memtune.studies.spec import parse_spec
    from memtune.tuning.training import TrialTraining

    trial = client.trial(args.trial_id)
    spec = parse_spec(
        {k: v for k, v in client.study(trial["study_id"])["spec"].items() if k != "schema_version"}
    )
    if spec.from_code:  # the API never hands a study's code back
        print(
            f"error: study {trial['study_id']}'s task is from code ({spec.task}), whose files "
            "the service does not return: replay it with memtune run on your copy of the spec",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    arm = next(a for a in spec.arms if a.label == trial["arm"])
    training = TrialTraining(
        task=spec.task,
        task_options=spec.task_options,
        optimizer=arm.optimizer,
        hyperparameters=trial["config"],
        seed=trial["seed"],
        smoke=spec.smoke,
        device=args.device,
        epochs=spec.arm_epochs(arm),
        schedule=spec.trial_schedule(arm),
    )
    metric = spec.resolved_metric
    stored = {h["epoch"]: h["values"].get(metric) for h in trial["history"]}
    epochs = args.epochs or spec.arm_epochs(arm)
    print(f"trial {trial['id']}: {trial['arm']} seed {trial['seed']} {trial['config']}")
    for _ in range(epochs):
        result = training.run_epoch(test=trial["phase"] == "seed" and training.epoch + 1 == epochs)
        print(
            f"  epoch {result.epoch}: {metric} {result.value(metric)!s:>22s}  "
            f"stored {stored.get(result.epoch)!s:>22s}" + ("  diverged" if result.diverged else "")
        )
        if result.diverged:
            break
    return 0


def add_service_commands(commands: argparse._SubParsersAction) -> None:
    """The service's commands, for the ``memtune`` parser (:mod:`memtune.cli`)."""
    serve = commands.add_parser(
        "serve", help="start the API and one worker (SQLite + local Ray by default)"
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; MEMTUNE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000; MEMTUNE_PORT)")
    serve.add_argument("--no-worker", action="store_true", help="API only; run workers apart")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker", help="run queued studies from the database (DATABASE_URL)"
    )
    worker.add_argument("--once", action="store_true", help="run at most one study, then exit")
    worker.set_defaults(handler=_worker)

    migrate = commands.add_parser(
        "migrate",
        help="upgrade the database (DATABASE_URL) to this version's schema, then exit",
        description="What the API and the workers do at start unless MEMTUNE_MIGRATE_ON_START "
        "is false: run it once, before they start, where several replicas share a database.",
    )
    migrate.set_defaults(handler=_migrate)

    apikey = commands.add_parser("apikey", help="manage API keys")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = apikey_commands.add_parser("create", help="create a key for an owner; prints it once")
    create.add_argument("--owner", required=True, help="owner name (created if new)")
    create.add_argument(
        "--scope",
        action="append",
        choices=["code"],
        help="code: may submit a task from code, which the workers import and run with their "
        "own rights (give it to people you would give a shell on the workers)",
    )
    create.set_defaults(handler=_apikey)
    listing = apikey_commands.add_parser("list", help="every key: prefix, owner, created, state")
    listing.set_defaults(handler=_apikey)
    revoke = apikey_commands.add_parser("revoke", help="revoke the keys starting with a prefix")
    revoke.add_argument("prefix", help="the key's first characters, as `apikey list` shows")
    revoke.set_defaults(handler=_apikey)

    def remote(name: str, help: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help)
        command.add_argument("--url", help="the service (default MEMTUNE_URL or 127.0.0.1:8000)")
        command.add_argument("--key", help="API key (default MEMTUNE_API_KEY)")
        return command

    submit = remote("submit", "submit a study spec to a service (YAML or JSON)")
    submit.add_argument("study", type=Path, help="study spec, YAML or JSON")
    submit.add_argument("--wait", action="store_true", help="follow it, then print the verdict")
    submit.add_argument("--quiet", action="store_true", help="no progress bar")
    submit.set_defaults(handler=_remote(_submit))
    status = remote("status", "a study's status and progress per arm")
    status.add_argument("study_id", type=int)
    status.set_defaults(handler=_remote(_status))
    verdict = remote("verdict", "a completed study's verdict, as a table (or --json)")
    verdict.add_argument("study_id", type=int)
    verdict.add_argument("--json", action="store_true")
    verdict.set_defaults(handler=_remote(_verdict))
    replay = remote("replay", "re-run one trial here from its stored config and seed")
    replay.add_argument("trial_id", type=int)
    replay.add_argument("--epochs", type=int, help="default: the study's")
    replay.add_argument("--device", default="cpu")
    replay.set_defaults(handler=_remote(_replay))

    demo = commands.add_parser(
        "demo", help="serve, submit the demo study over REST, follow it, print the verdict"
    )
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--study", type=Path, default=DEMO_SPEC, help="study spec to submit (default: the demo)"
    )
    demo.set_defaults(handler=_demo)


def main(argv: list[str] | None = None) -> int:
    """The whole ``memtune`` command (kept here for scripts that named this module)."""
    from memtune.cli import main as memtune_main

    return memtune_main(argv)


if __name__ == "__main__":
    sys.exit(main())
