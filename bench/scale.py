"""A thousand trials: memtune's runner against bare Ray Tune, on a Ray of several simulated nodes.

Both sides run the same work on the same cluster (``ray.cluster_utils.Cluster``: a head that
runs nothing and N one-CPU nodes, started here): the same trainable (memtune's
``train_trial`` on the same trial plans), the same ``OptunaSearch`` (TPE, the same seed and
startup trials) over the same space, the same trial count, concurrency and actor reuse, and
the same order: the search's trials, then its best config re-run on the study's seeds (bare
Tune: a second ``Tuner`` with a grid over the seeds, as a user has to write it). memtune's
side is a study as the service runs it: every trial and epoch written to the store through the
worker's sink, with ``memtune serve`` up on the same database. memtune runs twice: with the
API idle (the goal's figure: what memtune itself costs), then with ``wrk`` asking the API for
``GET /studies/{id}`` flat out on 2 connections (the API's p99 while the store is written; on
a machine of few cores the API's CPU is taken from the trials, and the wall time shows it).
Each side is a process of its own (its own driver, its own peak memory):

    wall time          from the first trial issued to the last result (Ray's start apart);
                       memtune / bare Tune, API idle, is the figure the goal (<= 1.10) is about
    results/s          epoch results the driver took in, per second of wall time
    store rows/s       memtune: trial and metric rows written, per second of wall time
    driver peak MB     the driver process's peak resident memory
    API CPU s          CPU seconds the API process used during the run
    API p99 ms         memtune under load: GET /studies/{id} during the run (wrk, 2 connections)

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


def _profiled(args: argparse.Namespace, side: str, work):
    """``work()``, under cProfile when this side is the one profiled (slower: compare the two
    sides' profiles with each other, not with the timings of a run without)."""
    if args.profile is None or args.profile_side != side:
        return work()
    import cProfile

    profile = cProfile.Profile()
    try:
        return profile.runcall(work)
    finally:
        profile.dump_stats(args.profile)


def run_memtune(args: argparse.Namespace) -> dict:
    """memtune's side: the runner with the service's store sink, in this process."""
    from memtune.tuning.cluster import configure_ray_environment

    configure_ray_environment()
    from memtune.service import services
    from memtune.service.store.repository import Repository
    from memtune.service.store.session import Database
    from memtune.service.worker import StoreSink
    from memtune.tuning.runner import StudyRunner

    spec = _spec(args.trials, args.epochs, args.concurrency)
    db = Database(args.database)
    caller = services.Caller(owner_id=None, owner="admin")
    study = services.create_study(db, caller=caller, spec=spec, max_active=1000)
    with db.session() as session:
        Repository(session).claim_study("bench", 3600)
    Path(args.study_id_file).write_text(str(study.id))
    sink = StoreSink(db, study.id, "bench", metric=spec.resolved_metric, mode=spec.resolved_mode)
    if args.no_store:  # the runner alone: what the store costs is the difference
        from memtune.tuning.sinks import ResultsSink

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
    _profiled(args, "memtune", runner.run)
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
    from memtune.tuning.cluster import configure_ray_environment

    configure_ray_environment()
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from memtune.studies.records import Phase
    from memtune.tuning.runner import StudyRunner, _ArmSpace
    from memtune.tuning.trainable import train_trial

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
    found = _profiled(args, "tune", tune.Tuner(trainable, tune_config=config, run_config=run).fit)
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


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run one side only, its driver under cProfile, the stats to FILE",
    )
    parser.add_argument(
        "--profile-side",
        choices=["memtune", "tune"],
        default="memtune",
        help="the side --profile runs (memtune; tune: the search Tuner of bare Tune)",
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

    from memtune.tuning.cluster import configure_ray_environment

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
        if args.profile:
            side = args.profile_side
            print(f"{side}, profiled: {_side(side, args, env)}", file=sys.stderr)
            return
        tune_side = _side("tune", args, env)
        print(f"bare Tune: {tune_side}", file=sys.stderr)
        tune_side["api_cpu_s"] = None
        api_cpu = _cpu_s(api.pid)
        memtune_side = _side("memtune", args, env)
        memtune_side["api_cpu_s"], api_cpu = _cpu_s(api.pid) - api_cpu, _cpu_s(api.pid)
        print(f"memtune, API idle: {memtune_side}", file=sys.stderr)
        (work / "id").unlink()
        import threading

        load: dict = {}

        def poll() -> None:  # wrk on GET /studies/{id} once the study exists, until it ends
            while not (work / "id").exists():
                time.sleep(0.2)
            url = f"http://127.0.0.1:{port}/studies/{(work / 'id').read_text()}"
            process = _wrk(url, max(10, int(memtune_side["wall_s"])))
            if process is not None:
                load["p99_ms"] = _p99_ms(process.communicate()[0])

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        loaded_side = _side("memtune", args, env)
        loaded_side["api_cpu_s"] = _cpu_s(api.pid) - api_cpu
        print(f"memtune, API under wrk: {loaded_side}", file=sys.stderr)
        poller.join(timeout=120)
    finally:
        api.terminate()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    sides = {"memtune": memtune_side, "memtune+wrk": loaded_side, "bare Tune": tune_side}
    print(f"\n{'':22s}" + "".join(f"{name:>13s}" for name in sides))

    def row(label: str, value) -> None:
        print(f"{label:22s}" + "".join(f"{value(side):>13s}" for side in sides.values()))

    row("trials", lambda side: f"{side['trials']}")
    row("wall time s", lambda side: f"{side['wall_s']:.1f}")
    row("results/s", lambda side: f"{side['results'] / side['wall_s']:.1f}")
    row(
        "store rows/s", lambda side: f"{side['rows'] / side['wall_s']:.1f}" if side["rows"] else "-"
    )
    row("driver peak MB", lambda side: f"{side['peak_mb']:.0f}")
    row("API CPU s", lambda side: "-" if side["api_cpu_s"] is None else f"{side['api_cpu_s']:.1f}")
    p99 = load.get("p99_ms")
    print(
        f"{'API p99 ms':22s}{'-':>13s}{p99 if p99 is not None else float('nan'):>13.1f}{'-':>13s}"
    )
    bare = tune_side["wall_s"]
    print(
        f"\nmemtune / bare Tune wall time: {memtune_side['wall_s'] / bare:.3f} (goal <= 1.10); "
        f"with the API under wrk: {loaded_side['wall_s'] / bare:.3f}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
