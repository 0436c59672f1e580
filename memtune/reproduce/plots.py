"""The report's PNG plots, drawn with matplotlib's Agg backend from ``report.json`` alone.

One forest plot per claim (every check's improvement with its interval, the margin of a
non-inferiority check marked), and the claim's own plots: learning curves and the
learning-rate sensitivity with seed bands (claim 1), iteration-time ratios (2), divergence rate
and final metric against the learning rate with and without warmup (3), basin rates (4),
escape rate against sharpness (5), test metric against optimizer memory (6); and the
performance profiles. Every function takes the report's models
(:mod:`memtune.reproduce.document`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no browser

import matplotlib.pyplot as plt

from memtune.reproduce.document import CheckRow, ClaimEntry, Profile, SweepResult

__all__ = ["draw_claim", "draw_profiles"]

CLIP = 8.0  # the forest plot's axis: +-8 standard deviations
COLORS = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#6e7781"}
DPI = 110


def _save(figure: Any, directory: Path, name: str) -> str:
    figure.tight_layout()
    # No timestamp or version in the file: the same numbers give the same bytes.
    figure.savefig(directory / name, dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return name


def _forest(claim: ClaimEntry, directory: Path) -> str:
    rows = claim.checks
    figure, axis = plt.subplots(figsize=(8, 0.38 * len(rows) + 1.4))
    for y, row in enumerate(reversed(rows)):
        color = COLORS.get(row.outcome, COLORS["inconclusive"])
        scale = row.sd if row.sd and row.sd > 0 else 1.0  # standardized: tasks share one axis
        if row.improvement is None or not math.isfinite(row.improvement):
            axis.text(0, y, "no data", va="center", ha="center", fontsize=7, color=color)
            continue
        centre = row.improvement / scale
        low = row.ci_low / scale if row.ci_low is not None else centre
        high = row.ci_high / scale if row.ci_high is not None else centre
        # An interval reaching a diverged search's worst value is open: drawn to the edge of
        # the axis with an arrow head, so that one row does not squash the others.
        if low < -CLIP:
            axis.plot(-CLIP, y, "<", color=color)
        if high > CLIP:
            axis.plot(CLIP, y, ">", color=color)
        low, high = max(low, -CLIP), min(high, CLIP)
        axis.plot([low, high], [y, y], color=color, linewidth=2)
        axis.plot(max(min(centre, CLIP), -CLIP), y, "o", color=color)
        if row.hypothesis == "non_inferior" and row.margin:
            axis.plot(-row.margin / scale, y, "|", color="black", markersize=12)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(range(len(rows)), [r.label for r in reversed(rows)], fontsize=7)
    axis.set_xlabel(
        "improvement of the memory optimizer, in sd of the compared values\n"
        "(interval; |: the non-inferiority margin; right of 0: the memory optimizer better)",
        fontsize=8,
    )
    axis.set_title(f"Claim {claim.number}: {claim.line}", fontsize=10)
    handles = [plt.Line2D([], [], color=c, marker="o", label=o) for o, c in COLORS.items()]
    axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_xlim(-CLIP * 1.08, CLIP * 1.08)
    return _save(figure, directory, f"claim{claim.number}-forest.png")


def _curves(data: Mapping[str, Any], number: int, directory: Path) -> str:
    names = list(data)
    columns = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat[len(names) :]:
        axis.set_visible(False)
    for axis, name in zip(axes.flat, names, strict=False):
        study = data[name]
        for arm, curve in study["arms"].items():
            dashed = not arm.startswith("am_")
            axis.plot(curve["epoch"], curve["mean"], "--" if dashed else "-", label=arm, marker=".")
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("epoch", fontsize=7)
        axis.set_ylabel(f"{study['metric']} (mean of seeds)", fontsize=7)
        if (
            "loss" in study["metric"]
            or "perplexity" in study["metric"]
            or study["metric"] == "value"
        ):
            axis.set_yscale("log")
        axis.tick_params(labelsize=6)
        axis.legend(fontsize=6)
    return _save(figure, directory, f"claim{number}-curves.png")


def _overhead(rows: Sequence[CheckRow], number: int, directory: Path) -> str:
    rows = [r for r in rows if r.source == "bench" and r.improvement is not None]
    figure, axis = plt.subplots(figsize=(8, 0.38 * max(len(rows), 1) + 1.4))
    for y, row in enumerate(reversed(rows)):
        ratio = math.exp(-row.improvement)  # memory optimizer / reference
        low = math.exp(-row.ci_high) if row.ci_high is not None else ratio
        high = math.exp(-row.ci_low) if row.ci_low is not None else ratio
        color = COLORS.get(row.outcome, COLORS["inconclusive"])
        axis.plot([low, high], [y, y], color=color, linewidth=2)
        axis.plot(ratio, y, "o", color=color)
        step = row.extra.get("step_ratio")
        if step:
            axis.plot(step, y, "x", color="#6e7781")
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.axvline(1.10, color="black", linestyle="--", linewidth=0.8, label="1.10: the margin")
    axis.plot([], [], "x", color="#6e7781", label="step() alone (median)")
    axis.set_xscale("log")
    axis.set_yticks(range(len(rows)), [r.label for r in reversed(rows)], fontsize=7)
    axis.set_xlabel("whole-iteration time: memory optimizer / fused baseline (95% CI)", fontsize=8)
    axis.legend(fontsize=7)
    return _save(figure, directory, f"claim{number}-overhead.png")


def _sweep_panels(sweeps: Sequence[SweepResult], number: int, directory: Path, name: str) -> str:
    """Per sweep: the headline against the learning rate with seed bands (top) and the share
    of runs that diverged (bottom)."""
    columns = max(1, len(sweeps))
    figure, axes = plt.subplots(
        2, columns, figsize=(4.4 * columns, 5.2), squeeze=False, sharex="col",
        gridspec_kw={"height_ratios": [3, 1]},
    )  # fmt: skip
    for column, sweep in enumerate(sweeps):
        top, bottom = axes[0][column], axes[1][column]
        for arm, line in sweep.arms.items():
            xs = [lr for lr, m in zip(line.lrs, line.mean, strict=True) if m is not None]
            ys = [m for m in line.mean if m is not None]
            drawn = top.plot(xs, ys, "-" if arm.startswith("am_") else "--", marker="o",
                             label=arm)[0]  # fmt: skip
            band = [
                (lr, lo, hi)
                for lr, lo, hi in zip(line.lrs, line.low, line.high, strict=True)
                if lo is not None and hi is not None
            ]
            if band:
                top.fill_between([b[0] for b in band], [b[1] for b in band],
                                 [b[2] for b in band], color=drawn.get_color(), alpha=0.15)  # fmt: skip
            bad = line.failed or line.diverged
            rates = [d / r if r else 0.0 for d, r in zip(bad, line.runs, strict=True)]
            bottom.plot(line.lrs, rates, marker=".", color=drawn.get_color())
        top.set_xscale("log")
        if sweep.mode == "min":
            top.set_yscale("log")
        top.set_ylabel(f"{sweep.metric} (mean, 95% seed band)", fontsize=7)
        top.set_title(sweep.name, fontsize=9)
        top.legend(fontsize=6)
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_ylabel("diverged" if sweep.failure is None else "failed to train", fontsize=7)
        bottom.set_xlabel("learning rate (each arm its own grid)", fontsize=7)
        for axis in (top, bottom):
            axis.tick_params(labelsize=6)
    return _save(figure, directory, f"claim{number}-{name}.png")


def _rate_errors(rates: list[Mapping[str, Any]]) -> list[list[float]]:
    """Error bars (below, above) of rates with their exact intervals."""
    return [
        [r["rate"] - (r["low"] or 0.0) for r in rates],
        [(r["high"] or 1.0) - r["rate"] for r in rates],
    ]


def _rate_bars(data: Mapping[str, Any], number: int, directory: Path) -> str:
    columns = min(2, max(1, len(data)))
    rows = max(1, math.ceil(len(data) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3 * rows), squeeze=False)
    for axis in axes.flat[len(data) :]:
        axis.set_visible(False)
    for axis, (name, study) in zip(axes.flat, data.items(), strict=False):
        arms = study["arms"]
        labels = list(arms)
        rates = [arms[a] for a in labels]
        axis.bar(
            labels,
            [r["rate"] for r in rates],
            yerr=_rate_errors(rates),
            capsize=4,
            color="#8250df",
            alpha=0.8,
        )
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("fraction of starts in the global basin", fontsize=8)
        axis.set_title(f"{name} (value < {study['threshold']:g}; exact 95% CI)", fontsize=8)
        axis.tick_params(labelsize=7)
    return _save(figure, directory, f"claim{number}-basin.png")


def _escape(data: Mapping[str, Any], number: int, directory: Path) -> str:
    figure, axis = plt.subplots(figsize=(6, 3.6))
    levels = sorted(data, key=float)
    arms = sorted({arm for level in levels for arm in data[level]})
    for offset, arm in enumerate(arms):
        xs = [float(level) * (1 + 0.03 * (offset - len(arms) / 2)) for level in levels]
        rates = [data[level][arm] for level in levels]
        axis.errorbar(
            xs,
            [r["rate"] for r in rates],
            yerr=_rate_errors(rates),
            marker="o",
            capsize=3,
            label=arm,
        )
    axis.set_xscale("log", base=2)
    axis.set_ylim(-0.05, 1.05)
    axis.set_xlabel("sharpness s of the sharp well", fontsize=8)
    axis.set_ylabel("escape rate (exact 95% CI)", fontsize=8)
    axis.legend(fontsize=7)
    return _save(figure, directory, f"claim{number}-escape.png")


def _memory(data: Mapping[str, Any], number: int, directory: Path) -> str:
    figure, axes = plt.subplots(
        1, max(1, len(data)), figsize=(4.2 * max(1, len(data)), 3.4), squeeze=False
    )
    for axis, (name, arms) in zip(axes.flat, data.items(), strict=False):
        for arm in arms:
            if arm["mean"] is None or arm["state_bytes"] is None:
                continue
            x = float(arm["state_bytes"]) / 2**10
            low = arm["ci_low"] if arm["ci_low"] is not None else arm["mean"]
            high = arm["ci_high"] if arm["ci_high"] is not None else arm["mean"]
            axis.errorbar(
                [x],
                [arm["mean"]],
                yerr=[[arm["mean"] - low], [high - arm["mean"]]],
                marker="o",
                capsize=3,
                label=arm["arm"],
            )
        axis.set_xlabel("optimizer state (KiB)", fontsize=8)
        axis.set_ylabel("test metric (mean, 95% CI)", fontsize=8)
        axis.set_title(name, fontsize=9)
        axis.legend(fontsize=7)
    return _save(figure, directory, f"claim{number}-memory.png")


_CAPTIONS = {
    "curves": "validation metric per epoch, mean of the seed runs (every search)",
    "sensitivity": "test metric against the learning rate, lambda at its default (seed bands)",
    "overhead": "whole-iteration time ratio, memory optimizer over fused baseline",
    "warmup": "final metric and divergence rate against the learning rate",
    "basin": "fraction of random starts ending in the global basin",
    "escape": "escape rate against sharpness",
    "memory": "test metric against optimizer-state memory",
}


def draw_claim(claim: ClaimEntry, directory: Path) -> list[tuple[str, str]]:
    """The claim's plots as (file name, caption), the forest plot first."""
    number = claim.number
    drawn = [(_forest(claim, directory), f"claim {number}: every check's improvement")]
    data = claim.plots
    if data.get("curves"):
        drawn.append((_curves(data["curves"], number, directory), "curves"))
    if claim.sweeps:
        kind = "warmup" if number == 3 else "sensitivity"
        drawn.append((_sweep_panels(claim.sweeps, number, directory, kind), kind))
    if any(row.source == "bench" and row.improvement is not None for row in claim.checks):
        drawn.append((_overhead(claim.checks, number, directory), "overhead"))
    if data.get("basin"):
        drawn.append((_rate_bars(data["basin"], number, directory), "basin"))
    if data.get("escape"):
        drawn.append((_escape(data["escape"], number, directory), "escape"))
    if data.get("memory"):
        drawn.append((_memory(data["memory"], number, directory), "memory"))
    return [
        (name, caption if caption.startswith("claim") else f"claim {number}: {_CAPTIONS[caption]}")
        for name, caption in drawn
    ]


