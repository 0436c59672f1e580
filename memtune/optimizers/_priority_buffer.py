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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from memtune.optimizers import cpu_kernels
from memtune.optimizers._base import (
    ParamsT,
    check_betas,
    check_choice,
    check_non_negative,
    check_unit_interval,
    evaluate_closure,
    keep_implementation_on_load,
)
from memtune.optimizers.compiled import IMPLS, resolve_impl


@dataclass
class _Slot:
    """Where this step's snapshot goes: the slot index and whether it really replaces.
    0-d tensors on the device path; Python numbers where the host decides (see _host_slots)."""

    index: Tensor | int  # 0-dim long
    replace: Tensor | bool  # 0-dim bool
    count_before: Tensor | float  # entries filled before this step's insert (float, 0-dim)


def _choose_slot(keys: Tensor, priority: Tensor) -> _Slot:
    # keys.min(), not keys[index]: indexing with a 0-d device tensor reads it on the host
    # (a sync on CUDA); the first minimum's value is the minimum.
    index = torch.argmin(keys)
    replace = priority > keys.min()
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
    old = buffer.index_select(0, slot.index.reshape(1)).squeeze(0)  # no host read of index
    new = torch.where(slot.replace, value, old)
    buffer_sum.add_(new).sub_(old)
    buffer.index_copy_(0, slot.index.reshape(1), new.unsqueeze(0))


def _decay_keys(
    critical_keys: list[Tensor],
    slots: list[_Slot],
    priorities: list[Tensor] | list[float],
    decay: float,
    synced: bool,
) -> None:
    """Writes each replaced entry's key, then decays every key, in place.

    Synced keys are one tensor shared by the group's tensors (copies after a ``state_dict``
    round trip): the first is updated and the others follow it.
    """
    pairs = (
        [(critical_keys[0], slots[0], priorities[0])]
        if synced
        else zip(critical_keys, slots, priorities, strict=True)
    )
    for keys, slot, priority in pairs:
        if isinstance(slot.index, int):  # decided on the host (_host_slots): numbers
            if slot.replace:
                keys[slot.index] = priority
            keys.mul_(decay)
            continue
        at = slot.index.reshape(1)
        new_key = torch.where(slot.replace, priority.to(keys.dtype), keys.index_select(0, at))
        keys.index_copy_(0, at, new_key).mul_(decay)
    if synced:
        for keys in critical_keys[1:]:
            if keys is not critical_keys[0]:
                keys.copy_(critical_keys[0])


