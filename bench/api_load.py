"""API latency under load and metric ingest rate, on SQLite and PostgreSQL, in one run.

Fills a fresh store with 1,000 trials x 100 epochs (10 studies of 100 trials; the ingest rate is
measured on the way), starts uvicorn in its own process on a free loopback port, then N
concurrent clients read studies, trials, trial histories and verdicts for a fixed time.
Prints p50/p99 latency and requests per second per backend.

Targets: p99 under 50 ms at 50 concurrent clients; metric ingest over 5,000 rows/s.

    python bench/api_load.py --clients 50 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid

import httpx
from sqlalchemy import create_engine, text

from memtune.service.store.repository import Repository
from memtune.service.store.session import Database, normalize_url
from memtune.studies.verdict import ArmVerdict, Comparison, Verdict

POSTGRES = os.environ.get("MEMTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SPEC = {"name": "load", "task": "digits_mlp", "metric": "val_accuracy", "mode": "max"}
ARMS = [
    {"label": "sgd", "optimizer": "sgd", "baseline": True},
    {"label": "am_sgd", "optimizer": "am_sgd", "baseline": False},
]


VERDICT = Verdict(
    study="load",
    task="digits_mlp",
    metric="val_accuracy",
    mode="max",
    arms=[ArmVerdict(a["label"], a["optimizer"], a["baseline"], {"lr": 0.1}) for a in ARMS],
    comparisons=[Comparison("am_sgd", "sgd", pairs=6, p_value=0.03, p_adjusted=0.03)],
).to_dict()


def fill(
    db: Database, studies: int, trials: int, epochs: int
) -> tuple[list[int], list[int], float]:
    """Returns the study ids, trial ids, and the metric rows inserted per second."""
    study_ids, trial_ids, rows, seconds = [], [], 0, 0.0
    for s in range(studies):
        with db.session() as session:
            repository = Repository(session)
            owner = repository.owner_named("local", create=True)
            study = repository.add_study(
                owner=owner, spec={**SPEC, "name": f"load-{s}"}, arms=ARMS, total_trials=trials
            )
            study.status, study.verdict = "completed", VERDICT
            study_ids.append(study.id)
            batch = [
                repository.upsert_trial(
                    study.id,
                    f"t{t}",
                    arm=ARMS[t % 2]["label"],
                    phase="search",
                    seed=0,
                    config={"lr": 0.1},
                    state="completed",
                    best_metric=0.9,
                ).id
                for t in range(trials)
            ]
            trial_ids += batch
        for trial_id in batch:
            values = [
                {
                    "trial_id": trial_id,
                    "epoch": e,
                    "attempt": 1,
                    "values": {"val_accuracy": 0.5 + e / 1000, "train_loss": 1.0 / e, "epoch": e},
                }
                for e in range(1, epochs + 1)
            ]
            start = time.perf_counter()
            with db.session() as session:
                Repository(session).add_metrics(values)
            seconds += time.perf_counter() - start
            rows += len(values)
    return study_ids, trial_ids, rows / seconds


async def load(
    base: str, study_ids: list[int], trial_ids: list[int], clients: int, seconds: float
) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {}
    deadline = time.perf_counter() + seconds
    routes = [
        ("studies", lambda: "/studies?limit=20"),
        ("study", lambda: f"/studies/{random.choice(study_ids)}"),
        ("trials", lambda: f"/studies/{random.choice(study_ids)}/trials"),
        ("trial", lambda: f"/trials/{random.choice(trial_ids)}"),
        ("verdict", lambda: f"/studies/{random.choice(study_ids)}/verdict"),
    ]

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            name, path = random.choice(routes)
            start = time.perf_counter()
            response = await client.get(path())
            latencies.setdefault(name, []).append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{path()} -> {response.status_code}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return latencies


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_backend(name: str, url: str, args: argparse.Namespace) -> None:
    db = Database(url)
    study_ids, trial_ids, ingest = fill(db, args.studies, args.trials, args.epochs)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "memtune.service.api.app:app_from_environment",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(args.server_workers),
        ],
        env={**os.environ, "DATABASE_URL": url},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/health").raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(load(base, study_ids, trial_ids, 2, 1.0))  # warm-up: lazy imports, connections
        latencies = asyncio.run(load(base, study_ids, trial_ids, args.clients, args.seconds))
    finally:
        server.terminate()
        server.wait()
    every = sorted(x for values in latencies.values() for x in values)

    def quantile(values: list[float], q: float) -> float:
        return (
            statistics.quantiles(values, n=100)[q - 1] * 1e3 if len(values) > 1 else values[0] * 1e3
        )

    print(
        f"{name} (uvicorn workers: {args.server_workers}): ingest {ingest:,.0f} metric rows/s ({'ok' if ingest > 5000 else 'MISSED'} > 5,000)"
    )
    print(
        f"  {args.clients} clients, {args.seconds:.0f} s: {len(every) / args.seconds:,.0f} requests/s, "
        f"p50 {quantile(every, 50):.1f} ms, p99 {quantile(every, 99):.1f} ms ({'ok' if quantile(every, 99) < 50 else 'MISSED'} < 50 ms)"
    )
    for route, values in sorted(latencies.items()):
        print(
            f"    {route:8s} n={len(values):6d}  p50 {quantile(sorted(values), 50):6.1f} ms  p99 {quantile(sorted(values), 99):6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100, help="per study")
    parser.add_argument("--epochs", type=int, default=100, help="per trial")
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()

    import tempfile

    if args.backend in ("sqlite", "both"):
        run_backend("sqlite", f"sqlite:///{tempfile.mkdtemp(prefix='memtune-load-')}/load.db", args)
    if args.backend in ("postgresql", "both"):
        admin = create_engine(normalize_url(POSTGRES), isolation_level="AUTOCOMMIT")
        name = f"memtune_load_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run_backend("postgresql", POSTGRES.rsplit("/", 1)[0] + f"/{name}", args)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
