"""The verdict's false-label rate and power, end to end: whole studies through the runner.

An A/A study puts one optimizer in two arms (each arm with its own searches, as a user would
compare two optimizers) and asks the real verdict; every "better" or "worse" is false. The
verdict's rule must label fewer than 5 of 40 such studies per task. At the rule's exact size
(4.1% at six searches per arm) that check fails by chance in 2.3% of runs, and at a true 5%
in 4.8%; a true 10% would still pass 63% of the time, so the rate is printed with its exact
95% interval, and the suite's simulation (tests/studies/test_calibration.py) is the sharper
check of the rule itself: this one checks that studies as they really run (Ray, TPE, the
tasks' own noise, divergences) meet it. Beside it:

- a six-arm A/A (the same optimizer six times, one baseline): the family-wise rate, a study
  with any label counted once;
- real differences, and the rate at which "worse" is found: SGD without momentum (its lr
  searched) against Adam on digits, at the default budget and with 6 trials per search; AdamW
  against AdamW held to a too-low lr range on the quadratic.

Studies run at the spec's defaults (searches, trials per search, seeds), each with its own
search_seed, so no two studies share a search seed or a re-run seed. Every finished study is
appended to a JSON-lines file under --out, so a run that stops resumes where it stopped;
--report prints the figures from that file alone.

    python bench/aa_calibration.py                       # everything (about 40 min, 2 cores)
    python bench/aa_calibration.py --only aa:quadratic --studies 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from scipy import stats

# The experiments, by name: the task and its options, the arms, the epochs.
ADAMW_TWICE = [
    {"optimizer": "adamw", "name": "first", "baseline": True},
    {"optimizer": "adamw", "name": "second"},
]
QUADRATIC = {"task": "quadratic", "task_options": {"dim": 50, "condition": 1000.0}, "epochs": 3}
DIGITS = {"task": "digits_mlp", "task_options": {}, "epochs": 4}
SGD_AGAINST_ADAM = [
    {"optimizer": "adam", "baseline": True},
    {"optimizer": "sgd", "name": "weaker", "fixed": {"momentum": 0.0}},
]
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "aa:quadratic": {**QUADRATIC, "arms": ADAMW_TWICE},
    "aa:digits_mlp": {**DIGITS, "arms": ADAMW_TWICE},
    "aa6:quadratic": {
        **QUADRATIC,
        "arms": [{"optimizer": "adamw", "name": f"adamw{i}", "baseline": i == 0} for i in range(6)],
    },
    "detect:digits_mlp": {**DIGITS, "arms": SGD_AGAINST_ADAM},
    # the same with twice the trials per search: what a larger search budget buys
    "detect6:digits_mlp": {**DIGITS, "arms": SGD_AGAINST_ADAM, "budget": {"trials_per_search": 6}},
    # AdamW against itself held to a too-low lr range ([1e-5, 1e-4] of [1e-4, 1e-1])
    "detect:quadratic": {
        **QUADRATIC,
        "arms": [
            {"optimizer": "adamw", "baseline": True},
            {"optimizer": "adamw", "name": "weaker", "space": {"lr": {"low": 1e-5, "high": 1e-4}}},
        ],
    },
}
DEFAULT_STUDIES = {
    "aa:quadratic": 40,
    "aa:digits_mlp": 40,
    "aa6:quadratic": 10,
    "detect:digits_mlp": 10,
    "detect6:digits_mlp": 10,
    "detect:quadratic": 10,
}
LABELS = ("better", "worse")


def spec_of(name: str, index: int) -> dict[str, Any]:
    """The spec of study ``index`` of an experiment: the defaults' budget, its own seeds."""
    experiment = EXPERIMENTS[name]
    return {
        "name": f"{name}-{index}",
        "task": experiment["task"],
        "task_options": experiment["task_options"],
        "arms": experiment["arms"],
        "budget": {"epochs": experiment["epochs"], **experiment.get("budget", {})},
        "search_seed": 1000 + index,
        "scheduler": "fifo",
    }


