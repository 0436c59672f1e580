"""The ``memtune`` command: every layer's subcommands, assembled in one parser.

- ``run``, ``list``, ``check-optimizer``, ``drain-node``: studies here, on Ray
  (:mod:`memtune.tuning.cli`);
- ``reproduce``: the papers' claims (:mod:`memtune.reproduce.cli`);
- ``serve``, ``worker``, ``migrate``, ``apikey``, ``demo`` and the remote commands
  (``submit``, ``status``, ``verdict``, ``replay``): the service (:mod:`memtune.service.cli`).

Commands import what they use when they run: ``memtune list`` and the service's commands never
import torch or Ray. Exit codes: 0 done, 1 the work failed, 2 bad input, 3 no memtune service
at the URL, 4 the key refused or lacking a scope, 5 no such study or trial, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from memtune.reproduce.cli import add_reproduce_command
from memtune.service.cli import add_service_commands
from memtune.tuning.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    add_run_commands,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memtune",
        description="Does this memory-based optimizer beat my tuned baseline? Fair studies on "
        "Ray Tune + Optuna.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what happens (Ray start, trials)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_commands(commands)
    add_reproduce_command(commands)
    add_service_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # one line for a user; the traceback with -v
        if args.verbose:
            traceback.print_exc()
        print(
            f"error: {type(error).__name__}: {error}"
            + ("" if args.verbose else " (-v shows the traceback)"),
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
