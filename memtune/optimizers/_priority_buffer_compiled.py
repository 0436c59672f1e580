"""The compiled step of Adam+CM and Adam+CG (``impl="compiled"``): the graph cores that
:func:`memtune.optimizers.compiled.compiled` hands to ``torch.compile`` (the buffer's slot write
fused with the Adam arithmetic of one tensor), and the paths that run them or memtune's CPU
kernels (:mod:`memtune.optimizers.cpu_kernels`). The buffer is
:mod:`memtune.optimizers._priority_buffer`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from memtune.optimizers import cpu_kernels
from memtune.optimizers._priority_buffer import _count_step, _Slot
from memtune.optimizers.compiled import SCALARS, compiled, flat

# --------------------------------------------------------------------------------------------
# The graph cores.
# --------------------------------------------------------------------------------------------


def _write_slot_in_graph(
    buffer: Tensor,
    buffer_sum: Tensor,
    index: Tensor,
    replace: Tensor,
    value: Tensor,
    write: bool | None,
) -> None:
    """buffer[index] <- value if replace, keeping buffer_sum = buffer.sum(0).

    ``write`` is ``False`` when the host knows that nothing is replaced (CPU, where reading the
    decision is free): then neither the buffer nor the sum is touched. ``None`` decides on the
    device (CUDA: no sync).
    """
    if write is False:
        return
    old = buffer.index_select(0, index.reshape(1)).squeeze(0)
    new = torch.where(replace, value, old)
    buffer_sum.add_(new - old)
    buffer.index_copy_(0, index.reshape(1), new.unsqueeze(0))


def adam_cm_step(
    x: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    buffer: Tensor | None,
    buffer_sum: Tensor | None,
    index: Tensor | None,
    replace: Tensor | None,
    count: Tensor | None,
    lr: Tensor,
    beta1: Tensor,
    beta2: Tensor,
    eps: Tensor,
    wd: Tensor,
    step_size: Tensor,
    bc2_sqrt: Tensor,
    *,
    decayed: bool,
    write: bool | None,
) -> None:
    """One Adam+CM step of a tensor past its first (see :class:`memtune.optimizers.AdamCM`)."""
    if decayed:
        x.mul_(1 - lr * wd)
    m.add_((g - m) * (1 - beta1))
    u = m
    if buffer is not None:
        u = m + buffer_sum / count.clamp(min=1)
        _write_slot_in_graph(buffer, buffer_sum, index, replace, m, write)
    v.mul_(beta2).add_(u * u * (1 - beta2))
    x.add_(step_size * u / (torch.sqrt(v) / bc2_sqrt + eps))


def adam_cg_step(
    x: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    buffer: Tensor | None,
    buffer_sum: Tensor | None,
    index: Tensor | None,
    replace: Tensor | None,
    count: Tensor | None,
    lr: Tensor,
    beta1: Tensor,
    beta2: Tensor,
    eps: Tensor,
    wd: Tensor,
    step_size: Tensor,
    bc2_sqrt: Tensor,
    *,
    decayed: bool,
    write: bool | None,
) -> None:
    """One Adam+CG step of a tensor (see :class:`memtune.optimizers.AdamCG`)."""
    u = g
    if buffer is not None:
        u = g + buffer_sum / count.clamp(min=1)
        _write_slot_in_graph(buffer, buffer_sum, index, replace, g, write)
    if decayed:
        u = u + wd * x
    m.add_((u - m) * (1 - beta1))
    v.mul_(beta2).add_(u * u * (1 - beta2))
    x.add_(step_size * m / (torch.sqrt(v) / bc2_sqrt + eps))


def _group_of(core: Callable[..., None]) -> Callable[..., None]:
    """``core`` (adam_cm_step or adam_cg_step) over every tensor of a group whose tensors share
    their step count and slot decision (``synced``), in one graph: one call a step."""

    def group_step(
        xs: list[Tensor], gs: list[Tensor], ms: list[Tensor], vs: list[Tensor],
        buffers: list[Tensor], sums: list[Tensor], index: Tensor | None,
        replace: Tensor | None, count: Tensor | None, *scalars: Tensor,
        decayed: bool, write: bool | None,
    ) -> None:  # fmt: skip
        for i in range(len(xs)):
            buffer, buffer_sum = (buffers[i], sums[i]) if buffers else (None, None)
            core(xs[i], gs[i], ms[i], vs[i], buffer, buffer_sum, index, replace, count,
                 *scalars, decayed=decayed, write=write)  # fmt: skip

    group_step.__name__ = group_step.__qualname__ = core.__name__.replace("_step", "_group_step")
    return group_step


adam_cm_group_step = _group_of(adam_cm_step)
adam_cg_group_step = _group_of(adam_cg_step)

# The cores of each optimizer: (one tensor, a whole group).
_CORES: dict[str, tuple[Callable[..., None], Callable[..., None]]] = {
    "adam_cm": (adam_cm_step, adam_cm_group_step),
    "adam_cg": (adam_cg_step, adam_cg_group_step),
}

# --------------------------------------------------------------------------------------------
# The compiled step.
# --------------------------------------------------------------------------------------------


def _flat_buffer(buffer: Tensor) -> Tensor:
    return flat(buffer, leading=buffer.shape[0])


def _slot_arguments(
    slot: _Slot | None, like: Tensor
) -> tuple[Tensor | None, Tensor | None, Tensor | None, bool | None]:
    """(index, replace, count, write) as the compiled cores take them. On CPU the host reads
    the decision for free, and ``write=False`` leaves a kept buffer untouched; on CUDA
    ``None`` decides on the device."""
    if slot is None:
        return None, None, None, None
    write = None if like.is_cuda or bool(slot.replace) else False
    return slot.index, slot.replace, slot.count_before, write


def _compiled_buffer_adam(
    optimizer: str,
    indices: list[int],
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    critical_buffers: list[Tensor],
    critical_sums: list[Tensor],
    slots: list[_Slot] | None,
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Runs a compiled Adam+CM or Adam+CG core (above; ``optimizer`` is adam_cm or adam_cg) on
    the tensors at ``indices``: the slot write, the moments and the move of x, in one graph
    for them all when they share their step and slot (the usual case: a pair
    of calls per tensor cost ~40 us each), else in one graph per tensor."""
    tensors = [params, grads, exp_avgs, exp_avg_sqs]
    if slots is not None:  # the kernel writes a row of the buffer and the sum in place
        tensors += [critical_buffers, critical_sums]
    if cpu_kernels.supports(*([ts[i] for i in indices] for ts in tensors)):
        _buffer_adam_with_cpu_kernels(
            optimizer, indices, params, grads, exp_avgs, exp_avg_sqs, critical_buffers,
            critical_sums, slots, state_steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay,
        )  # fmt: skip
        return
    like = params[0]
    lr_t, beta1_t, beta2_t, eps_t, wd_t = (
        SCALARS(name, value, like)
        for name, value in (
            ("lr", lr),
            ("beta1", beta1),
            ("beta2", beta2),
            ("eps", eps),
            ("weight_decay", weight_decay),
        )
    )
    step_sizes, bias_corrections2_sqrt = _count_step(
        [state_steps[i] for i in indices], lr=lr, beta1=beta1, beta2=beta2
    )
    shared_slot = slots is None or len({id(slots[i]) for i in indices}) == 1
    if shared_slot and len(set(step_sizes)) == 1:
        index, replace, count, write = _slot_arguments(
            None if slots is None else slots[indices[0]], like
        )
        compiled(_CORES[optimizer][1])(
            [flat(params[i]) for i in indices],
            [flat(grads[i]) for i in indices],
            [flat(exp_avgs[i]) for i in indices],
            [flat(exp_avg_sqs[i]) for i in indices],
            [] if slots is None else [_flat_buffer(critical_buffers[i]) for i in indices],
            [] if slots is None else [flat(critical_sums[i]) for i in indices],
            index, replace, count, lr_t, beta1_t, beta2_t, eps_t, wd_t,
            SCALARS("step_size", step_sizes[0], like),
            SCALARS("bias_correction2_sqrt", bias_corrections2_sqrt[0], like),
            decayed=weight_decay != 0, write=write,
        )  # fmt: skip
        return
    core = compiled(_CORES[optimizer][0])
    for i, step_size, bc2_sqrt in zip(indices, step_sizes, bias_corrections2_sqrt, strict=True):
        buffer = buffer_sum = None
        if slots is not None:
            buffer = _flat_buffer(critical_buffers[i])
            buffer_sum = flat(critical_sums[i])
        index, replace, count, write = _slot_arguments(None if slots is None else slots[i], like)
        core(
            flat(params[i]),
            flat(grads[i]),
            flat(exp_avgs[i]),
            flat(exp_avg_sqs[i]),
            buffer,
            buffer_sum,
            index,
            replace,
            count,
            lr_t,
            beta1_t,
            beta2_t,
            eps_t,
            wd_t,
            SCALARS("step_size", step_size, like),
            SCALARS("bias_correction2_sqrt", bc2_sqrt, like),
            decayed=weight_decay != 0,
            write=write,
        )


