"""``memtune``: the study commands of ``workers/cli.py`` plus the service's own.

memtune serve                 API + one worker on 127.0.0.1 (SQLite and a local Ray)
memtune worker                a worker only (production: many, on one PostgreSQL)
memtune apikey create --owner NAME
memtune demo                  the README's main command: serve, submit the demo, follow it
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from memtune.workers.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, build_parser

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
    db = Database(settings.database_url)
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
            [sys.executable, "-m", "memtune.service.cli", "worker"],
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
        StudyWorker(Database(settings.database_url), settings).run_forever(once=args.once)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def _apikey(args: argparse.Namespace) -> int:
    from memtune.service import services
    from memtune.service.store.session import Database

    key = services.create_api_key(Database(_settings(args).database_url), owner=args.owner)
    print(key)
    print(
        f"API key for owner {args.owner!r}: shown once, only its hash is stored.", file=sys.stderr
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Starts the service, submits the demo study over REST, follows it, prints the verdict."""
    import httpx
    import yaml
    from tqdm import tqdm

    from memtune.studies.records import StudyStatus
    from memtune.studies.verdict import Verdict, format_verdict

    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "memtune.service.cli", "serve", "--port", str(args.port)]
    )
    try:
        client = httpx.Client(base_url=base, timeout=30)
        for _ in range(120):
            try:
                client.get("/health").raise_for_status()
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    print("error: the service did not start (see above)", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        spec = yaml.safe_load(Path(args.study).read_text())
        response = client.post("/studies", json=spec)
        if response.status_code != 201:
            print(f"error: {response.status_code} {response.json()['detail']}", file=sys.stderr)
            return 1
        study = response.json()
        print(
            f"submitted study {study['id']} ({study['name']}); dashboard: {base}/  API: {base}/docs",
            file=sys.stderr,
        )
        with tqdm(
            total=study["trials_total"], unit="trial", desc=study["name"], mininterval=1.0
        ) as bar:
            while not StudyStatus(study["status"]).ended:
                time.sleep(1.0)
                study = client.get(f"/studies/{study['id']}").json()
                best = ", ".join(
                    f"{a['arm']} {a['best']:.4g}"
                    for a in study["progress"]
                    if a["best"] is not None
                )
                bar.set_postfix_str(best, refresh=False)
                bar.update(study["trials_done"] - bar.n)
        if study["status"] != StudyStatus.COMPLETED:
            print(f"study {study['status']}: {study['error']}", file=sys.stderr)
        else:
            verdict = Verdict.from_dict(client.get(f"/studies/{study['id']}/verdict").json())
            print(format_verdict(verdict))
        print(f"\ndashboard: {base}/   API docs: {base}/docs   (Ctrl-C stops the service)")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop(server, timeout=30)
    return 0


def build_service_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

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

    apikey = commands.add_parser("apikey", help="manage API keys")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = apikey_commands.add_parser("create", help="create a key for an owner; prints it once")
    create.add_argument("--owner", required=True, help="owner name (created if new)")
    create.set_defaults(handler=_apikey)

    demo = commands.add_parser(
        "demo", help="serve, submit the demo study over REST, follow it, print the verdict"
    )
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--study", type=Path, default=DEMO_SPEC, help="study spec to submit (default: the demo)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from memtune.workers.cli import main as run_main

    return run_main(argv, parser=build_service_parser())


if __name__ == "__main__":
    sys.exit(main())
