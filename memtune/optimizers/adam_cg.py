"""Adam+CG: Adam with a priority buffer of past gradients (McRae et al., "Memory Augmented
Optimizers for Deep Learning", ICLR 2022), the CM paper's baseline. The buffer is
:mod:`memtune.optimizers._priority_buffer`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from memtune.optimizers._base import (
    ParamsT,
)
from memtune.optimizers._priority_buffer import (
    _compiled_buffer_adam,
    _count_step,
    _decay_keys,
    _host_slots,
    _on_cpu_kernels,
    _plus_buffer_mean,
    _priorities,
    _PriorityBufferAdam,
    _slots,
    _write_slot,
)
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
    impl = resolve_impl(impl, foreach, params)
    foreach = impl == "foreach"
    if impl == "compiled":
        slots = None
        on_host = _on_cpu_kernels(
            params, grads, exp_avgs, exp_avg_sqs, critical_buffers, critical_sums
        )
        if topc > 0 and on_host:
            slots, priorities = _host_slots(critical_keys, grads, synced)
        elif topc > 0:
            priorities = _priorities(grads, synced, compiled_step=True)
            slots = _slots(critical_keys, priorities, synced)
        _compiled_buffer_adam(
            "adam_cg",
            list(range(len(params))),
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            critical_buffers,
            critical_sums,
            slots,
            state_steps,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
        )
        if slots is not None:
            _decay_keys(critical_keys, slots, priorities, decay, synced)
        return
    if topc > 0:
        priorities = _priorities(grads, synced)
        slots = _slots(critical_keys, priorities, synced)
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
    step_sizes, bias_corrections2_sqrt = _count_step(state_steps, lr=lr, beta1=beta1, beta2=beta2)
    # m, v <- Adam's moments of u;  x <- x - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
    if foreach:
        torch._foreach_lerp_(exp_avgs, directions, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, directions, directions, value=1 - beta2)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, bias_corrections2_sqrt)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)
        return
    for x, u, m, v, step_size, bc2_sqrt in zip(
        params, directions, exp_avgs, exp_avg_sqs, step_sizes, bias_corrections2_sqrt, strict=True
    ):
        m.lerp_(u, 1 - beta1)
        v.mul_(beta2).addcmul_(u, u, value=1 - beta2)
        x.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(eps), value=step_size)
