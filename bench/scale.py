"""A thousand trials: memtune's runner against bare Ray Tune, on a Ray of several simulated nodes.

Both sides run the same work on the same cluster (``ray.cluster_utils.Cluster``: a head that
runs nothing and N one-CPU nodes, started here): the same trainable (memtune's
``train_trial`` on the same trial plans), the same ``OptunaSearch`` (TPE, the same seed and
startup trials) over the same space, the same trial count, concurrency and actor reuse, and
the same order: the search's trials, then its best config re-run on the study's seeds (bare
Tune: a second ``Tuner`` with a grid over the seeds, as a user has to write it). memtune's
side is a study as the service runs it: every trial and epoch written to the store through the
worker's sink, while ``memtune serve`` answers ``GET /studies/{id}`` to ``wrk`` on the same
database. Each side is a process of its own (its own driver, its own peak memory):

    wall time          from the first trial issued to the last result (Ray's start apart);
                       memtune / bare Tune is the figure the goal (<= 1.10) is about
    results/s          epoch results the driver took in, per second of wall time
    store rows/s       memtune: trial and metric rows written, per second of wall time
    driver peak MB     the driver process's peak resident memory
    API p99 ms         memtune: GET /studies/{id} during the run (wrk, 2 connections)

    python bench/scale.py --trials 1000 --nodes 3 --concurrency 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _spec(trials: int, epochs: int, concurrency: int):
    from memtune.studies.spec import parse_spec

    return parse_spec(
        {
            "name": "scale",
            "max_concurrent_trials": concurrency,
            "task": "quadratic",
            "smoke": True,
            "arms": [{"optimizer": "sgd"}],
            "budget": {"searches": 1, "trials_per_search": trials, "epochs": epochs},
            "seeds": [1, 2],
            "search_seed": 7,
        }
    )


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_memtune(args: argparse.Namespace) -> dict:
    """memtune's side: the runner with the service's store sink, in this process."""
    from memtune.workers.cluster import configure_ray_environment

    configure_ray_environment()
    from memtune.service import services
    from memtune.service.store.repository import Repository
    from memtune.service.store.session import Database
    from memtune.service.worker import StoreSink
    from memtune.workers.runner import StudyRunner

    spec = _spec(args.trials, args.epochs, args.concurrency)
    db = Database(args.database)
    caller = services.Caller(owner_id=None, owner="admin")
    study = services.create_study(db, caller=caller, spec=spec, max_active=1000)
    with db.session() as session:
        Repository(session).claim_study("bench", 3600)
    Path(args.study_id_file).write_text(str(study.id))
    sink = StoreSink(db, study.id, "bench", metric=spec.resolved_metric, mode=spec.resolved_mode)
    if args.no_store:  # the runner alone: what the store costs is the difference
        from memtune.workers.sinks import ResultsSink

        sink = ResultsSink()
    runner = StudyRunner(
        spec,
        sink,
        experiment_path=f"{args.storage}/memtune",
        shared_storage=True,
    )
    import ray

    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    started = time.monotonic()
    runner.run()
    wall = time.monotonic() - started
    with db.session() as session:
        repository = Repository(session)
        trials = repository.trials_of(study.id)
        rows = len(trials) + sum(
            len(m) for m in repository.metrics_of([t.id for t in trials]).values()
        )
    results = sum(len(r.epochs) for r in runner.records.values())
    return {
        "wall_s": wall,
        "trials": len(runner.records),
        "results": results,
        "rows": rows,
        "peak_mb": _peak_mb(),
    }


def run_tune(args: argparse.Namespace) -> dict:
    """Bare Ray Tune: what a user writes with the same trainable, searcher and order."""
    from memtune.workers.cluster import configure_ray_environment

    configure_ray_environment()
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from memtune.studies.records import Phase
    from memtune.workers.runner import StudyRunner, _ArmSpace
    from memtune.workers.trainable import train_trial

    spec = _spec(args.trials, args.epochs, args.concurrency)
    arm = spec.arms[0]
    (search,) = spec.searches(arm)
    helper = StudyRunner(spec)  # only to build the same plans memtune's trials get
    plan = helper._plan(arm, Phase.SEARCH, search.seed, search.index)
    trainable = tune.with_resources(train_trial, {"cpu": 1})
    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    started = time.monotonic()
    searcher = OptunaSearch(
        space=_ArmSpace(spec.searched(arm), plan),
        metric=spec.resolved_metric,
        mode=spec.resolved_mode,
        sampler=optuna.samplers.TPESampler(
            seed=search.sampler_seed, n_startup_trials=helper._startup_trials()
        ),
    )
    config = tune.TuneConfig(
        search_alg=searcher,
        num_samples=args.trials,
        max_concurrent_trials=args.concurrency,
        reuse_actors=True,
    )
    run = tune.RunConfig(name="search", storage_path=f"{args.storage}/tune", verbose=0)
    found = tune.Tuner(trainable, tune_config=config, run_config=run).fit()
    best = found.get_best_result(spec.resolved_metric, spec.resolved_mode)
    chosen = {k: v for k, v in best.config.items() if k != "run"}
    reruns = [helper._plan(arm, Phase.SEED, seed, search.index) for seed in search.rerun_seeds]
    rerun = tune.Tuner(
        trainable,
        param_space={**chosen, "run": tune.grid_search(reruns)},
        tune_config=tune.TuneConfig(max_concurrent_trials=args.concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name="reruns", storage_path=f"{args.storage}/tune", verbose=0),
    ).fit()
    wall = time.monotonic() - started
    results = sum(int(r.metrics.get("epoch", 0)) for r in [*found, *rerun])  # epochs done
    return {
        "wall_s": wall,
        "trials": len(found) + len(rerun),
        "results": results,
        "rows": 0,
        "peak_mb": _peak_mb(),
    }


def _side(name: str, args: argparse.Namespace, env: dict) -> dict:
    command = [sys.executable, __file__, "--side", name, *sys.argv[1:]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=7200)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} side failed:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])


def _wrk(url: str, seconds: int) -> subprocess.Popen | None:
    if shutil.which("wrk") is None:
        return None
    return subprocess.Popen(
        ["wrk", "-t1", "-c2", f"-d{seconds}s", "--latency", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _p99_ms(output: str) -> float | None:
    match = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", output, flags=re.MULTILINE)
    if not match:
        return None
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000, help="searched trials (1000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (2)")
    parser.add_argument("--nodes", type=int, default=3, help="simulated Ray nodes of 1 CPU (3)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once (2)")
    parser.add_argument(
        "--no-store", action="store_true", help="memtune without its store (what the store costs)"
    )
    parser.add_argument("--side", choices=["memtune", "tune"], help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--study-id-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        outcome = (run_memtune if args.side == "memtune" else run_tune)(args)
        print(json.dumps(outcome))
        return

    from memtune.workers.cluster import configure_ray_environment

    configure_ray_environment()
    from ray.cluster_utils import Cluster

    from memtune.service.store.session import Database
    from tests.service.conftest import free_port

    work = Path(tempfile.mkdtemp(prefix="memtune-scale-"))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "gcs_server_port": free_port(), "include_dashboard": False},
    )
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=1)
    database = f"sqlite:///{work / 'memtune.db'}"
    Database(database)  # migrated before the API and the driver start
    port = free_port()
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "DATABASE_URL": database}
    api = subprocess.Popen(
        [sys.executable, "-m", "memtune", "serve", "--no-worker", "--port", str(port)],
        env={**env, "MEMTUNE_ADMIN_KEY": "bench"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sys.argv += [
        "--database",
        database,
        "--storage",
        str(work),
        "--study-id-file",
        str(work / "id"),
    ]
    try:
        print(
            f"{args.trials} trials of {args.epochs} epochs on {args.nodes} nodes, {args.concurrency} at once",
            file=sys.stderr,
        )
        tune_side = _side("tune", args, env)
        print(f"bare Tune: {tune_side}", file=sys.stderr)
        import threading

        load: dict = {}

        def poll() -> None:  # wrk on GET /studies/{id} once the study exists
            while not (work / "id").exists():
                time.sleep(0.2)
            url = f"http://127.0.0.1:{port}/studies/{(work / 'id').read_text()}"
            process = _wrk(url, max(10, int(tune_side["wall_s"])))
            if process is not None:
                load["p99_ms"] = _p99_ms(process.communicate()[0])

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        memtune_side = _side("memtune", args, env)
        poller.join(timeout=120)
    finally:
        api.terminate()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    wall = memtune_side["wall_s"], tune_side["wall_s"]
    print(f"\n{'':22s} {'memtune':>10s} {'bare Tune':>10s}")
    print(f"{'trials':22s} {memtune_side['trials']:>10d} {tune_side['trials']:>10d}")
    print(f"{'wall time s':22s} {wall[0]:>10.1f} {wall[1]:>10.1f}")
    for label, key in (("results/s", "results"),):
        print(f"{label:22s} {memtune_side[key] / wall[0]:>10.1f} {tune_side[key] / wall[1]:>10.1f}")
    print(f"{'store rows/s':22s} {memtune_side['rows'] / wall[0]:>10.1f} {'-':>10s}")
    print(f"{'driver peak MB':22s} {memtune_side['peak_mb']:>10.0f} {tune_side['peak_mb']:>10.0f}")
    p99 = load.get("p99_ms")
    print(f"{'API p99 ms':22s} {p99 if p99 is not None else float('nan'):>10.1f} {'-':>10s}")
    print(f"\nmemtune / bare Tune wall time: {wall[0] / wall[1]:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
