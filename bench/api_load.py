"""API latency under load and metric ingest rate, on SQLite and PostgreSQL, in one run.

Fills a fresh store with 1,000 trials x 100 epochs (10 studies of 100 trials; the ingest rate is
measured on the way), starts uvicorn in its own process on a free loopback port, pinned to the
first core, and loads it from the second core:

1. ``wrk`` (closed loop, 50 connections) on the study list, then on one study (a Lua script
   picks a random study per request);
2. an open-loop generator (requests sent on a fixed schedule whatever the answers, latency
   counted from the scheduled time, so a slow server cannot slow its own load) at 200
   requests/s over the mix: the study list, a study, a page of trials, a trial with its 100
   epochs and a verdict.

Goals (printed, never asserted): p99 <= 50 ms for each; metric ingest >= 10,000 rows/s.

    python bench/api_load.py --seconds 10 --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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


WRK_RANDOM_STUDY = """
ids = {%s}
request = function()
  return wrk.format("GET", "/studies/" .. ids[math.random(#ids)])
end
"""


def wrk(url: str, seconds: float, connections: int, script: str | None) -> tuple[float, float]:
    """(requests/s, p99 ms) of ``wrk --latency`` on the second core."""
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s"]
    command += ["--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            command[-1:-1] = ["-s", lua.name]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rate, float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


async def open_loop(base: str, paths: list, rate: float, seconds: float) -> dict[str, list[float]]:
    """Sends ``rate`` requests/s on a fixed schedule (not waiting for answers); each latency
    runs from the request's scheduled time to its answer."""
    latencies: dict[str, list[float]] = {}
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(name: str, path: str, scheduled: float) -> None:
            response = await client.get(path)
            latencies.setdefault(name, []).append(time.perf_counter() - scheduled)
            if response.status_code != 200:
                raise RuntimeError(f"{path} -> {response.status_code}")

        start, tasks = time.perf_counter(), []
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            name, path = random.choice(paths)
            tasks.append(asyncio.create_task(one(name, path(), scheduled)))
        await asyncio.gather(*tasks)
    return latencies


def quantile(values: list[float], q: int) -> float:
    values = sorted(values)
    return statistics.quantiles(values, n=100)[q - 1] * 1e3 if len(values) > 1 else values[0] * 1e3


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
        os.sched_setaffinity(server.pid, {0})
        os.sched_setaffinity(0, {1})  # this process and wrk: the other core
        asyncio.run(load(base, study_ids, trial_ids, 2, 1.0))  # warm-up: lazy imports, connections
        results = {}
        if shutil.which("wrk"):
            results["wrk: study list"] = wrk(f"{base}/studies?limit=20", args.seconds, 50, None)
            script = WRK_RANDOM_STUDY % ", ".join(map(str, study_ids))
            results["wrk: one study"] = wrk(f"{base}/studies", args.seconds, 50, script)
        else:
            print("wrk not installed (Debian: apt-get install wrk): its two rows are skipped")
        paths = [
            ("studies", lambda: "/studies?limit=20"),
            ("study", lambda: f"/studies/{random.choice(study_ids)}"),
            ("trials", lambda: f"/studies/{random.choice(study_ids)}/trials"),
            ("trial", lambda: f"/trials/{random.choice(trial_ids)}"),
            ("verdict", lambda: f"/studies/{random.choice(study_ids)}/verdict"),
        ]
        mixed = asyncio.run(open_loop(base, paths, args.rate, args.seconds))
    finally:
        server.terminate()
        server.wait()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    every = [x for values in mixed.values() for x in values]
    results[f"open loop {args.rate:.0f}/s: mix"] = (len(every) / args.seconds, quantile(every, 99))

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"{name}: ingest {ingest:,.0f} metric rows/s ({verdict(ingest >= 10_000)} >= 10,000)")
    for label, (rate, p99) in results.items():
        print(
            f"  {label:28s} {rate:8,.0f} requests/s  p99 {p99:8.1f} ms  ({verdict(p99 <= 50)} <= 50 ms)"
        )
    for route, values in sorted(mixed.items()):
        print(
            f"    {route:8s} n={len(values):6d}  p50 {quantile(values, 50):6.1f} ms  p99 {quantile(values, 99):6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100, help="per study")
    parser.add_argument("--epochs", type=int, default=100, help="per trial")
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()

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
