"""Adam with a priority buffer of past momenta (Adam+CM) or past gradients (Adam+CG).

Adam+CM: Malviya et al., "Promoting Exploration in Memory-Augmented Adam using Critical
Momenta", TMLR 2024 (reference code: chandar-lab/CMOptimizer). Adam+CG: McRae et al.,
"Memory Augmented Optimizers for Deep Learning", ICLR 2022, the CM paper's baseline.

Both keep, per parameter tensor, at most C snapshots with a priority key each. Keys are the
gradient norm at insertion, decayed every step; a new snapshot replaces the lowest-key entry
when its key is higher. The mean of the buffer is added to the update to overshoot sharp
minima.

How the buffer is kept (the same for both):

* Empty slots hold the key ``-inf``, so "insert while not full, else replace the smallest key
  if the new key is larger" is one rule: replace ``argmin(keys)`` if ``r > min(keys)``.
  The decision is a 0-dim tensor on the parameters' device: no host sync in ``step``. On
  CPU, where reading it is free, only a replaced entry is touched, through a view.
* A running sum of the entries makes ``mean(buffer)`` one tensor op whatever C is, and the
  buffer is touched only at the one slot that may be replaced.
* ``synced=True`` (default): one key per step for the whole group (the sum of the tensors'
  gradient norms) and one replace decision per group, shared by every tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimizers._base import (
    ParamsT,
    check_betas,
    check_non_negative,
    check_unit_interval,
    default_foreach,
    evaluate_closure,
)

__all__ = ["AdamCG", "AdamCM", "adam_cm"]


@dataclass
class _Slot:
    """Where this step's snapshot goes: the slot index and whether it really replaces."""

    index: Tensor  # 0-dim long
    replace: Tensor  # 0-dim bool
    count_before: Tensor  # entries filled before this step's insert (float, 0-dim)


def _choose_slot(keys: Tensor, priority: Tensor) -> _Slot:
    index = torch.argmin(keys)
    replace = priority > keys[index]
    count_before = torch.isfinite(keys).sum().to(keys.dtype)
    return _Slot(index=index, replace=replace, count_before=count_before)


def _plus_buffer_mean(value: Tensor, buffer_sum: Tensor, slot: _Slot) -> Tensor:
    """value + mean(buffer) over the entries filled before this step, in one pass."""
    return torch.addcdiv(value, buffer_sum, slot.count_before.clamp(min=1))


def _write_slot(buffer: Tensor, buffer_sum: Tensor, slot: _Slot, value: Tensor) -> None:
    """buffer[slot] <- value if slot.replace, keeping buffer_sum equal to buffer.sum(0)."""
    if buffer.device.type == "cpu":
        # Reading the decision is no device sync on CPU: touch the buffer only where an entry
        # is really replaced, through a view (the device path below gathers and scatters).
        if bool(slot.replace):
            entry = buffer[int(slot.index)]
            buffer_sum.add_(value).sub_(entry)
            entry.copy_(value)
        return
    old = buffer[slot.index]
    new = torch.where(slot.replace, value, old)
    buffer_sum.add_(new).sub_(old)
    buffer.index_copy_(0, slot.index.reshape(1), new.unsqueeze(0))


def _update_keys(keys: Tensor, slot: _Slot, priority: Tensor, decay: float) -> Tensor:
    new_key = torch.where(slot.replace, priority.to(keys.dtype), keys[slot.index])
    keys = keys.index_put((slot.index.reshape(1),), new_key.reshape(1))
    return keys.mul_(decay)


def _init_buffer_state(state: dict, p: Tensor, topc: int) -> None:
    state["step"] = torch.tensor(0.0, dtype=torch.float32)
    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    if topc > 0:
        state["critical_buffer"] = p.new_zeros((topc, *p.shape))
        state["critical_sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["critical_keys"] = torch.full((topc,), float("-inf"), dtype=p.dtype, device=p.device)


class _PriorityBufferAdam(Optimizer):
    """The shared plumbing of Adam+CM and Adam+CG: argument checks, state, and keys."""

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        topc: int,
        decay: float,
        synced: bool,
        foreach: bool | None,
    ) -> None:
        check_non_negative("learning rate", lr)
        check_betas(betas)
        check_non_negative("epsilon value", eps)
        check_non_negative("weight_decay", weight_decay)
        if not (isinstance(topc, int) and topc >= 0):
            raise ValueError(f"Invalid topc: {topc} (must be an integer >= 0)")
        check_unit_interval("decay", decay, closed=True)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            topc=topc,
            decay=decay,
            synced=synced,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _init_group(self, group: dict) -> tuple[list[Tensor], list[Tensor], list[dict]]:
        params, grads, states = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if not state:
                _init_buffer_state(state, p, group["topc"])
            params.append(p)
            grads.append(p.grad)
            states.append(state)
        return params, grads, states

    @staticmethod
    def _priorities(grads: list[Tensor], synced: bool) -> list[Tensor]:
        norms = [torch.linalg.vector_norm(g) for g in grads]
        if synced:
            total = torch.stack(norms).sum()
            return [total] * len(grads)
        return norms

    @staticmethod
    def _slots(states: list[dict], priorities: list[Tensor], synced: bool) -> list[_Slot]:
        if synced:
            # Every tensor of the group holds the same keys: decide once, on device.
            slot = _choose_slot(states[0]["critical_keys"], priorities[0])
            return [slot] * len(states)
        return [
            _choose_slot(s["critical_keys"], r) for s, r in zip(states, priorities, strict=True)
        ]

    @staticmethod
    def _decay_keys(
        states: list[dict], slots: list[_Slot], priorities: list[Tensor], decay: float, synced: bool
    ) -> None:
        if synced:
            keys = _update_keys(states[0]["critical_keys"], slots[0], priorities[0], decay)
            for state in states:
                state["critical_keys"] = keys
            return
        for state, slot, r in zip(states, slots, priorities, strict=True):
            state["critical_keys"] = _update_keys(state["critical_keys"], slot, r, decay)


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
        foreach: use the multi-tensor path for the Adam arithmetic (default: on CUDA only).
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
        foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, topc, decay, synced, foreach)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params, grads, states = self._init_group(group)
            if not params:
                continue
            adam_cm(
                params,
                grads,
                states,
                lr=group["lr"],
                beta1=group["betas"][0],
                beta2=group["betas"][1],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                topc=group["topc"],
                decay=group["decay"],
                synced=group["synced"],
                foreach=group["foreach"],
            )
        return loss


