"""The report's PNG plots, drawn with matplotlib's Agg backend from ``report.json`` alone.

One forest plot per claim (every check's improvement with its 95% interval, the margin of a
non-inferiority check dashed), and the claim's own plot: learning curves (claim 1), step-time
ratios (2), search trials against their learning rate with divergences marked (3), basin rates
(4), escape rate against sharpness (5), test metric against optimizer memory (6); and the
performance profile across all tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no browser

import matplotlib.pyplot as plt

__all__ = ["draw_claim", "draw_profile"]

COLORS = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#6e7781"}
DPI = 110


def _save(figure: Any, directory: Path, name: str) -> str:
    figure.tight_layout()
    # No timestamp or version in the file: the same numbers give the same bytes.
    figure.savefig(directory / name, dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return name


def _forest(claim: Mapping[str, Any], directory: Path) -> str:
    rows = claim["checks"]
    figure, axis = plt.subplots(figsize=(8, 0.38 * len(rows) + 1.4))
    for y, row in enumerate(reversed(rows)):
        color = COLORS[row.get("outcome", "inconclusive")]
        sd = row.get("sd") or 0.0
        scale = sd if sd > 0 else 1.0  # standardized, so that tasks share one axis
        if row.get("improvement") is None:
            axis.text(0, y, "no data", va="center", ha="center", fontsize=7, color=color)
            continue
        centre = row["improvement"] / scale
        low = row["ci_low"] / scale if row.get("ci_low") is not None else centre
        high = row["ci_high"] / scale if row.get("ci_high") is not None else centre
        axis.plot([low, high], [y, y], color=color, linewidth=2)
        axis.plot(centre, y, "o", color=color)
        if row.get("hypothesis") == "non_inferior" and row.get("margin"):
            axis.plot(-row["margin"] / scale, y, "|", color="black", markersize=12)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=7)
    axis.set_xlabel(
        "improvement of the memory optimizer, in sd of its paired improvements\n"
        "(95% CI; |: the non-inferiority margin; right of 0: the memory optimizer better)",
        fontsize=8,
    )
    axis.set_title(f"Claim {claim['number']}: {claim['line']}", fontsize=10)
    handles = [plt.Line2D([], [], color=c, marker="o", label=o) for o, c in COLORS.items()]
    axis.legend(handles=handles, fontsize=7, loc="lower right")
    return _save(figure, directory, f"claim{claim['number']}-forest.png")


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


def _overhead(claim: Mapping[str, Any], directory: Path) -> str:
    rows = [r for r in claim["checks"] if r.get("improvement") is not None]
    figure, axis = plt.subplots(figsize=(8, 0.38 * max(len(rows), 1) + 1.4))
    for y, row in enumerate(reversed(rows)):
        ratio = math.exp(-row["improvement"])  # memory optimizer / reference
        low = math.exp(-row["ci_high"]) if row.get("ci_high") is not None else ratio
        high = math.exp(-row["ci_low"]) if row.get("ci_low") is not None else ratio
        color = COLORS[row.get("outcome", "inconclusive")]
        axis.plot([low, high], [y, y], color=color, linewidth=2)
        axis.plot(ratio, y, "o", color=color)
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.axvline(1.10, color="black", linestyle="--", linewidth=0.8, label="1.10: the margin")
    axis.set_xscale("log")
    axis.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=7)
    axis.set_xlabel("step time: memory optimizer / fused baseline (95% CI)", fontsize=8)
    axis.legend(fontsize=7)
    return _save(figure, directory, f"claim{claim['number']}-overhead.png")


def _divergence(data: Mapping[str, Any], number: int, directory: Path) -> str:
    figure, axes = plt.subplots(1, max(1, len(data)), figsize=(7, 3.4), squeeze=False)
    for axis, (name, arms) in zip(axes.flat, data.items(), strict=False):
        finite = [p["value"] for pts in arms.values() for p in pts if p["value"] is not None]
        top = max(finite) * 1.3 if finite else 1.0
        for arm, points in arms.items():
            xs = [p["lr"] for p in points if p["value"] is not None]
            ys = [p["value"] for p in points if p["value"] is not None]
            line = axis.plot(xs, ys, "o", label=arm, alpha=0.8)[0]
            bad = [p["lr"] for p in points if p["value"] is None]
            axis.plot(bad, [top] * len(bad), "x", color=line.get_color(), markersize=9)
        axis.axhline(top, color="#cf222e", linewidth=0.6)
        axis.text(  # x in axes coordinates, y in data: on the line whatever the x scale
            0.01, top, "x: diverged", transform=axis.get_yaxis_transform(), va="bottom",
            fontsize=7, color="#cf222e",
        )  # fmt: skip
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("learning rate (search trials)", fontsize=8)
        axis.set_ylabel("final validation metric", fontsize=8)
        axis.set_title(name, fontsize=9)
        axis.legend(fontsize=7)
    return _save(figure, directory, f"claim{number}-divergence.png")


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
    "curves": "validation metric per epoch, mean of the seed runs",
    "overhead": "step time ratio, memory optimizer over fused baseline",
    "divergence": "search trials by learning rate; x: diverged",
    "basin": "fraction of random starts ending in the global basin",
    "escape": "escape rate against sharpness",
    "memory": "test metric against optimizer-state memory",
}


def draw_claim(claim: Mapping[str, Any], directory: Path) -> list[tuple[str, str]]:
    """The claim's plots as (file name, caption), the forest plot first."""
    number = claim["number"]
    drawn = [(_forest(claim, directory), f"claim {number}: every check's improvement")]
    data = claim.get("plots", {})
    for kind, content in data.items():
        if not content:
            continue
        if kind == "curves":
            name = _curves(content, number, directory)
        elif kind == "overhead":
            name = _overhead(claim, directory)
        elif kind == "divergence":
            name = _divergence(content, number, directory)
        elif kind == "basin":
            name = _rate_bars(content, number, directory)
        elif kind == "escape":
            name = _escape(content, number, directory)
        elif kind == "memory":
            name = _memory(content, number, directory)
        else:
            continue
        drawn.append((name, f"claim {number}: {_CAPTIONS[kind]}"))
    return drawn


def draw_profile(profile: Mapping[str, Any], directory: Path) -> str:
    figure, axis = plt.subplots(figsize=(7, 4.2))
    palette = plt.get_cmap("tab20")
    for index, (arm, line) in enumerate(profile["arms"].items()):
        axis.step(
            profile["taus"],
            line["fraction"],
            where="post",
            color=palette(index % 20),
            linestyle=("-", "--", "-.", ":")[index % 4],
            linewidth=1.6,
            label=f"{arm} ({line['studies']} studies)",
        )
    axis.set_xlim(1, 4)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("tau: time to target within tau x the fastest arm", fontsize=8)
    axis.set_ylabel("fraction of studies", fontsize=8)
    axis.legend(fontsize=6, ncol=2)
    return _save(figure, directory, "profile.png")
