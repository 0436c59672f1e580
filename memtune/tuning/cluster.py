"""Connecting to Ray: an existing cluster (``RAY_ADDRESS``) or a local one that leaves nothing.

The local cluster listens on 127.0.0.1 only and has token authentication on with a token that
lives in this process's environment (both set by :func:`configure_ray_environment`, which the
entry points call before Ray is imported); it keeps its sockets and logs in a temporary
directory removed at shutdown, and a small object store (trials pass configs and metrics,
never datasets).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

__all__ = ["configure_ray_environment", "drain_node", "node_inventory", "ray_cluster"]

log = logging.getLogger(__name__)


def configure_ray_environment() -> None:
    """Sets the environment memtune's drivers run Ray and Tune with; idempotent.

    Ray reads the first two when it is imported, so entry points call this first (and
    :func:`ray_cluster` re-applies them if Ray came first). A driver that joins a real cluster
    (``RAY_ADDRESS``) must stay reachable and use the cluster's token: those are left alone.
    """
    if not os.environ.get("RAY_ADDRESS"):
        # Bind every Ray server to 127.0.0.1 (Ray's own switch for that) ...
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # ... and turn token authentication on with a token that lives in this process's
        # environment (and its workers'), where Ray would otherwise write ~/.ray/auth_token.
        if "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # Tune's CSV/JSON/TensorBoard loggers: memtune streams results to its own sink instead.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Tune's console tables: memtune shows its own progress (verbose=0 is honoured by the
    # classic reporter only).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # One checkpoint kept per trial forces an experiment snapshot per epoch; short trials make
    # Tune warn at every one. The snapshots are cheap here (local disk).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's snapshot of the experiment (what a resumed study continues from): every 2 s
    # instead of Tune's adaptive 10 s or more, so a worker that dies loses little.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Compiled optimizer steps (memtune.optimizers.compiled): inductor's cache in the user's
    # cache directory, not /tmp, so that every trial actor and every later study on this
    # machine finds the kernels already built (bench/optimizer_step.py: cold vs warm compile).
    os.environ.setdefault(
        "TORCHINDUCTOR_CACHE_DIR", str(Path(user_cache_dir("memtune")) / "inductor")
    )


def _apply_local_settings() -> None:
    """Make the settings of :func:`configure_ray_environment` hold even if Ray came first.

    Both are read by Ray when it is imported; Ray re-reads them the same way itself (its token
    set-up calls ``Config.initialize``). Ray is pinned (2.60.0), so these internals are fixed.
    """
    from ray._private import ray_constants
    from ray._raylet import Config

    ray_constants.ENABLE_RAY_CLUSTER = False  # servers on 127.0.0.1
    if os.environ.get("RAY_AUTH_MODE") == "token":
        Config.initialize("")


@contextmanager
def ray_cluster(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_mb: int = 256,
    runtime_env: dict[str, Any] | None = None,
) -> Iterator[None]:
    """Ray for the duration of the block; reuses one already initialized in this process.
    ``runtime_env``: the job's, on a cluster (``RAY_ADDRESS``); Ray uploads what it names
    when it connects."""
    configure_ray_environment()
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(
            address=address,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env=runtime_env,
        )
        try:
            yield
        finally:
            ray.shutdown()
        return

    _apply_local_settings()
    # Short path: Ray's unix sockets live under it and their paths are limited to 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="memtune-ray-", dir="/tmp")
    try:
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            object_store_memory=object_store_mb * 2**20,
            _temp_dir=temp_dir,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        log.info("started a local Ray on 127.0.0.1 (temp dir %s)", temp_dir)
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _installed() -> dict[str, list[str]]:
    """On a node: the tasks and optimizers installed there (plugins included)."""
    from memtune.optimizers import OPTIMIZERS
    from memtune.studies.tasks import TASKS

    return {"tasks": TASKS.names(), "optimizers": OPTIMIZERS.names()}


def node_inventory(timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every alive Ray node in reach: its address, CPUs, GPUs, and the tasks and optimizers
    installed on it (asked by a zero-CPU task pinned to that node). A node that does not
    answer within ``timeout_s`` is reported with nothing installed."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ask = ray.remote(num_cpus=0)(_installed)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    pending = [
        ask.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote()
        for node in nodes
    ]
    ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout_s)
    inventory = []
    for node, reference in zip(nodes, pending, strict=True):
        installed = ray.get(reference) if reference in ready else {"tasks": [], "optimizers": []}
        resources = node.get("Resources", {})
        inventory.append(
            {
                "node_id": node["NodeID"],
                "address": node.get("NodeManagerAddress", ""),
                "cpus": float(resources.get("CPU", 0.0)),
                "gpus": float(resources.get("GPU", 0.0)),
                **installed,
            }
        )
    return inventory


# The process title of a trial actor (Tune's function trainables are "ImplicitFunc").
TRIAL_PROCESS = b"ray::ImplicitFunc"


def _trial_processes() -> list[int]:
    """The PIDs of this machine's trial actors (by their process title)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes().startswith(TRIAL_PROCESS):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def drain_node(timeout_s: float = 25.0) -> tuple[int, int]:
    """A node's shutdown notice for its trials: SIGTERM to each (a running trial checkpoints
    at the end of its epoch, then exits; memtune.tuning.trainable), then waits up to
    ``timeout_s`` for them to be gone. Kubernetes' preStop hook runs it (``memtune
    drain-node``): there only the container's PID 1 gets the pod's SIGTERM. Returns how many
    were told and how many are still there."""
    import signal
    import time

    told = _trial_processes()
    for pid in told:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while (left := [pid for pid in told if Path(f"/proc/{pid}").exists()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    return len(told), len(left)
