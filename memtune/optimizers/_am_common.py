"""What AM-SGD and AM-AdamW share (:mod:`memtune.optimizers.am_sgd`,
:mod:`memtune.optimizers.am_adamw`): the clipped ratio that is beta, and the state both keep
(the lr of the last step, the last beta)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

GRANULARITIES = ("group", "tensor")
COUPLINGS = ("paper", "scale_invariant")


def clipped_ratio(numerator: Tensor, denominator: Tensor, upper: float) -> Tensor:
    """clip(N / Dn, 0, upper), and 0 where Dn == 0 (the memory equals the gradient)."""
    ratio = torch.where(denominator > 0, numerator / denominator, torch.zeros_like(numerator))
    return ratio.clamp(0.0, upper)


def clipped_on_host(numerator: float, denominator: float, beta_max: float) -> float:
    """clip(N / Dn, 0, beta_max), 0 where Dn is not positive: :func:`clipped_ratio` in floats
    (a NaN numerator stays NaN, as there)."""
    return min(max(numerator / denominator, 0.0), beta_max) if denominator > 0 else 0.0


def keep_lr(state: dict, lr: float) -> None:
    """state["prev_lr"] <- lr, the eta_prev of the next step: a CPU float64 tensor, refilled
    only when the lr changed (a new tensor per parameter per step cost ~5% of a step)."""
    prev = state.get("prev_lr")
    if prev is None or prev.dtype != torch.float64:
        state["prev_lr"] = torch.tensor(float(lr), dtype=torch.float64)
    elif float(prev) != lr:
        prev.fill_(lr)


def last_beta(optimizer: Optimizer) -> Tensor | None:
    betas = []
    for group in optimizer.param_groups:
        group_betas = [
            optimizer.state[p]["beta"] for p in group["params"] if "beta" in optimizer.state[p]
        ]
        if not group_betas:
            continue
        if group.get("granularity", "tensor") == "group":
            group_betas = group_betas[:1]
        betas.extend(beta.reshape(1) for beta in group_betas)
    return torch.cat(betas) if betas else None


def as_tensors(values: list[float], like: Tensor) -> list[Tensor]:
    """0-d tensors of ``like``'s dtype, one per distinct value (a group beta is one tensor)."""
    made: dict[float, Tensor] = {}
    for value in values:
        if value not in made:
            made[value] = torch.tensor(value, dtype=like.dtype)
    return [made[value] for value in values]
