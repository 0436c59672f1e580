"""Preemption is not failure: a trial whose Ray node died (a spot reclaim, a removed node) or
that left on its node's shutdown notice resumes from its checkpoint without spending its
failure budget, up to a study's limit of node losses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import ray

from memtune.tuning.trainable import SHUTDOWN_NOTICE
from memtune.tuning.wrapping import wrapped_while

__all__ = ["NODE_DEATH_WAIT_S", "NodeLossLedger", "lost_its_node", "node_losses_apart"]

log = logging.getLogger(__name__)


class NodeLossLedger(Protocol):
    """Where a study counts its node losses (:class:`memtune.tuning.runner.StudyRunner`)."""

    node_losses: int
    max_node_losses: int
    lost_nodes: dict[str, bool]  # trial id -> its last failure was a lost node


# How long a trial's failure waits for Ray to mark its node dead: the actor's death reaches
# Tune at once, the node's only after the GCS's health checks have failed (by default 5
# checks 3 s apart, and later on a loaded machine). The wait holds Tune's loop only when an
# actor died, and is cut short as soon as the node is seen dead.
NODE_DEATH_WAIT_S = 30.0


def lost_its_node(trial: Any, error: Any) -> bool:
    """Whether a trial failed because the Ray node it ran on died or is going: its actor died
    (not an exception of the trial's own code) and either its last report said it left on the
    node's shutdown notice, or the node it last reported from is dead. An actor killed on a
    live node (out of memory, a crash in native code) is the trial's failure."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(error, RayTaskError):
        error = error.as_instanceof_cause()
    if not isinstance(error, RayActorError):
        return False  # the trainable raised: its own failure
    noticed_by = (trial.last_result or {}).get(SHUTDOWN_NOTICE)
    if noticed_by is not None and noticed_by == error.actor_id:
        return True  # this actor checkpointed and left as the notice asked; the node goes soon
    node = (trial.last_result or {}).get("node_id")
    if not node:
        return False  # died before its first report: nothing to resume anyway
    deadline = time.monotonic() + NODE_DEATH_WAIT_S
    while True:
        states = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
        if not states.get(node, False):
            return True
        if time.monotonic() > deadline:
            log.warning(
                "trial %s: its actor died on node %s, which Ray still sees alive after %.0f s: "
                "counted as the trial's own failure",
                trial.trial_id,
                node,
                NODE_DEATH_WAIT_S,
            )
            return False
        time.sleep(0.2)


def node_losses_apart(runner: NodeLossLedger) -> AbstractContextManager[None]:
    """A trial that lost its node does not spend its failure budget (``max_failures``).

    Tune counts every failure except an actor the autoscaler drained for preemption
    (``RayActorError.preempted``), and decides whether to restart the trial right after
    ``Trial.handle_error``, with no hook in between; this wraps that method (Ray is pinned,
    2.60.0) to take back the count of a node loss, up to the study's ``max_node_losses``.
    Past that limit node losses count as failures again: a cluster that loses nodes without
    end must not keep a study running forever."""
    from ray.tune.experiment import Trial

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        def handle_error(trial: Any, exc: Any = None) -> None:
            counted = trial.run_metadata.num_failures
            lost = exc is not None and lost_its_node(trial, exc)
            original(trial, exc)
            if lost and runner.node_losses < runner.max_node_losses:
                runner.node_losses += 1
                runner.lost_nodes[trial.trial_id] = True
                trial.run_metadata.num_failures = counted  # Tune's count taken back
                log.warning(
                    "trial %s lost its node; it resumes from its checkpoint", trial.trial_id
                )

        return handle_error

    return wrapped_while(Trial, "handle_error", wrap)
