"""Adam+CG: Adam with a priority buffer of past gradients (McRae et al., "Memory Augmented
Optimizers for Deep Learning", ICLR 2022), the CM paper's baseline. The buffer is
:mod:`memtune.optimizers._priority_buffer`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from memtune.optimizers._base import ParamsT
from memtune.optimizers._priority_buffer import (
    _adam_update,
    _decay_keys,
    _lerp_moments,
    _plus_buffer_mean,
    _PriorityBufferAdam,
    _step_slots,
    _write_slot,
)
from memtune.optimizers._priority_buffer_compiled import _compiled_buffer_adam
from memtune.optimizers.compiled import resolve_impl

__all__ = ["AdamCG", "adam_cg"]


class AdamCG(_PriorityBufferAdam):
    r"""Adam with critical gradients (Adam+CG), the Adam+CM paper's baseline.

    .. code-block:: text

        input: lr, beta1, beta2 (betas), eps, wd (coupled L2), C (topc), decay, synced
        initialize: m <- 0, v <- 0, k <- 0, buffer <- {} (at most C (key, gradient) pairs)
        for t = 1, 2, ...:
            r <- sum over the group of |g_p|   (synced)   or   |g_p| per tensor
            for each tensor p:
                if t == 1:  u <- g
                else:       u <- g + mean(buffer)         (entries from earlier steps)
                insert (r, g) by the priority rule (replace the smallest key if r is larger)
                u <- u + wd x
                k <- k + 1
                m <- beta1 m + (1 - beta1) u;  v <- beta2 v + (1 - beta2) u^2
                keys <- keys * decay
                x <- x - lr / (1 - beta1^k) m / (sqrt(v) / sqrt(1 - beta2^k) + eps)
        return x

    The first call is a plain Adam step. ``topc=0`` is plain Adam with coupled L2.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate (default 1e-3).
        betas: (beta1, beta2), default (0.9, 0.999).
        eps: default 1e-8.
        weight_decay: coupled L2 penalty (default 0).
        topc: buffer size C (default 10).
        decay: priority decay per step (default 0.7).
        synced: one priority and one replace decision for the whole group (default True).
        impl: ``"compiled"``, ``"foreach"`` or ``"forloop"`` (default: compiled on CPU where
            memtune's CPU kernels build, and for a group of at least a million elements where
            torch.compile works, else torch's default).
        foreach: torch's flag, used when ``impl`` is not given.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        topc: int = 10,
        decay: float = 0.7,
        synced: bool = True,
        impl: str | None = None,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, topc, decay, synced, impl, foreach)

    @staticmethod
    def _functional(*args: Any, **kwargs: Any) -> None:
        adam_cg(*args, **kwargs)


def adam_cg(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    critical_buffers: list[Tensor],
    critical_sums: list[Tensor],
    critical_keys: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    topc: int,
    decay: float,
    synced: bool,
    impl: str | None = None,
    foreach: bool | None = None,
) -> None:
    """Functional Adam+CG over one group; the lists are those of :func:`adam_cm`."""
    _ADAM_CG_STEPS[resolve_impl(impl, foreach, params)](
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        critical_buffers,
        critical_sums,
        critical_keys,
        state_steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        topc=topc,
        decay=decay,
        synced=synced,
    )


def _eager_adam_cg(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    critical_buffers: list[Tensor],
    critical_sums: list[Tensor],
    critical_keys: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    topc: int,
    decay: float,
    synced: bool,
    foreach: bool,
) -> None:
    """The for-loop (``foreach=False``) and multi-tensor paths: the same ops, one tensor at a
    time or through torch's foreach kernels."""
    slots, priorities = _step_slots(critical_keys, grads, synced, topc=topc)
    if slots is not None:
        directions = []
        for g, buffer, buffer_sum, slot in zip(
            grads, critical_buffers, critical_sums, slots, strict=True
        ):
            directions.append(_plus_buffer_mean(g, buffer_sum, slot))
            _write_slot(buffer, buffer_sum, slot, g)
        _decay_keys(critical_keys, slots, priorities, decay, synced)
    else:
        directions = [g.clone() for g in grads]
    if weight_decay != 0:  # coupled L2: u <- u + wd x
        if foreach:
            torch._foreach_add_(directions, params, alpha=weight_decay)
        else:
            for u, x in zip(directions, params, strict=True):
                u.add_(x, alpha=weight_decay)
    # m, v <- Adam's moments of u;  x <- x - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
    _lerp_moments(exp_avgs, directions, 1 - beta1, foreach=foreach)
    _adam_update(
        params,
        directions,
        exp_avg_sqs,
        state_steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        foreach=foreach,
        moves=exp_avgs,
    )


def _compiled_adam_cg(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    critical_buffers: list[Tensor],
    critical_sums: list[Tensor],
    critical_keys: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    topc: int,
    decay: float,
    synced: bool,
) -> None:
    """The compiled step (the CPU kernels, or inductor graphs) of every tensor."""
    compiled_tensors = (params, grads, exp_avgs, exp_avg_sqs, critical_buffers, critical_sums)
    slots, priorities = _step_slots(
        critical_keys, grads, synced, topc=topc, compiled_tensors=compiled_tensors
    )
    _compiled_buffer_adam(
        "adam_cg", list(range(len(params))), params, grads, exp_avgs, exp_avg_sqs,
        critical_buffers, critical_sums, slots, state_steps, lr=lr, beta1=beta1, beta2=beta2,
        eps=eps, weight_decay=weight_decay,
    )  # fmt: skip
    if slots is not None:
        _decay_keys(critical_keys, slots, priorities, decay, synced)  # type: ignore[arg-type]


_ADAM_CG_STEPS: dict[str, Callable[..., None]] = {
    "compiled": _compiled_adam_cg,
    "foreach": functools.partial(_eager_adam_cg, foreach=True),
    "forloop": functools.partial(_eager_adam_cg, foreach=False),
}
