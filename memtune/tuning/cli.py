"""The study commands of ``memtune`` (assembled in :mod:`memtune.cli`): run a study on a local
Ray (or ``RAY_ADDRESS``) and print its verdict; list the registries; check an optimizer; tell
this machine's trials to checkpoint and leave.

Commands import what they use when they run: ``memtune list`` and the service's commands never
import torch or Ray."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from memtune.studies.spec import SpecError

__all__ = ["add_run_commands"]

# The exit codes of every command (README: "The command line"). 2 is also argparse's own.
EXIT_FAILED = 1  # the work ran and failed (a study, a check), or an unexpected error
EXIT_BAD_INPUT = 2  # a spec, a file or an argument that cannot be used
EXIT_UNREACHABLE = 3  # no memtune service answers at the URL
EXIT_REFUSED = 4  # the service refused the key (401) or its scope (403)
EXIT_NOT_FOUND = 5  # no such study or trial (404)
EXIT_INTERRUPTED = 130  # Ctrl-C


def _run(args: argparse.Namespace) -> int:
    from memtune.tuning.api import progress_bar, study_spec

    try:  # before torch and Ray are imported (seconds): a bad spec is told at once
        spec = study_spec(args.study)
    except (FileNotFoundError, IsADirectoryError):
        print(f"error: {args.study}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UnicodeDecodeError:
        print(f"error: {args.study}: not a text file (a YAML or JSON spec)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SpecError as error:
        print(f"error: {args.study}: {error.field}: {error.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.smoke:
        spec = spec.model_copy(update={"smoke": True})  # keeps the task's files
    if args.mlflow or args.tensorboard:
        from memtune.studies.spec import Tracking

        tracking = spec.tracking or Tracking()
        changes = {"mlflow": args.mlflow or tracking.mlflow}
        changes["tensorboard"] = str(args.tensorboard) if args.tensorboard else tracking.tensorboard
        spec = spec.model_copy(update={"tracking": tracking.model_copy(update=changes)})
    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from memtune.tuning.cluster import configure_ray_environment

    configure_ray_environment()  # before Ray is imported
    from memtune.studies.verdict import format_verdict
    from memtune.tuning.runner import StudyCancelled, StudyRunner
    from memtune.tuning.sinks import JsonFileSink, ResultsSink

    sink = JsonFileSink(args.json) if args.json else ResultsSink()
    bar, progress = progress_bar(spec, quiet=args.quiet)
    try:
        verdict = StudyRunner(spec, sink, progress=progress).run()
    except SpecError as error:
        bar.close()
        print(f"error: {args.study}: {error.field}: {error.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (KeyboardInterrupt, StudyCancelled):
        bar.close()
        print("interrupted: the study's trials were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # the study could not run (Ray, a task's data...): say why
        bar.close()
        if args.verbose:
            traceback.print_exc()
        print(
            f"error: the study failed: {type(error).__name__}: {error} (-v for details)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    bar.close()
    print(format_verdict(verdict))
    if args.json:
        print(f"\nresults written to {args.json}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.what == "optimizers":
        from memtune.optimizers import OPTIMIZERS as registry

        rows = [
            (s.name, s.summary, ", ".join(p.describe() for p in s.space()), f"from {s.origin}")
            for s in registry
        ]
        header = ("name", "what", "searched (range; edges hard or soft)", "origin")
    else:
        from memtune.studies.tasks import TASKS as registry

        rows = [
            (
                t.name,
                t.summary,
                f"selects on {t.metric} ({t.mode}), reports {t.test_metric(t.metric) or t.metric}",
                t.data,
                f"from {t.origin}",
            )
            for t in registry
        ]
        header = ("name", "what", "metrics", "data", "origin")
    errors = [str(error) for error in registry.errors]
    if args.json:
        listed = [dict(zip(header, row, strict=True)) for row in rows]
        print(json.dumps({"data": listed, "errors": errors}, indent=1))
        return 0
    width = max(len(row[0]) for row in rows)
    for name, *rest in rows:
        print(f"{name:{width}s}  {rest[0]}  [{rest[1]}]")
        for extra in rest[2:]:
            print(f"{'':{width}s}  {extra}")
    for error in errors:  # a plugin that failed to load: said, not raised
        print(f"error: {error}")
    return 0


def _check_optimizer(args: argparse.Namespace) -> int:
    from memtune.optimizers import OPTIMIZERS, UnknownNameError
    from memtune.optimizers.contract import run_checks

    try:
        OPTIMIZERS.get(args.name)
    except UnknownNameError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    overrides = json.loads(args.overrides) if args.overrides else {}
    results = run_checks(args.name, overrides, args.device)
    for check, failure in results.items():
        print(f"{'FAIL' if failure else 'ok  '}  {check}" + (f": {failure}" if failure else ""))
    failed = sum(failure is not None for failure in results.values())
    print(f"{args.name}: {len(results) - failed} passed, {failed} failed")
    return EXIT_FAILED if failed else 0


def _drain_node(args: argparse.Namespace) -> int:
    from memtune.tuning.cluster import drain_node

    told, left = drain_node(args.timeout)
    print(f"told {told} trial(s) to checkpoint; {left} still running", file=sys.stderr)
    return 0


def add_run_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="run a study on the local Ray (or RAY_ADDRESS) and print its verdict",
        description="Runs every arm's search, then the seed re-runs, then prints the verdict table.",
    )
    run.add_argument("study", type=Path, help="study spec, YAML or JSON (see examples/)")
    run.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="write the trials and the verdict to this JSON file",
    )
    run.add_argument(
        "--smoke", action="store_true", help="use the task's smoke size (seconds per trial)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--mlflow",
        metavar="URI",
        help="also log to this MLflow tracking server (default: MLFLOW_TRACKING_URI if set); "
        "pip install 'memtune[mlflow]'",
    )
    run.add_argument(
        "--tensorboard",
        type=Path,
        metavar="DIR",
        help="also write TensorBoard event files here, one per trial; "
        "pip install 'memtune[tensorboard]'",
    )
    run.set_defaults(handler=_run)

    drain = commands.add_parser(
        "drain-node",
        help="a node's shutdown notice: its trials checkpoint now, then leave (preStop hook)",
        description="Sends SIGTERM to every trial process on this machine: each checkpoints at "
        "the end of its epoch and exits, and resumes on another node from there. Waits until "
        "they are gone or --timeout passes. Kubernetes runs it in the Ray pods' preStop hook.",
    )
    drain.add_argument("--timeout", type=float, default=25.0, help="seconds to wait (25)")
    drain.set_defaults(handler=_drain_node)

    listing = commands.add_parser("list", help="list the registered optimizers or tasks")
    listing.add_argument("what", choices=["optimizers", "tasks"])
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(handler=_list)

    check = commands.add_parser(
        "check-optimizer",
        help="run memtune's optimizer contract on a registered optimizer (a plugin's, say)",
        description="Trains a small regression problem with the optimizer and checks what every "
        "memtune optimizer must do: loss goes down, no-gradient steps are no-ops, a tiny-lr group "
        "stays put, state_dict and deepcopy resume the same trajectory, state is tensors only, "
        "and the registry's state bytes are right. Exit 1 if any check fails.",
    )
    check.add_argument("name", help="registry name (memtune list optimizers)")
    check.add_argument(
        "--overrides", metavar="JSON", help="arguments for the optimizer, e.g. '{\"lr\": 0.01}'"
    )
    check.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    check.set_defaults(handler=_check_optimizer)
