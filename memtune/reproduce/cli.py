"""``memtune reproduce``: run the claims' studies, then write the report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["add_reproduce_command"]

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130


def _claim_numbers(text: str) -> list[int]:
    try:
        numbers = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"claims: comma-separated numbers 1-6, not {text!r}"
        ) from None
    if not numbers or not all(1 <= n <= 6 for n in numbers):
        raise argparse.ArgumentTypeError(f"claims: numbers from 1 to 6, not {text!r}")
    return numbers


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def _reproduce(args: argparse.Namespace) -> int:
    from memtune.reproduce.claims import MODES, build_claims, estimate_seconds
    from memtune.reproduce.report import build_report, render_report

    out: Path = args.out or Path("reports") / args.mode
    if args.render_only:
        if not (out / "report.json").exists():
            print(f"error: --render-only: no report.json in {out}", file=sys.stderr)
            return EXIT_BAD_INPUT
        path = render_report(out)
        print(f"report written to {path}")
        return 0
    from memtune.reproduce.run import run_benchmark, run_studies

    mode = MODES[args.mode]
    claims = [c for c in build_claims(mode) if args.claims is None or c.number in args.claims]
    trials = sum(s.total_trials for c in claims for s in c.studies)
    studies = sum(len(c.studies) for c in claims)
    print(
        f"memtune reproduce ({mode.name}): claims {', '.join(str(c.number) for c in claims)}; "
        f"{studies} studies, {trials} trials; results in {out}",
        file=sys.stderr,
    )
    estimate = estimate_seconds(claims, mode)
    if estimate is not None:
        print(
            f"estimated runtime on 2 CPU cores: {_duration(estimate)} (from the seconds per "
            "trial-epoch measured at this size; more parallel trials divide it, finished "
            "studies are kept)",
            file=sys.stderr,
        )
    try:
        if any(c.benchmark for c in claims):  # before Ray starts: an idle machine
            run_benchmark(mode, out, echo=lambda line: print(line, file=sys.stderr))
        run_studies(claims, out, quiet=args.quiet)
    except KeyboardInterrupt:
        print(
            f"interrupted: finished studies are kept in {out}; run again to go on", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    command = f"memtune reproduce --{mode.name}"
    if args.claims:
        command += f" --claims {','.join(map(str, args.claims))}"
    report = build_report(
        claims, mode, out, command=command, ray_address=os.environ.get("RAY_ADDRESS")
    )
    path = render_report(out)
    for claim in report.claims:
        print(f"claim {claim.number}: {claim.line} ({claim.line_reason})")
    print(f"report written to {path}")
    return 0


def add_reproduce_command(commands: argparse._SubParsersAction) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help="run the two papers' claims as memtune studies and write a report",
        description="Runs a fixed set of studies that test the claims of the adaptive-memory "
        "(AM-SGD, AM-AdamW) and critical-momenta (Adam+CM) papers, through the engine (a local "
        "Ray, or the cluster at RAY_ADDRESS), then writes OUT/report.md with PNG plots and "
        "OUT/report.json, the numbers behind them: per claim its checks, Holm-adjusted p-values, "
        "intervals and one line (reproduced / not reproduced / mixed / inconclusive) that "
        "follows from them by the rule the report states. Claims 1 and 6 compare optimizers "
        "(several independent searches per arm, compared over their scores), claims 3 to 5 "
        "fixed settings over many seeds, claim 2 a benchmark of whole training iterations run "
        "first, alone. Finished studies are kept: an interrupted run goes on where it stopped.",
    )
    size = reproduce.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="small budgets: 2 CPU cores in under an hour (the default)",
    )
    size.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="the budgets for a GPU cluster (hundreds of CPU hours: the estimate is printed first)",
    )
    size.add_argument(
        "--smoke",
        dest="mode",
        action="store_const",
        const="smoke",
        help="seconds per study: checks that the pipeline works, decides nothing",
    )
    reproduce.set_defaults(mode="quick")
    reproduce.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where results and the report go (default: reports/MODE)",
    )
    reproduce.add_argument(
        "--claims", type=_claim_numbers, metavar="N,N", help="only these claims (default: all six)"
    )
    reproduce.add_argument(
        "--render-only",
        action="store_true",
        help="write report.md and the plots again from OUT/report.json, running nothing",
    )
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars")
    reproduce.set_defaults(handler=_reproduce)
