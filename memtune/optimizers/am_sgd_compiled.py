"""AM-SGD's compiled step (``impl="compiled"`` of :func:`memtune.optimizers.am_sgd.am_sgd`):
the graph cores that :func:`memtune.optimizers.compiled.compiled` hands to ``torch.compile``,
and the paths that run them or memtune's CPU kernels (:mod:`memtune.optimizers.cpu_kernels`).

On CPU, AM-SGD's reduction is one graph (or one kernel call) for the whole group and its update
runs as torch's fused SGD kernel (the update is SGD's with momentum = dampening = 1 - w, and
reading w there costs no sync); off the CPU its whole step (sums, beta, update) is one graph
per group.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.sgd import sgd

from memtune.optimizers import cpu_kernels
from memtune.optimizers._am_common import (
    _am_sgd_betas,
    _am_sgd_betas_from_products,
    _am_sgd_betas_on_host,
    _am_sgd_first_steps,
    am_sgd_fraction,
    as_tensors,
    clipped_ratio,
)
from memtune.optimizers.compiled import SCALARS, compiled, flat, flat_sum

# --------------------------------------------------------------------------------------------
# The graph cores: a reduction pass (the three inner products), then the update pass.
# --------------------------------------------------------------------------------------------


def am_sgd_dots(
    param: Tensor, grad: Tensor, buffer: Tensor, wd: Tensor, *, decayed: bool
) -> Tensor:
    """[<g, g>, <g, d>, <d, d>] of one tensor, with g = grad + wd x (coupled L2)."""
    g = grad + wd * param if decayed else grad
    return torch.stack([flat_sum(g * g), flat_sum(g * buffer), flat_sum(buffer * buffer)])


def am_sgd_group_dots(
    params: list[Tensor], grads: list[Tensor], buffers: list[Tensor], wd: Tensor, *, decayed: bool
) -> Tensor:
    """The rows [<g, g>, <g, d>, <d, d>] of every tensor of a group, from one graph: one call
    per step instead of one per tensor (~40 us each on CPU, as much as a bias's sums)."""
    return torch.stack(
        [
            am_sgd_dots(params[i], grads[i], buffers[i], wd, decayed=decayed)
            for i in range(len(params))
        ]
    )


def am_sgd_group_step(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    wd: Tensor,
    lr: Tensor,
    prev_lr: Tensor,
    lam: Tensor,
    beta_max: Tensor,
    *,
    decayed: bool,
    group_beta: bool,
) -> Tensor:
    """The whole AM-SGD step of a group off the CPU, in one graph: the three sums of every
    tensor, beta (one for the group, or one per tensor) and the update, for tensors that all
    have a buffer and share eta_prev. Returns beta (0-d, or one per tensor).

    On CUDA this is one call a step, with beta never leaving the device. The path it replaced
    there (this module's sums graph, ~40 eager scalar ops for beta, an update graph per
    tensor) was slower than foreach (bench/optimizer_step.py on an H200: docs/benchmarks.md)."""
    gs = [grads[i] + wd * params[i] if decayed else grads[i] for i in range(len(params))]
    rows = torch.stack(
        [
            torch.stack([flat_sum(g * g), flat_sum(g * d), flat_sum(d * d)])
            for g, d in zip(gs, buffers, strict=True)
        ]
    ).to(lr.dtype)  # float32 for bf16 parameters (the scalars' dtype), else theirs
    G, X, D = rows.unbind(1)
    if group_beta:
        G, X, D = G.sum(), X.sum(), D.sum()
    beta = clipped_ratio(*am_sgd_fraction(G, X, D, prev_lr * X, lr=lr, lam=lam), beta_max)
    weight = (1 - beta) / (1 + lam)
    for i in range(len(params)):
        w = weight if group_beta else weight[i]
        buffers[i].add_((gs[i] - buffers[i]) * w)
        params[i].sub_(buffers[i] * lr)
    return beta


def am_sgd_update(
    param: Tensor,
    grad: Tensor,
    buffer: Tensor,
    weight: Tensor,
    lr: Tensor,
    wd: Tensor,
    *,
    decayed: bool,
) -> None:
    """d <- d + weight (g - d);  x <- x - lr d."""
    g = grad + wd * param if decayed else grad
    buffer.add_((g - buffer) * weight)
    param.sub_(buffer * lr)


# --------------------------------------------------------------------------------------------
# The compiled step: the first path that applies.
# --------------------------------------------------------------------------------------------


def _compiled_am_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    prev_lrs: list[float],
    *,
    lr: float,
    lam: float,
    beta_max: float,
    weight_decay: float,
    granularity: str,
    fixed_beta: float | None,
) -> list[Tensor]:
    """The compiled step: the first path that applies (each below, its own function)."""
    options = dict(lr=lr, lam=lam, beta_max=beta_max, weight_decay=weight_decay)
    warm = fixed_beta is None and all(d is not None for d in momentum_buffers)  # not `in`
    if warm and cpu_kernels.supports(params, grads, momentum_buffers):  # type: ignore[arg-type]
        path = _am_sgd_on_cpu_kernels
    elif warm and params[0].device.type != "cpu" and len(set(prev_lrs)) == 1:
        path = _am_sgd_in_one_graph
    else:
        return _am_sgd_by_parts(
            params, grads, momentum_buffers, prev_lrs,
            **options, granularity=granularity, fixed_beta=fixed_beta,
        )  # fmt: skip
    return path(params, grads, momentum_buffers, prev_lrs, **options, granularity=granularity)


