"""Adam+CM: Adam with a priority buffer of past momenta (Malviya et al., "Promoting Exploration
in Memory-Augmented Adam using Critical Momenta", TMLR 2024; reference code:
chandar-lab/CMOptimizer). The buffer is :mod:`memtune.optimizers._priority_buffer`."""

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
    _Slot,
    _step_slots,
    _write_slot,
)
from memtune.optimizers._priority_buffer_compiled import _compiled_buffer_adam
from memtune.optimizers.compiled import resolve_impl

__all__ = ["AdamCM", "adam_cm"]


class AdamCM(_PriorityBufferAdam):
    r"""Adam with critical momenta (Adam+CM).

    .. code-block:: text

        input: lr, beta1, beta2 (betas), eps, wd (decoupled weight decay), C (topc),
               decay, synced
        initialize: m <- 0, v <- 0, k <- 0, buffer <- {} (at most C (key, momentum) pairs)
        for t = 1, 2, ...:
            r <- sum over the group of |g_p|   (synced)   or   |g_p| per tensor
            for each tensor p:
                x <- x (1 - lr wd)
                if t == 1:  insert (r, g);  u <- 0                       (quirk 1)
                else:
                    m <- beta1 m + (1 - beta1) g
                    u <- m + mean(buffer)                 (entries from earlier steps)
                    if buffer not full: insert (r, m)
                    elif r > smallest key: replace that entry by (r, m)  (quirk 2)
                k <- k + 1
                v <- beta2 v + (1 - beta2) u^2            (second moment of u, not of g)
                keys <- keys * decay
                x <- x - lr / (1 - beta1^k) u / (sqrt(v) / sqrt(1 - beta2^k) + eps)  (quirk 3)
        return x

    This is the reference code's behaviour (chandar-lab/CMOptimizer), kept so that results
    compare with the paper, oddities included:

    1. the first ``step()`` does not move the parameters (u = 0) and stores the gradient;
    2. the priority is the gradient norm while the stored value is the momentum;
    3. the bias correction counts one more step than m has seen (k includes the first call).

    Departures from the reference: ``topc=0`` works (no buffer: u = m after the first call),
    state is tensors only, and the buffer keeps a running sum (memory: m, v, C snapshots and
    the sum, i.e. (3 + C) x the parameters).

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate (default 1e-3).
        betas: (beta1, beta2), default (0.9, 0.999).
        eps: default 1e-8.
        weight_decay: decoupled weight decay (default 0).
        topc: buffer size C (default 5).
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
        topc: int = 5,
        decay: float = 0.7,
        synced: bool = True,
        impl: str | None = None,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, topc, decay, synced, impl, foreach)

    @staticmethod
    def _functional(*args: Any, **kwargs: Any) -> None:
        adam_cm(*args, **kwargs)


def adam_cm(
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
    """Functional Adam+CM over one group. The ``critical_*`` lists are empty when ``topc`` is
    0; with ``synced`` their keys are one tensor (or equal copies) for every tensor."""
    _ADAM_CM_STEPS[resolve_impl(impl, foreach, params)](
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


def _first_calls(
    grads: list[Tensor],
    critical_buffers: list[Tensor],
    critical_sums: list[Tensor],
    slots: list[_Slot] | None,
    state_steps: list[Tensor],
) -> list[int]:
    """Quirk 1: a tensor's first call stores g and makes no move (u = 0, so v stays 0 too).
    Returns the indices of the other tensors (the warm ones)."""
    warm = []
    for i, step in enumerate(state_steps):
        if float(step) > 0:
            warm.append(i)
            continue
        if slots is not None:
            _write_slot(critical_buffers[i], critical_sums[i], slots[i], grads[i])
        step += 1
    return warm


def _eager_adam_cm(
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
    warm = _first_calls(grads, critical_buffers, critical_sums, slots, state_steps)
    if weight_decay != 0:
        if foreach:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            for x in params:
                x.mul_(1 - lr * weight_decay)
    if warm:
        exp_avgs_warm = [exp_avgs[i] for i in warm]
        # m <- beta1 m + (1 - beta1) g;  u <- m + mean(buffer);  insert m
        _lerp_moments(exp_avgs_warm, [grads[i] for i in warm], 1 - beta1, foreach=foreach)
        directions = exp_avgs_warm
        if slots is not None:
            directions = []
            for m, i in zip(exp_avgs_warm, warm, strict=True):
                directions.append(_plus_buffer_mean(m, critical_sums[i], slots[i]))
                _write_slot(critical_buffers[i], critical_sums[i], slots[i], m)
        _adam_update(
            [params[i] for i in warm],
            directions,
            [exp_avg_sqs[i] for i in warm],
            [state_steps[i] for i in warm],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            foreach=foreach,
        )
    if slots is not None:
        _decay_keys(critical_keys, slots, priorities, decay, synced)  # type: ignore[arg-type]


def _compiled_adam_cm(
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
    """The compiled step (the CPU kernels, or inductor graphs): the decay of x is fused into
    the warm tensors' step."""
    compiled_tensors = (params, grads, exp_avgs, exp_avg_sqs, critical_buffers, critical_sums)
    slots, priorities = _step_slots(
        critical_keys, grads, synced, topc=topc, compiled_tensors=compiled_tensors
    )
    warm = _first_calls(grads, critical_buffers, critical_sums, slots, state_steps)
    if weight_decay != 0:
        for i in sorted(set(range(len(params))) - set(warm)):
            params[i].mul_(1 - lr * weight_decay)
    if warm:
        _compiled_buffer_adam(
            "adam_cm", warm, params, grads, exp_avgs, exp_avg_sqs, critical_buffers,
            critical_sums, slots, state_steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay,
        )  # fmt: skip
    if slots is not None:
        _decay_keys(critical_keys, slots, priorities, decay, synced)  # type: ignore[arg-type]


_ADAM_CM_STEPS: dict[str, Callable[..., None]] = {
    "compiled": _compiled_adam_cm,
    "foreach": functools.partial(_eager_adam_cm, foreach=True),
    "forloop": functools.partial(_eager_adam_cm, foreach=False),
}