def draw_profiles(profiles: Sequence[Profile], directory: Path) -> list[tuple[str, str]]:
    """One figure per family: the profile in gradient evaluations beside the one in seconds."""
    families: dict[str, list[Profile]] = {}
    for profile in profiles:
        families.setdefault(profile.name, []).append(profile)
    drawn = []
    palette = plt.get_cmap("tab10")
    for index, (family, panels) in enumerate(families.items()):
        figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
        for axis, profile in zip(axes.flat, panels, strict=True):
            for i, (arm, line) in enumerate(profile.arms.items()):
                axis.step(
                    profile.taus, line.fraction, where="post", color=palette(i % 10),
                    linestyle=("-", "--", "-.", ":")[i % 4], linewidth=1.6,
                    label=f"{arm}",
                )  # fmt: skip
            axis.set_xlim(1, 4)
            axis.set_ylim(0, 1.02)
            axis.set_xlabel(f"tau: cost in {profile.unit} within tau x the cheapest", fontsize=8)
            axis.set_ylabel(f"fraction of the {len(profile.workloads)} workloads", fontsize=8)
            axis.set_title(f"{family}: {profile.unit}", fontsize=9)
            axis.legend(fontsize=6)
        drawn.append((_save(figure, directory, f"profile-{index + 1}.png"),
                      f"performance profile: {family}"))  # fmt: skip
    return drawn