def _am_sgd_on_cpu_kernels(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    lam: float,
    beta_max: float,
    weight_decay: float,
    granularity: str,
) -> list[Tensor]:
    """Every step after a tensor's first, on CPU: the sums (memtune's C kernels), beta on the
    host and torch's fused SGD, with nothing else around them (the general path costs a second
    resolve_impl and more small work a step)."""
    rows = cpu_kernels.am_sgd_dots(params, grads, momentum_buffers, weight_decay)  # type: ignore[arg-type]
    host_betas = _am_sgd_betas_on_host(
        rows, prev_lrs, lr=lr, lam=lam, beta_max=beta_max, granularity=granularity
    )
    _update_as_torch_sgd(
        params,
        grads,
        momentum_buffers,  # type: ignore[arg-type]
        [(1 - beta) / (1 + lam) for beta in host_betas],
        lr=lr,
        weight_decay=weight_decay,
    )
    return as_tensors(host_betas, params[0])


def _am_sgd_in_one_graph(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    prev_lrs: list[float],
    *,
    lr: float,
    lam: float,
    beta_max: float,
    weight_decay: float,
    granularity: str,
) -> list[Tensor]:
    """Off the CPU, every step after a tensor's first, one lr for the group: one graph for
    the sums, beta and the update of the whole group
    (:func:`am_sgd_group_step`)."""
    decayed = weight_decay != 0
    wd = SCALARS("weight_decay", weight_decay, params[0])
    like = params[0]
    beta = compiled(am_sgd_group_step)(
        [flat(p) for p in params],
        [flat(g) for g in grads],
        [flat(d) for d in momentum_buffers],  # type: ignore[arg-type]
        wd,
        *(
            SCALARS(name, value, like)
            for name, value in (
                ("lr", lr),
                ("prev_lr", prev_lrs[0]),
                ("lam", lam),
                ("beta_max", beta_max),
            )
        ),
        decayed=decayed,
        group_beta=granularity == "group",
    ).to(like.dtype)
    return [beta] * len(params) if granularity == "group" else list(beta.unbind())


