"""AM-SGD: SGD with adaptive memory momentum (Topollai & Choromanska, arXiv 2510.04988).

The constant momentum coefficient of heavy ball is replaced by a coefficient beta_t computed
every step from a two-plane proximal model of the loss: one plane with the current gradient as
slope, one with the memory (the momentum buffer). The closed form, and the choices this package
made where the paper left a detail open, are in the class docstring and in
``docs/algorithms.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.sgd import sgd

from memtune.optimizers import cpu_kernels
from memtune.optimizers._am_common import (
    GRANULARITIES,
    as_tensors,
    clipped_on_host,
    clipped_ratio,
    keep_lr,
    last_beta,
)
from memtune.optimizers._base import (
    ParamsT,
    check_choice,
    check_non_negative,
    check_unit_interval,
    evaluate_closure,
    flat_dot,
    keep_float64_on_load,
    keep_implementation_on_load,
)
from memtune.optimizers.compiled import (
    IMPLS,
    SCALARS,
    am_sgd_fraction,
    compiled,
    flat,
    resolve_impl,
)

__all__ = ["AMSGD", "am_sgd"]

# --------------------------------------------------------------------------------------------
# AM-SGD
# --------------------------------------------------------------------------------------------


class AMSGD(Optimizer):
    r"""SGD with adaptive memory momentum (AM-SGD).

    .. code-block:: text

        input: eta (lr), lambda (lam), beta_max, wd (weight decay), params x, objective f
        initialize: d <- None, eta_prev <- None
        for t = 1, 2, ...:
            g <- grad f(x) + wd * x                                   (coupled L2)
            if d is None:  d <- g                                     (first step: plain SGD)
            else:
                G, X, D <- <g, g>, <g, d>, <d, d>                     (over the group, or
                                                                       per tensor)
                gap  <- eta_prev * X                    first-order height of the memory plane
                N    <- (1 + lambda) * gap / eta - (X + lambda * D - G - lambda * X)
                Dn   <- D - 2 X + G                                   (= |d - g|^2)
                beta <- clip(N / Dn, 0, beta_max), and 0 if Dn == 0
                d    <- ((beta + lambda) * d + (1 - beta) * g) / (1 + lambda)
            x <- x - eta * d;  eta_prev <- eta
        return x

    ``d`` is the solution of a proximal step on the maximum of two planes (slope g, the current
    gradient; slope d, the memory) plus a term of weight lambda pulling toward the heavy-ball
    step. ``beta`` is large when the memory still describes the loss well and small when the
    gradient disagrees with it.

    Choices of this package (the paper leaves them open):

    * CHOICE: ``gap`` is the first-order estimate ``<g_t, x_{t-1} - x_t> = eta_prev <g_t, d_t>``
      (no extra loss evaluation).
    * CHOICE: one beta per param group (``granularity="group"``: the inner products run over
      every parameter of the group); ``granularity="tensor"`` computes one beta per tensor.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate eta.
        lam: weight lambda of the pull toward the heavy-ball step (default 0.1).
        beta_max: upper clip of beta (default 0.9).
        weight_decay: coupled L2 penalty (default 0).
        granularity: ``"group"`` (one beta per param group) or ``"tensor"``.
        fixed_beta: force beta to this constant (tests and ablations). With ``lam=0`` AM-SGD is
            then exactly ``torch.optim.SGD(momentum=b, dampening=b)``.
        impl: ``"compiled"``, ``"foreach"`` or ``"forloop"`` (default: compiled on CPU where
            memtune's CPU kernels build, and for a group of at least a million elements where
            torch.compile works, else torch's default); see :mod:`memtune.optimizers.compiled`. On CPU the compiled step's update is
            torch's fused SGD kernel with momentum = dampening = 1 - w, w = (1 - beta) / (1 + lam).
        foreach: torch's flag, used when ``impl`` is not given.

    The beta of the last step is kept on the parameters' device, readable without a host sync
    inside ``step`` as :attr:`last_beta`. A group whose lr is 0 is left untouched by ``step``
    (beta divides by eta), so schedules that end at 0 are safe.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        lam: float = 0.1,
        beta_max: float = 0.9,
        weight_decay: float = 0.0,
        *,
        granularity: str = "group",
        fixed_beta: float | None = None,
        impl: str | None = None,
        foreach: bool | None = None,
    ) -> None:
        check_non_negative("learning rate", lr)
        check_non_negative("lam", lam)
        if impl is not None:
            check_choice("impl", impl, IMPLS)
        check_unit_interval("beta_max", beta_max)
        check_non_negative("weight_decay", weight_decay)
        check_choice("granularity", granularity, GRANULARITIES)
        if fixed_beta is not None:
            check_unit_interval("fixed_beta", fixed_beta)
        defaults = dict(
            lr=lr,
            lam=lam,
            beta_max=beta_max,
            weight_decay=weight_decay,
            granularity=granularity,
            fixed_beta=fixed_beta,
            impl=impl,
            foreach=foreach,
        )
        super().__init__(params, defaults)
        self.last_impl: str | None = None  # the implementation the last step ran
        keep_implementation_on_load(self)
        keep_float64_on_load(self, "prev_lr")

    def _init_group(
        self,
        group: dict,
        params: list[Tensor],
        grads: list[Tensor],
        buffers: list[Tensor | None],
        prev_lrs: list[float],
    ) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AMSGD does not support sparse gradients")
            params.append(p)
            grads.append(p.grad)
            state = self.state[p]
            buffers.append(state.get("momentum_buffer"))
            prev_lrs.append(float(state["prev_lr"]) if "prev_lr" in state else group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            buffers: list[Tensor | None] = []
            prev_lrs: list[float] = []
            self._init_group(group, params, grads, buffers, prev_lrs)
            if not params or group["lr"] == 0:  # beta needs eta_prev / eta: a zero lr skips
                continue
            self.last_impl = resolve_impl(group.get("impl"), group["foreach"], params)
            betas = _AM_SGD_STEPS[self.last_impl](  # resolved already: not through am_sgd()
                params,
                grads,
                buffers,
                prev_lrs,
                lr=group["lr"],
                lam=group["lam"],
                beta_max=group["beta_max"],
                weight_decay=group["weight_decay"],
                granularity=group["granularity"],
                fixed_beta=group["fixed_beta"],
            )
            for p, buffer, beta in zip(params, buffers, betas, strict=True):
                state = self.state[p]
                state["momentum_buffer"] = buffer
                state["beta"] = beta
                keep_lr(state, group["lr"])
        return loss

    @property
    def last_beta(self) -> Tensor | None:
        """Beta of the last step: one entry per param group (``granularity="group"``) or per
        tensor, on the parameters' device. ``None`` before the first step."""
        return last_beta(self)


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


def am_sgd(
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
    impl: str | None = None,
    foreach: bool | None = None,
) -> list[Tensor]:
    """Functional AM-SGD: updates ``params`` and ``momentum_buffers`` in place (a ``None``
    buffer is created) and returns the beta used for each parameter."""
    return _AM_SGD_STEPS[resolve_impl(impl, foreach, params)](
        params,
        grads,
        momentum_buffers,
        prev_lrs,
        lr=lr,
        lam=lam,
        beta_max=beta_max,
        weight_decay=weight_decay,
        granularity=granularity,
        fixed_beta=fixed_beta,
    )


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


def _single_tensor_am_sgd(
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
    if weight_decay != 0:
        grads = [g.add(p, alpha=weight_decay) for g, p in zip(grads, params, strict=True)]
    warm, betas = _am_sgd_first_steps(grads, momentum_buffers)
    if warm:
        warm_betas = _am_sgd_betas(
            [grads[i] for i in warm],
            [momentum_buffers[i] for i in warm],  # type: ignore[misc]
            [prev_lrs[i] for i in warm],
            lr=lr,
            lam=lam,
            beta_max=beta_max,
            granularity=granularity,
            fixed_beta=fixed_beta,
        )
        for i, beta in zip(warm, warm_betas, strict=True):
            # d <- ((beta + lam) d + (1 - beta) g) / (1 + lam) is a lerp from d toward g.
            momentum_buffers[i].lerp_(grads[i], (1 - beta) / (1 + lam))  # type: ignore[union-attr]
            betas[i] = beta
    for p, d in zip(params, momentum_buffers, strict=True):
        p.add_(d, alpha=-lr)  # type: ignore[arg-type]
    return betas


def _multi_tensor_am_sgd(
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
    if weight_decay != 0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    warm, betas = _am_sgd_first_steps(grads, momentum_buffers)
    if warm:
        warm_grads = [grads[i] for i in warm]
        warm_buffers: list[Tensor] = [momentum_buffers[i] for i in warm]  # type: ignore[misc]
        warm_betas = _am_sgd_betas(
            warm_grads,
            warm_buffers,
            [prev_lrs[i] for i in warm],
            lr=lr,
            lam=lam,
            beta_max=beta_max,
            granularity=granularity,
            fixed_beta=fixed_beta,
        )
        torch._foreach_lerp_(
            warm_buffers, warm_grads, [(1 - beta) / (1 + lam) for beta in warm_betas]
        )
        for i, beta in zip(warm, warm_betas, strict=True):
            betas[i] = beta
    torch._foreach_add_(params, momentum_buffers, alpha=-lr)  # type: ignore[arg-type]
    return betas


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
    (:func:`memtune.optimizers.compiled.am_sgd_group_step`)."""
    decayed = weight_decay != 0
    wd = SCALARS("weight_decay", weight_decay, params[0])
    like = params[0]
    beta = compiled("am_sgd_group_step")(
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
            rows = compiled("am_sgd_group_dots")(
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
        update = compiled("am_sgd_update")
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


_AM_SGD_STEPS: dict[str, Callable[..., list[Tensor]]] = {
    "compiled": _compiled_am_sgd,
    "foreach": _multi_tensor_am_sgd,
    "forloop": _single_tensor_am_sgd,
}


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