def adam_cm(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    topc: int,
    decay: float,
    synced: bool,
    foreach: bool | None = None,
) -> None:
    """Functional Adam+CM over one group; ``states`` are the tensors' state dicts."""
    if foreach is None:
        foreach = default_foreach(params)
    has_buffer = topc > 0
    if has_buffer:
        priorities = _PriorityBufferAdam._priorities(grads, synced)
        slots = _PriorityBufferAdam._slots(states, priorities, synced)
    if weight_decay != 0:
        if foreach:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            for x in params:
                x.mul_(1 - lr * weight_decay)

    # Quirk 1: a tensor's first call stores g and makes no move (u = 0, so v stays 0 too).
    warm = []
    for i, state in enumerate(states):
        if float(state["step"]) > 0:
            warm.append(i)
            continue
        if has_buffer:
            _write_slot(state["critical_buffer"], state["critical_sum"], slots[i], grads[i])
        state["step"] += 1
    if warm:
        _adam_cm_warm(
            [params[i] for i in warm],
            [grads[i] for i in warm],
            [states[i] for i in warm],
            [slots[i] for i in warm] if has_buffer else None,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            foreach=foreach,
        )
    if has_buffer:
        _PriorityBufferAdam._decay_keys(states, slots, priorities, decay, synced)


def _adam_cm_warm(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict],
    slots: list[_Slot] | None,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    foreach: bool,
) -> None:
    """Adam+CM from a tensor's second call on: the momentum, the buffer, and the Adam step."""
    exp_avgs = [s["exp_avg"] for s in states]
    exp_avg_sqs = [s["exp_avg_sq"] for s in states]
    # m <- beta1 m + (1 - beta1) g;  u <- m + mean(buffer);  insert m
    if foreach:
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    else:
        for m, g in zip(exp_avgs, grads, strict=True):
            m.lerp_(g, 1 - beta1)
    directions = exp_avgs
    if slots is not None:
        directions = []
        for s, m, slot in zip(states, exp_avgs, slots, strict=True):
            directions.append(_plus_buffer_mean(m, s["critical_sum"], slot))
            _write_slot(s["critical_buffer"], s["critical_sum"], slot, m)

    step_sizes, bias_corrections2_sqrt = [], []
    for s in states:
        s["step"] += 1
        step = float(s["step"])
        step_sizes.append(-lr / (1 - beta1**step))
        bias_corrections2_sqrt.append((1 - beta2**step) ** 0.5)
    # v <- beta2 v + (1 - beta2) u^2;  x <- x - lr / bc1 * u / (sqrt(v) / sqrt(bc2) + eps)
    if foreach:
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, directions, directions, value=1 - beta2)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, bias_corrections2_sqrt)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, directions, denominators, step_sizes)
        return
    for x, u, v, step_size, bc2_sqrt in zip(
        params, directions, exp_avg_sqs, step_sizes, bias_corrections2_sqrt, strict=True
    ):
        v.mul_(beta2).addcmul_(u, u, value=1 - beta2)
        x.addcdiv_(u, (v.sqrt() / bc2_sqrt).add_(eps), value=step_size)


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
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, topc, decay, synced, False)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params, grads, states = self._init_group(group)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            topc, synced = group["topc"], group["synced"]
            if topc > 0:
                priorities = self._priorities(grads, synced)
                slots = self._slots(states, priorities, synced)
                directions = []
                for s, g, slot in zip(states, grads, slots, strict=True):
                    directions.append(_plus_buffer_mean(g, s["critical_sum"], slot))
                    _write_slot(s["critical_buffer"], s["critical_sum"], slot, g)
                self._decay_keys(states, slots, priorities, group["decay"], synced)
            else:
                directions = [g.clone() for g in grads]
            for x, u, s in zip(params, directions, states, strict=True):
                if group["weight_decay"] != 0:
                    u.add_(x, alpha=group["weight_decay"])
                s["step"] += 1
                step = float(s["step"])
                s["exp_avg"].lerp_(u, 1 - beta1)
                s["exp_avg_sq"].mul_(beta2).addcmul_(u, u, value=1 - beta2)
                denominator = (s["exp_avg_sq"].sqrt() / (1 - beta2**step) ** 0.5).add_(group["eps"])
                x.addcdiv_(s["exp_avg"], denominator, value=-group["lr"] / (1 - beta1**step))
        return loss
