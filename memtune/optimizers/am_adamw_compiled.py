"""AM-AdamW's compiled step (``impl="compiled"`` of
:func:`memtune.optimizers.am_adamw.am_adamw`): the graph cores that
:func:`memtune.optimizers.compiled.compiled` hands to ``torch.compile``, and the paths that run
them or memtune's CPU kernels (:mod:`memtune.optimizers.cpu_kernels`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from memtune.optimizers import cpu_kernels
from memtune.optimizers._am_common import (
    am_adamw_gap_scale,
    am_adamw_numerator,
    as_tensors,
    clipped_on_host,
    clipped_ratio,
)
from memtune.optimizers.compiled import SCALARS, compiled, flat, flat_sum

# --------------------------------------------------------------------------------------------
# AM-AdamW: a reduction pass for beta, then the update pass (beta is per tensor).
#
# Two graphs, not one: inductor's CPU code for one graph holding both the reductions and the
# stores ran at about twice the time of the two graphs together (docs/benchmarks.md). The
# reduction pass recomputes v's update instead of storing it (cheaper than one more full-size
# write and read).
# --------------------------------------------------------------------------------------------


def _am_adamw_metric(
    v: Tensor,
    beta_product: Tensor,
    beta1_max: Tensor,
    bc2_sqrt: Tensor,
    eps: Tensor,
    lam: Tensor,
    coupling: str,
) -> tuple[Tensor, Tensor, Tensor | Tensor]:
    """(M, 1 / P, damping) from the updated second moment, with one division per element:
    M = 1 / (P (1 + lambda P)), so 1 / P = (1 + lambda P) M and 1 / (1 + lambda P) = P M."""
    bias_correction1 = 1 - beta1_max * beta_product
    p_cond = torch.sqrt(v) * (bias_correction1 / bc2_sqrt) + bias_correction1 * eps
    if coupling == "paper":
        metric = 1 / (p_cond * (1 + lam * p_cond))
        return metric, (1 + lam * p_cond) * metric, p_cond * metric
    inverse = 1 / p_cond
    return inverse / (1 + lam), inverse, 1 / (1 + lam)


def am_adamw_beta(
    x: Tensor,
    g: Tensor,
    d: Tensor,
    v: Tensor,
    beta_product: Tensor,
    first: Tensor,
    prev_lr: Tensor,
    lr: Tensor,
    beta1_max: Tensor,
    beta2: Tensor,
    bc2_sqrt: Tensor,
    eps: Tensor,
    lam: Tensor,
    wd: Tensor,
    *,
    coupling: str,
    decayed: bool,
) -> Tensor:
    """The beta of one tensor (see :class:`memtune.optimizers.am_adamw.AMAdamW`), before any state
    changes; ``first`` is 1 on the tensor's first step (beta = beta1_max), else 0.

    N is linear in its five inner products, so it is one sum of their per-element combination.
    """
    v_new = v * beta2 + g * g * (1 - beta2)
    metric, inverse, damping = _am_adamw_metric(
        v_new, beta_product, beta1_max, bc2_sqrt, eps, lam, coupling
    )
    delta = d - g
    scaled = delta * metric
    pull = scaled * g + lam * (delta * damping * d if coupling == "paper" else scaled * d)
    gap = g * d * inverse
    if decayed:
        gap = gap + wd * g * x
    decay_pull = wd * x * delta if decayed else None
    terms = am_adamw_numerator(gap, pull, decay_pull, prev_lr=prev_lr, lr=lr, weight_decay=wd)
    numerator = flat_sum(terms)
    denominator = flat_sum(scaled * delta)
    beta = torch.where(first > 0, beta1_max, clipped_ratio(numerator, denominator, beta1_max))
    return beta.to(x.dtype)


def am_adamw_update(
    x: Tensor,
    g: Tensor,
    d: Tensor,
    v: Tensor,
    beta_product: Tensor,
    beta: Tensor,
    lr: Tensor,
    beta1_max: Tensor,
    beta2: Tensor,
    bc2_sqrt: Tensor,
    eps: Tensor,
    lam: Tensor,
    wd: Tensor,
    *,
    coupling: str,
    decayed: bool,
) -> None:
    """v <- beta2 v + (1 - beta2) g^2;  d <- d + (1 - beta) damping (g - d);
    x <- (1 - lr wd) x - lr d / P.  (Pi <- Pi beta is the caller's: dynamo dropped that
    in-place update of a 0-d input, measured here, so it runs eagerly after the graph.)"""
    v.mul_(beta2).add_(g * g * (1 - beta2))
    _, inverse, damping = _am_adamw_metric(v, beta_product, beta1_max, bc2_sqrt, eps, lam, coupling)
    d.add_((g - d) * (damping * (1 - beta)))
    if decayed:
        x.mul_(1 - lr * wd)
    x.sub_(lr * d * inverse)


def am_adamw_group_betas(
    xs: list[Tensor], gs: list[Tensor], ds: list[Tensor], vs: list[Tensor], pis: list[Tensor],
    *scalars: Tensor, coupling: str, decayed: bool,
) -> Tensor:  # fmt: skip
    """:func:`am_adamw_beta` of every tensor of a group whose tensors share their step count and
    previous lr (``scalars`` as there, from ``first`` on), from one graph: one call a step."""
    static = {"coupling": coupling, "decayed": decayed}
    return torch.stack(
        [
            am_adamw_beta(xs[i], gs[i], ds[i], vs[i], pis[i], *scalars, **static)
            for i in range(len(xs))
        ]
    )


def am_adamw_group_update(
    xs: list[Tensor], gs: list[Tensor], ds: list[Tensor], vs: list[Tensor], pis: list[Tensor],
    betas: Tensor, *scalars: Tensor, coupling: str, decayed: bool,
) -> None:  # fmt: skip
    """:func:`am_adamw_update` of every tensor of such a group, from one graph."""
    static = {"coupling": coupling, "decayed": decayed}
    for i in range(len(xs)):
        am_adamw_update(xs[i], gs[i], ds[i], vs[i], pis[i], betas[i], *scalars, **static)


# --------------------------------------------------------------------------------------------
# The compiled step: the first path that applies.
# --------------------------------------------------------------------------------------------


def _compiled_am_adamw(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    beta_products: list[Tensor],
    state_steps: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    beta1_max: float,
    beta2: float,
    eps: float,
    lam: float,
    weight_decay: float,
    coupling: str,
    fixed_beta: float | None,
) -> list[Tensor]:
    """The compiled step: the first path that applies (each below, its own function)."""
    steps = {float(step) for step in state_steps}  # CPU tensors: reading them is no sync
    if cpu_kernels.supports(params, grads, exp_avgs, exp_avg_sqs):
        path = _am_adamw_with_cpu_kernels
    elif fixed_beta is None and len(steps) == 1 and len(set(prev_lrs)) == 1:
        path = _am_adamw_in_group_graphs
    else:
        path = _am_adamw_per_tensor_graphs
    return path(
        params, grads, exp_avgs, exp_avg_sqs, beta_products, state_steps, prev_lrs,
        lr=lr, beta1_max=beta1_max, beta2=beta2, eps=eps, lam=lam,
        weight_decay=weight_decay, coupling=coupling, fixed_beta=fixed_beta,
    )  # fmt: skip


def _graph_scalars(like: Tensor, **values: float) -> list[Tensor]:
    """The step's hyperparameters as the 0-d tensors the graphs take (memtune.optimizers.
    compiled.SCALARS: one per name, so that a new value never recompiles a graph)."""
    return [SCALARS(name, value, like) for name, value in values.items()]


def _am_adamw_in_group_graphs(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    beta_products: list[Tensor],
    state_steps: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    beta1_max: float,
    beta2: float,
    eps: float,
    lam: float,
    weight_decay: float,
    coupling: str,
    fixed_beta: float | None,
) -> list[Tensor]:
    """The usual case off the C kernels, every tensor at the same step and lr: one beta graph
    and one update graph for the group (a pair of calls per tensor costs more a step)."""
    like = params[0]
    lr_t, beta1_t, beta2_t, eps_t, lam_t, wd_t = _graph_scalars(
        like, lr=lr, beta1=beta1_max, beta2=beta2, eps=eps, lam=lam, weight_decay=weight_decay
    )
    static = dict(coupling=coupling, decayed=weight_decay != 0)
    k = float(state_steps[0]) + 1
    for step in state_steps:
        step += 1
    bc2_sqrt, first, prev = _graph_scalars(
        like, bias_correction2_sqrt=(1 - beta2**k) ** 0.5, first=float(k == 1), prev_lr=prev_lrs[0]
    )
    tensors = [[flat(t) for t in ts] for ts in (params, grads, exp_avgs, exp_avg_sqs)]
    group_betas = compiled(am_adamw_group_betas)(
        *tensors, beta_products, first, prev, lr_t, beta1_t, beta2_t, bc2_sqrt, eps_t,
        lam_t, wd_t, **static,
    )  # fmt: skip
    compiled(am_adamw_group_update)(
        *tensors, beta_products, group_betas, lr_t, beta1_t, beta2_t, bc2_sqrt, eps_t,
        lam_t, wd_t, **static,
    )  # fmt: skip
    betas = list(group_betas.unbind())
    torch._foreach_mul_(beta_products, betas)
    return betas


def _am_adamw_per_tensor_graphs(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    beta_products: list[Tensor],
    state_steps: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    beta1_max: float,
    beta2: float,
    eps: float,
    lam: float,
    weight_decay: float,
    coupling: str,
    fixed_beta: float | None,
) -> list[Tensor]:
    """Tensors at different steps or lrs, or a fixed beta: a beta graph and an update graph
    per tensor."""
    like = params[0]
    lr_t, beta1_t, beta2_t, eps_t, lam_t, wd_t = _graph_scalars(
        like, lr=lr, beta1=beta1_max, beta2=beta2, eps=eps, lam=lam, weight_decay=weight_decay
    )
    static = dict(coupling=coupling, decayed=weight_decay != 0)
    beta_of, update = compiled(am_adamw_beta), compiled(am_adamw_update)
    betas = []
    for x, g, d, v, pi, step, prev_lr in zip(
        params, grads, exp_avgs, exp_avg_sqs, beta_products, state_steps, prev_lrs, strict=True
    ):
        step += 1  # a CPU tensor, as in torch's AdamW: reading it is no device sync
        k = float(step)
        (bc2_sqrt,) = _graph_scalars(like, bias_correction2_sqrt=(1 - beta2**k) ** 0.5)
        x, g, d, v = flat(x), flat(g), flat(d), flat(v)
        if fixed_beta is not None:
            beta = torch.full((), fixed_beta, dtype=x.dtype, device=x.device)
        else:
            first, prev = _graph_scalars(like, first=float(k == 1), prev_lr=prev_lr)
            beta = beta_of(
                x, g, d, v, pi, first, prev, lr_t, beta1_t, beta2_t, bc2_sqrt, eps_t, lam_t,
                wd_t, **static,
            )  # fmt: skip
        update(x, g, d, v, pi, beta, lr_t, beta1_t, beta2_t, bc2_sqrt, eps_t, lam_t, wd_t, **static)
        pi.mul_(beta)
        betas.append(beta)
    return betas


def _am_adamw_with_cpu_kernels(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    beta_products: list[Tensor],
    state_steps: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    beta1_max: float,
    beta2: float,
    eps: float,
    lam: float,
    weight_decay: float,
    coupling: str,
    fixed_beta: float | None,
) -> list[Tensor]:
    """The compiled step on CPU (:mod:`memtune.optimizers.cpu_kernels`): one pass for the sums
    of every tensor's beta, the betas on the host (reading the sums and the CPU tensors of the
    state is free there), one pass for the update. Every tensor keeps its own step count,
    product of betas and previous lr."""
    steps = []
    for step in state_steps:
        step += 1
        steps.append(float(step))
    options = dict(
        bias_corrections1=[1 - beta1_max * float(pi) for pi in beta_products],
        bias_corrections2_sqrt=[(1 - beta2**k) ** 0.5 for k in steps],
        beta2=beta2,
        eps=eps,
        lam=lam,
        weight_decay=weight_decay,
        coupling=coupling,
    )
    if fixed_beta is not None:
        betas = [fixed_beta] * len(params)
    else:
        sums = cpu_kernels.am_adamw_sums(
            params, grads, exp_avgs, exp_avg_sqs,
            gap_scales=[am_adamw_gap_scale(prev_lr, lr, weight_decay) for prev_lr in prev_lrs],
            **options,
        )  # fmt: skip
        betas = [
            beta1_max if k == 1 else clipped_on_host(numerator, denominator, beta1_max)
            for k, (numerator, denominator) in zip(steps, sums, strict=True)
        ]
    cpu_kernels.am_adamw_update(params, grads, exp_avgs, exp_avg_sqs, betas=betas, lr=lr, **options)
    torch._foreach_mul_(beta_products, betas)
    return as_tensors(betas, params[0])