def _am_sgd_by_parts(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    prev_lrs: list[float],
    *,
    lr: float,
    lam: float,
    beta_max: float,
    weight_decay: float,
    granularity: str,
    fixed_beta: float | None,
) -> list[Tensor]:
    """Every other case (a tensor's first step, a fixed beta, several lrs): the first steps as
    plain SGD, then the sums (C kernels or a graph), beta, and the update (torch's fused SGD
    on CPU, a graph elsewhere)."""
    decayed = weight_decay != 0
    on_cpu = params[0].device.type == "cpu"
    wd = SCALARS("weight_decay", weight_decay, params[0])
    warm, betas = _am_sgd_first_steps(
        [
            g.add(p, alpha=weight_decay) if decayed and d is None else g
            for g, p, d in zip(grads, params, momentum_buffers, strict=True)
        ],
        momentum_buffers,
    )
    cold = set(range(len(params))) - set(warm)
    for i in cold:  # the first step of a tensor: plain SGD, d = g
        params[i].add_(momentum_buffers[i], alpha=-lr)  # type: ignore[arg-type]
    if not warm:
        return betas
    host_betas: list[float] | None = None  # on CPU, the betas as Python floats
    if fixed_beta is not None:
        warm_betas = _am_sgd_betas(
            [grads[i] for i in warm],
            [],
            [],
            lr=lr,
            lam=lam,
            beta_max=beta_max,
            granularity=granularity,
            fixed_beta=fixed_beta,
        )
        host_betas = [float(warm_betas[0])] * len(warm) if on_cpu else None
    else:
        warm_tensors = [params[i] for i in warm], [grads[i] for i in warm]
        warm_buffers: list[Tensor] = [momentum_buffers[i] for i in warm]  # type: ignore[misc]
        options = dict(lr=lr, lam=lam, beta_max=beta_max, granularity=granularity)
        warm_prev_lrs = [prev_lrs[i] for i in warm]
        if cpu_kernels.supports(*warm_tensors, warm_buffers):
            rows = cpu_kernels.am_sgd_dots(*warm_tensors, warm_buffers, weight_decay)
        else:
            rows = compiled(am_sgd_group_dots)(
                *([flat(t) for t in ts] for ts in (*warm_tensors, warm_buffers)),
                wd,
                decayed=decayed,
            )
        if on_cpu:  # reading the sums costs no device sync on CPU
            rows = rows if isinstance(rows, list) else rows.tolist()
            host_betas = _am_sgd_betas_on_host(rows, warm_prev_lrs, **options)
            warm_betas = as_tensors(host_betas, params[0])
        else:
            gg, gd, dd = (list(column.unbind()) for column in rows.to(params[0].dtype).unbind(1))
            warm_betas = _am_sgd_betas_from_products(gg, gd, dd, warm_prev_lrs, **options)
    if host_betas is not None:
        # With the weights on the host, the update is torch's fused SGD kernel: the fastest
        # update there is for these arrays (faster than AM-SGD's own graph for it).
        _update_as_torch_sgd(
            [params[i] for i in warm],
            [grads[i] for i in warm],
            [momentum_buffers[i] for i in warm],  # type: ignore[misc]
            [(1 - beta) / (1 + lam) for beta in host_betas],
            lr=lr,
            weight_decay=weight_decay,
        )
    else:
        update = compiled(am_sgd_update)
        lr_tensor = SCALARS("lr", lr, params[0])
        for i, beta in zip(warm, warm_betas, strict=True):
            update(
                flat(params[i]),
                flat(grads[i]),
                flat(momentum_buffers[i]),  # type: ignore[arg-type]
                (1 - beta) / (1 + lam),
                lr_tensor,
                wd,
                decayed=decayed,
            )
    for i, beta in zip(warm, warm_betas, strict=True):
        betas[i] = beta
    return betas


def _update_as_torch_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    weights: list[float],
    *,
    lr: float,
    weight_decay: float,
) -> None:
    """d <- (1 - w) d + w g and x <- x - lr d, with g = grad + wd x: torch's SGD step with
    momentum = dampening = 1 - w, run by its fused kernel (one call per distinct w: one for a
    group beta). w = 1 (lambda = 0, beta = 0) means momentum 0, where torch keeps no buffer."""
    by_weight: dict[float, list[int]] = {}
    for i, weight in enumerate(weights):
        by_weight.setdefault(weight, []).append(i)
    for weight, indices in by_weight.items():
        chosen = [params[i] for i in indices], [grads[i] for i in indices]
        chosen_buffers = [buffers[i] for i in indices]
        if weight == 1.0:
            grads_ = chosen[1]
            if weight_decay != 0:
                grads_ = torch._foreach_add(grads_, chosen[0], alpha=weight_decay)
            torch._foreach_copy_(chosen_buffers, grads_)
            torch._foreach_add_(chosen[0], chosen_buffers, alpha=-lr)
            continue
        options = dict(
            weight_decay=weight_decay,
            momentum=1 - weight,
            lr=lr,
            dampening=1 - weight,
            nesterov=False,
            maximize=False,
        )
        if len({t.dtype for t in chosen[0]}) == 1:
            # The op behind sgd(fused=True), without its grouping of the tensors by device and
            # dtype (one of each here): ~10 us a step, much of a small model's step.
            torch._fused_sgd_(*chosen, chosen_buffers, **options, is_first_step=False)
        else:
            sgd(*chosen, chosen_buffers, fused=True, **options)  # type: ignore[arg-type]
