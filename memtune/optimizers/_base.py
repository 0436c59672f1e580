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


def keep_implementation_on_load(optimizer: torch.optim.Optimizer) -> None:
    """Makes ``load_state_dict`` keep this optimizer's ``impl`` and ``foreach``.

    torch copies every group entry of a state dict, so a checkpoint written by a for-loop run
    would switch a compiled optimizer back to the for-loop; the implementation is a property
    of the process that runs the step, not of the training state.
    """

    def restore(loaded: torch.optim.Optimizer) -> None:
        for group in loaded.param_groups:
            group["impl"] = loaded.defaults["impl"]
            group["foreach"] = loaded.defaults["foreach"]

    optimizer.register_load_state_dict_post_hook(restore)


def keep_float64_on_load(optimizer: torch.optim.Optimizer, key: str) -> None:
    """Makes ``load_state_dict`` keep the state entry ``key`` (a float64 scalar such as the
    previous lr) in float64.

    torch casts every floating state entry but ``step`` to its parameter's dtype, so a float32
    model's previous lr would come back rounded and a resumed run would take another trajectory
    (the contract's state_dict round trip is exact).
    """
    saved: dict[int, torch.Tensor] = {}  # position of the parameter in the groups -> value

    def before(loaded: torch.optim.Optimizer, state_dict: dict) -> None:
        saved.clear()
        ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        for position, i in enumerate(ids):
            value = state_dict["state"].get(i, {}).get(key)
            if isinstance(value, torch.Tensor):
                saved[position] = value.to(torch.float64, copy=True)

    def after(loaded: torch.optim.Optimizer) -> None:
        params = [p for group in loaded.param_groups for p in group["params"]]
        for position, value in saved.items():
            loaded.state[params[position]][key] = value
        saved.clear()

    optimizer.register_load_state_dict_pre_hook(before)
    optimizer.register_load_state_dict_post_hook(after)
