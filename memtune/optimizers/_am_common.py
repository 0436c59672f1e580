"""What the paths of AM-SGD and AM-AdamW share (:mod:`memtune.optimizers.am_sgd`,
:mod:`memtune.optimizers.am_adamw` and their ``*_compiled`` modules): the clipped ratio that is
beta, the formulas every path computes it with (eager, compiled graphs, the host; the C kernels
mirror them), and the state both keep (the lr of the last step, the last beta)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from memtune.optimizers._base import flat_dot

GRANULARITIES = ("group", "tensor")

COUPLINGS = ("paper", "scale_invariant")


def clipped_ratio(numerator: Tensor, denominator: Tensor, upper: float | Tensor) -> Tensor:
    """clip(N / Dn, 0, upper), and 0 where Dn == 0 (the memory equals the gradient). A 0-d
    tensor ``upper`` (a compiled graph's hyperparameter) clips through ``torch.minimum``."""
    ratio = torch.where(denominator > 0, numerator / denominator, torch.zeros_like(numerator))
    if isinstance(upper, Tensor):
        return torch.minimum(ratio.clamp(min=0), upper)
    return ratio.clamp(0.0, upper)


def clipped_on_host(numerator: float, denominator: float, beta_max: float) -> float:
    """clip(N / Dn, 0, beta_max), 0 where Dn is not positive: :func:`clipped_ratio` in floats
    (a NaN numerator stays NaN, as there)."""
    return min(max(numerator / denominator, 0.0), beta_max) if denominator > 0 else 0.0


# --------------------------------------------------------------------------------------------
# AM-SGD: beta from the three inner products <g, g>, <g, d>, <d, d> of each tensor.
# --------------------------------------------------------------------------------------------


def am_sgd_fraction(G: Any, X: Any, D: Any, gap: Any, *, lr: Any, lam: Any) -> tuple:
    """(N, Dn) of AM-SGD's beta = N / Dn from the three sums and the gap eta_prev * X: Python
    floats, tensors, or 0-d tensors inside a graph (every path of AM-SGD)."""
    numerator = (1 + lam) * gap / lr - (X + lam * D - G - lam * X)
    return numerator, D - 2 * X + G


def _am_sgd_betas(
    grads: list[Tensor],
    buffers: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    lam: float,
    beta_max: float,
    granularity: str,
    fixed_beta: float | None,
) -> list[Tensor]:
    """One beta per tensor (the same tensor repeated when the group shares one)."""
    if fixed_beta is not None:
        beta = torch.full((), fixed_beta, dtype=grads[0].dtype, device=grads[0].device)
        return [beta] * len(grads)
    gg = [flat_dot(g, g) for g in grads]
    gd = [flat_dot(g, d) for g, d in zip(grads, buffers, strict=True)]
    dd = [flat_dot(d, d) for d in buffers]
    return _am_sgd_betas_from_products(
        gg, gd, dd, prev_lrs, lr=lr, lam=lam, beta_max=beta_max, granularity=granularity
    )


def _am_sgd_betas_from_products(
    gg: list[Tensor],
    gd: list[Tensor],
    dd: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    lam: float,
    beta_max: float,
    granularity: str,
) -> list[Tensor]:
    """beta from each tensor's <g, g>, <g, d> and <d, d> (summed first for one group beta)."""
    count = len(gg)
    gaps = [eta_prev * x for eta_prev, x in zip(prev_lrs, gd, strict=True)]
    if granularity == "group":
        gg, gd, dd, gaps = ([torch.stack(v).sum()] for v in (gg, gd, dd, gaps))
    betas = []
    for G, X, D, gap in zip(gg, gd, dd, gaps, strict=True):
        betas.append(clipped_ratio(*am_sgd_fraction(G, X, D, gap, lr=lr, lam=lam), beta_max))
    return betas * count if granularity == "group" else betas


def _am_sgd_betas_on_host(
    rows: list[list[float]],
    prev_lrs: list[float],
    *,
    lr: float,
    lam: float,
    beta_max: float,
    granularity: str,
) -> list[float]:
    """:func:`_am_sgd_betas_from_products` in Python floats, for CPU tensors (where reading
    the sums is free): a few microseconds instead of ~40 small tensor ops per step."""
    sums = [[G, X, D, eta_prev * X] for (G, X, D), eta_prev in zip(rows, prev_lrs, strict=True)]
    if granularity == "group":
        sums = [[math.fsum(column) for column in zip(*sums, strict=True)]]
    betas = []
    for G, X, D, gap in sums:
        numerator, denominator = am_sgd_fraction(G, X, D, gap, lr=lr, lam=lam)
        betas.append(clipped_on_host(numerator, denominator, beta_max))
    return betas * len(rows) if granularity == "group" else betas


def _am_sgd_first_steps(
    grads: list[Tensor], momentum_buffers: list[Tensor | None]
) -> tuple[list[int], list[Tensor]]:
    """Creates d_1 = g_1 (a plain SGD step) for the tensors seen for the first time; returns
    the indices of the others, whose beta is computed, and a zero beta for every tensor."""
    warm, cold = [], []
    for i, d in enumerate(momentum_buffers):
        if d is None:
            momentum_buffers[i] = torch.clone(grads[i]).detach()
            cold.append(i)
        else:
            warm.append(i)
    betas: list[Tensor] = [None] * len(grads)  # type: ignore[list-item] # the caller fills the warm
    if cold:
        zero = torch.zeros((), dtype=grads[0].dtype, device=grads[0].device)
        for i in cold:
            betas[i] = zero
    return warm, betas


# --------------------------------------------------------------------------------------------
# AM-AdamW: the numerator of beta (its denominator is one sum, <s, d - g>).
# --------------------------------------------------------------------------------------------


def am_adamw_gap_scale(prev_lr: Any, lr: Any, weight_decay: Any) -> Any:
    """(1 + wd eta) eta_prev / eta: the weight of the gap's sums in AM-AdamW's N (Python
    floats, or 0-d tensors inside a graph)."""
    return (1 + weight_decay * lr) * prev_lr / lr


def am_adamw_numerator(
    gap: Any, pull: Any, decay_pull: Any | None, *, prev_lr: Any, lr: Any, weight_decay: Any
) -> Any:
    """N of AM-AdamW's beta = clip(N / Dn) (docs/algorithms.md):

        N = (1 + wd eta) eta_prev / eta <g, d / P + wd x> - <d - g, (g + lambda P d) M>
            - wd <x, d - g>

    from its parts ``gap`` = <g, d / P + wd x>, ``pull`` and ``decay_pull`` = wd <x, d - g>
    (``None`` without weight decay): their sums (the eager paths), or their per-element terms,
    which the compiled graph sums once (N is linear in them). The C kernel's
    ``am_adamw_sums_chunks`` (cpu_kernels.c) mirrors it."""
    numerator = am_adamw_gap_scale(prev_lr, lr, weight_decay) * gap - pull
    return numerator if decay_pull is None else numerator - decay_pull


# --------------------------------------------------------------------------------------------
# The state both keep, and the betas decided on the host as tensors.
# --------------------------------------------------------------------------------------------


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
