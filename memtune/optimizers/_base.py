"""Small helpers shared by the optimizers of this package: argument checks and group plumbing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0.0:
        raise ValueError(f"Invalid {name}: {value} (must be >= 0)")


def check_unit_interval(name: str, value: float, *, closed: bool = False) -> None:
    upper_ok = value <= 1.0 if closed else value < 1.0
    if not (value >= 0.0 and upper_ok):
        bound = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"Invalid {name}: {value} (must be in {bound})")


def check_betas(betas: tuple[float, float]) -> None:
    for index, beta in enumerate(betas):
        check_unit_interval(f"beta parameter at index {index}", beta)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Invalid {name}: {value!r} (choose one of {', '.join(choices)})")


def evaluate_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """Runs the closure with grad enabled, as torch's optimizers do inside their no_grad step."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def flat_dot(a: Tensor, b: Tensor) -> Tensor:
    """<a, b> over every element, as a 0-dim tensor on a's device (no host sync)."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


def default_foreach(params: list[Tensor]) -> bool:
    """The torch default: the multi-tensor path on CUDA, the for-loop elsewhere.

    On CPU a step is memory-bound and the for-loop keeps each tensor in cache between the
    ops of one update, which the multi-tensor path cannot (bench/optimizer_step.py shows it).
    """
    return bool(params) and all(p.is_cuda for p in params)