def run_one(name: str, index: int) -> dict[str, Any]:
    from memtune.studies.spec import parse_spec
    from memtune.tuning.runner import StudyRunner

    spec = parse_spec(spec_of(name, index))
    started = time.monotonic()
    verdict = StudyRunner(spec).run()
    return {
        "experiment": name,
        "index": index,
        "seconds": round(time.monotonic() - started, 1),
        "budget": verdict.budget,
        "outcomes": {c.arm: c.outcome for c in verdict.comparisons},
        "p_adjusted": {c.arm: c.p_adjusted for c in verdict.comparisons},
        "reasons": {c.arm: c.reason for c in verdict.comparisons if c.reason},
        "scores": {a.arm: a.scores for a in verdict.arms},
    }


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rate(hits: int, n: int) -> str:
    if n == 0:
        return "no studies"
    interval = stats.binomtest(hits, n).proportion_ci(0.95, method="exact")
    return f"{hits} of {n} ({hits / n:.1%}, exact 95% CI [{interval.low:.1%}, {interval.high:.1%}])"


def report(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for name in EXPERIMENTS:
        mine = [r for r in results if r["experiment"] == name]
        if not mine:
            continue
        seconds = sum(r["seconds"] for r in mine) / len(mine)
        budget = mine[0]["budget"]
        if name.startswith("aa6"):
            labelled = sum(any(o in LABELS for o in r["outcomes"].values()) for r in mine)
            lines.append(f"{name}: any false label (family-wise) in {_rate(labelled, len(mine))}")
        elif name.startswith("aa"):
            labelled = sum(any(o in LABELS for o in r["outcomes"].values()) for r in mine)
            verdict = "PASS" if labelled < 5 * len(mine) / 40 else "FAIL"
            lines.append(
                f"{name}: false label in {_rate(labelled, len(mine))}: {verdict} "
                "(fewer than 5 of 40)"
            )
        else:
            found = sum(r["outcomes"].get("weaker") == "worse" for r in mine)
            lines.append(f"{name}: the weaker arm found 'worse' in {_rate(found, len(mine))}")
        others = sorted({o for r in mine for o in r["outcomes"].values()} - set(LABELS))
        counts = {
            o: sum(list(r["outcomes"].values()).count(o) for r in mine) for o in [*LABELS, *others]
        }
        lines.append(
            f"    labels over every comparison: {counts}; {seconds:.0f} s a study; {budget}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/aa_calibration"))
    parser.add_argument(
        "--only", action="append", choices=list(EXPERIMENTS), help="run only these experiments"
    )
    parser.add_argument(
        "--studies",
        type=int,
        default=None,
        help="studies per experiment (default: 40 A/A, 10 others)",
    )
    parser.add_argument("--report", action="store_true", help="print the figures and stop")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.jsonl"
    results = load(path)
    if not args.report:
        import optuna

        from memtune.tuning.cluster import ray_cluster

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per search otherwise
        done = {(r["experiment"], r["index"]) for r in results}
        plan = [
            (name, index)
            for name in args.only or list(EXPERIMENTS)
            for index in range(args.studies or DEFAULT_STUDIES[name])
            if (name, index) not in done
        ]
        print(f"{len(done)} studies done before, {len(plan)} to run; results in {path}")
        with ray_cluster():  # one Ray for every study
            for number, (name, index) in enumerate(plan, 1):
                result = run_one(name, index)
                with path.open("a") as stream:
                    stream.write(json.dumps(result) + "\n")
                results.append(result)
                print(
                    f"[{number}/{len(plan)}] {name} #{index}: {result['outcomes']} "
                    f"({result['seconds']} s)",
                    flush=True,
                )
    print("\n".join(report(results)))


if __name__ == "__main__":
    main()