def _init_buffer_state(state: dict, p: Tensor, topc: int) -> None:
    state["step"] = torch.tensor(0.0, dtype=torch.float32)
    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    if topc > 0:
        state["critical_buffer"] = p.new_zeros((topc, *p.shape))
        state["critical_sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["critical_keys"] = torch.full((topc,), float("-inf"), dtype=p.dtype, device=p.device)


def _priorities(grads: list[Tensor], synced: bool, *, compiled_step: bool = False) -> list[Tensor]:
    """The key of this step's snapshot: |g| per tensor, or their sum for the whole group.
    A compiled step on CPU reads the gradients for it once, in one kernel call."""
    if compiled_step and cpu_kernels.supports(grads):
        like = grads[0]
        norms = [
            torch.tensor(math.sqrt(total), dtype=like.dtype)
            for total in cpu_kernels.sum_squares(grads)
        ]
    else:
        norms = [torch.linalg.vector_norm(g) for g in grads]
    if synced:
        total = torch.stack(norms).sum()
        return [total] * len(grads)
    return norms


def _slots(critical_keys: list[Tensor], priorities: list[Tensor], synced: bool) -> list[_Slot]:
    if synced:  # every tensor of the group holds the same keys: decide once, on device
        slot = _choose_slot(critical_keys[0], priorities[0])
        return [slot] * len(critical_keys)
    return [_choose_slot(k, r) for k, r in zip(critical_keys, priorities, strict=True)]


def _host_slots(
    critical_keys: list[Tensor], grads: list[Tensor], synced: bool
) -> tuple[list[_Slot], list[float]]:
    """The slots and priorities of the CPU kernels' step, decided on the host in Python
    numbers: the same choice as _priorities and _slots (argmin's first minimum, a strict
    comparison, the finite keys counted), without their dozen 0-d tensor ops per tensor, which
    were most of a small model's step. Reading CPU tensors is free."""
    dtype = grads[0].dtype
    rounded = (lambda v: float(np.float32(v))) if dtype == torch.float32 else float
    norms = [rounded(math.sqrt(total)) for total in cpu_kernels.sum_squares(grads)]
    priorities = [rounded(sum(norms))] * len(grads) if synced else norms

    def choose(keys: Tensor, priority: float) -> _Slot:
        values = keys.tolist()
        index = values.index(min(values))
        count = float(sum(math.isfinite(v) for v in values))
        return _Slot(index=index, replace=priority > values[index], count_before=count)

    if synced:
        return [choose(critical_keys[0], priorities[0])] * len(grads), priorities
    return [choose(k, r) for k, r in zip(critical_keys, priorities, strict=True)], priorities


def _step_slots(
    critical_keys: list[Tensor],
    grads: list[Tensor],
    synced: bool,
    *,
    topc: int,
    compiled_tensors: tuple[list[Tensor], ...] | None = None,
) -> tuple[list[_Slot] | None, list[Tensor] | list[float] | None]:
    """This step's slots and priorities, ``(None, None)`` without a buffer. For the compiled
    step (``compiled_tensors``: the lists it runs on) they are decided on the host, in numbers,
    where the CPU kernels take those (:func:`_host_slots`); else as 0-d tensors on the device."""
    if topc == 0:
        return None, None
    if compiled_tensors is not None and _on_cpu_kernels(*compiled_tensors):
        return _host_slots(critical_keys, grads, synced)
    priorities = _priorities(grads, synced, compiled_step=compiled_tensors is not None)
    return _slots(critical_keys, priorities, synced), priorities


class _PriorityBufferAdam(Optimizer):
    """The shared plumbing of Adam+CM and Adam+CG: argument checks, lazy state, the step loop."""

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
        impl: str | None,
        foreach: bool | None,
    ) -> None:
        check_non_negative("learning rate", lr)
        if impl is not None:
            check_choice("impl", impl, IMPLS)
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
            impl=impl,
            foreach=foreach,
        )
        super().__init__(params, defaults)
        self.last_impl: str | None = None  # the implementation the last step ran
        keep_implementation_on_load(self)

    def _init_group(
        self,
        group: dict,
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        critical_buffers: list[Tensor],
        critical_sums: list[Tensor],
        critical_keys: list[Tensor],
        state_steps: list[Tensor],
    ) -> None:
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
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            state_steps.append(state["step"])
            if group["topc"] > 0:
                critical_buffers.append(state["critical_buffer"])
                critical_sums.append(state["critical_sum"])
                critical_keys.append(state["critical_keys"])

    # The functional core of the subclass: adam_cm or adam_cg.
    _functional: Callable[..., None]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            lists: tuple[list[Tensor], ...] = tuple([] for _ in range(8))
            self._init_group(group, *lists)
            if not lists[0]:
                continue
            self.last_impl = resolve_impl(group.get("impl"), group["foreach"], lists[0])
            type(self)._functional(
                *lists,
                lr=group["lr"],
                beta1=group["betas"][0],
                beta2=group["betas"][1],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                topc=group["topc"],
                decay=group["decay"],
                synced=group["synced"],
                impl=self.last_impl,
            )
        return loss


def _count_step(
    state_steps: list[Tensor], *, lr: float, beta1: float, beta2: float
) -> tuple[list[float], list[float]]:
    """k <- k + 1 for each tensor; returns -lr / (1 - beta1^k) and sqrt(1 - beta2^k)."""
    step_sizes, bias_corrections2_sqrt = [], []
    for step in state_steps:
        step += 1
        k = float(step)
        step_sizes.append(-lr / (1 - beta1**k))
        bias_corrections2_sqrt.append((1 - beta2**k) ** 0.5)
    return step_sizes, bias_corrections2_sqrt


def _lerp_moments(
    exp_avgs: list[Tensor], values: list[Tensor], weight: float, *, foreach: bool
) -> None:
    """m <- m + weight (value - m) for each tensor: Adam's first moment of g (Adam+CM) or u."""
    if foreach:
        torch._foreach_lerp_(exp_avgs, values, weight)
        return
    for m, value in zip(exp_avgs, values, strict=True):
        m.lerp_(value, weight)


def _adam_update(
    params: list[Tensor],
    directions: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    foreach: bool,
    moves: list[Tensor] | None = None,
) -> None:
    """k <- k + 1;  v <- beta2 v + (1 - beta2) u^2;
    x <- x - lr / (1 - beta1^k) * w / (sqrt(v) / sqrt(1 - beta2^k) + eps), where w is u
    (Adam+CM) or the ``moves`` given (Adam+CG: its first moment m)."""
    moves = directions if moves is None else moves
    step_sizes, bias_corrections2_sqrt = _count_step(state_steps, lr=lr, beta1=beta1, beta2=beta2)
    if foreach:
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, directions, directions, value=1 - beta2)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, bias_corrections2_sqrt)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, moves, denominators, step_sizes)
        return
    for x, u, w, v, step_size, bc2_sqrt in zip(
        params, directions, moves, exp_avg_sqs, step_sizes, bias_corrections2_sqrt, strict=True
    ):
        v.mul_(beta2).addcmul_(u, u, value=1 - beta2)
        x.addcdiv_(w, (v.sqrt() / bc2_sqrt).add_(eps), value=step_size)


def _on_cpu_kernels(*groups: list[Tensor]) -> bool:
    """Whether the compiled step of these tensors runs on the CPU kernels (empty lists, the
    buffers of topc = 0, take no part)."""
    return cpu_kernels.supports(*(group for group in groups if group))