def _buffer_adam_with_cpu_kernels(
    optimizer: str,
    indices: list[int],
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    critical_buffers: list[Tensor],
    critical_sums: list[Tensor],
    slots: list[_Slot] | None,
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """The compiled step on CPU (:mod:`memtune.optimizers.cpu_kernels`): one pass per tensor
    for the slot write, the moments and the move of x, one call for all the tensors that share
    a slot decision (all of them when ``synced``). The host reads the decision (free on CPU)
    and hands the kernel the row it replaces."""
    step_sizes, bias_corrections2_sqrt = _count_step(
        [state_steps[i] for i in indices], lr=lr, beta1=beta1, beta2=beta2
    )
    by_slot: dict[int, list[int]] = {}  # position in indices, by the slot they share
    for position, i in enumerate(indices):
        by_slot.setdefault(0 if slots is None else id(slots[i]), []).append(position)
    for positions in by_slot.values():
        chosen = [indices[p] for p in positions]
        slot = None if slots is None else slots[chosen[0]]
        index = 0 if slot is None else int(slot.index)
        cpu_kernels.adam_buffer_step(
            optimizer,
            *([ts[i] for i in chosen] for ts in (params, grads, exp_avgs, exp_avg_sqs)),
            [None if slot is None else critical_buffers[i][index] for i in chosen],
            [None if slot is None else critical_sums[i] for i in chosen],
            step_sizes=[step_sizes[p] for p in positions],
            bias_corrections2_sqrt=[bias_corrections2_sqrt[p] for p in positions],
            count_before=0.0 if slot is None else float(slot.count_before),
            replace=slot is not None and bool(slot.replace),
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
        )
