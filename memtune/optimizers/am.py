"""Adaptive memory momentum: AM-SGD and AM-AdamW (Topollai & Choromanska, arXiv 2510.04988).

The constant momentum coefficient of heavy ball / Adam is replaced by a coefficient beta_t
computed every step from a two-plane proximal model of the loss: one plane with the current
gradient as slope, one with the memory (the momentum buffer). The closed form for beta_t and
the choices this package made where the paper left a detail open are in each class docstring
and in ``docs/algorithms.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.sgd import sgd

from memtune.optimizers import cpu_kernels
from memtune.optimizers._base import (
    ParamsT,
    check_betas,
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

__all__ = ["AMSGD", "AMAdamW", "am_adamw", "am_sgd"]

GRANULARITIES = ("group", "tensor")
COUPLINGS = ("paper", "scale_invariant")


def _clipped_ratio(numerator: Tensor, denominator: Tensor, upper: float) -> Tensor:
    """clip(N / Dn, 0, upper), and 0 where Dn == 0 (the memory equals the gradient)."""
    ratio = torch.where(denominator > 0, numerator / denominator, torch.zeros_like(numerator))
    return ratio.clamp(0.0, upper)


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
                _keep_lr(state, group["lr"])
        return loss

    @property
    def last_beta(self) -> Tensor | None:
        """Beta of the last step: one entry per param group (``granularity="group"``) or per
        tensor, on the parameters' device. ``None`` before the first step."""
        return _last_beta(self)


def _keep_lr(state: dict, lr: float) -> None:
    """state["prev_lr"] <- lr, the eta_prev of the next step: a CPU float64 tensor, refilled
    only when the lr changed (a new tensor per parameter per step cost ~5% of a step)."""
    prev = state.get("prev_lr")
    if prev is None or prev.dtype != torch.float64:
        state["prev_lr"] = torch.tensor(float(lr), dtype=torch.float64)
    elif float(prev) != lr:
        prev.fill_(lr)


def _last_beta(optimizer: Optimizer) -> Tensor | None:
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
        betas.append(_clipped_ratio(*am_sgd_fraction(G, X, D, gap, lr=lr, lam=lam), beta_max))
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
        betas.append(_clipped_on_host(numerator, denominator, beta_max))
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
    if (
        fixed_beta is None
        and all(d is not None for d in momentum_buffers)  # not `in`: it calls Tensor.__eq__
        and cpu_kernels.supports(params, grads, momentum_buffers)  # type: ignore[arg-type]
    ):
        # Every step after a tensor's first, on CPU: the sums, beta on the host and torch's
        # fused SGD, with nothing else around them (the general path below, with the step's
        # second resolve_impl, cost ~20 us more a step on six small tensors).
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
        return _as_tensors(host_betas, params[0])
    decayed = weight_decay != 0
    on_cpu = params[0].device.type == "cpu"
    wd = SCALARS("weight_decay", weight_decay, params[0])
    if (
        not on_cpu
        and fixed_beta is None
        and all(d is not None for d in momentum_buffers)
        and len(set(prev_lrs)) == 1
    ):
        # Off the CPU, every step after a tensor's first: one graph for the sums, beta and the
        # update of the whole group (memtune.optimizers.compiled.am_sgd_group_step).
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
            warm_betas = _as_tensors(host_betas, params[0])
        else:
            gg, gd, dd = (list(column.unbind()) for column in rows.to(params[0].dtype).unbind(1))
            warm_betas = _am_sgd_betas_from_products(gg, gd, dd, warm_prev_lrs, **options)
    if host_betas is not None:
        # With the weights on the host, the update is torch's fused SGD kernel: the fastest
        # update there is for these arrays (AM-SGD's own graph for it ran ~15% slower).
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


def _as_tensors(values: list[float], like: Tensor) -> list[Tensor]:
    """0-d tensors of ``like``'s dtype, one per distinct value (a group beta is one tensor)."""
    made: dict[float, Tensor] = {}
    for value in values:
        if value not in made:
            made[value] = torch.tensor(value, dtype=like.dtype)
    return [made[value] for value in values]


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


# --------------------------------------------------------------------------------------------
# AM-AdamW
# --------------------------------------------------------------------------------------------


class AMAdamW(Optimizer):
    r"""AdamW whose first moment is the adaptive-memory direction (AM-AdamW).

    Adam's second moment is unchanged; the first moment ``d`` gets a coefficient beta per
    parameter tensor, from the two-plane model measured in Adam's preconditioned metric.

    .. code-block:: text

        input: eta (lr), beta1_max, beta2 (betas), eps, lambda (lam), wd (weight decay)
        initialize: d <- 0, v <- 0, Pi <- 1 (product of past betas), k <- 0   (per tensor)
        for t = 1, 2, ...:
            g <- grad f(x);  k <- k + 1
            v <- beta2 v + (1 - beta2) g^2
            P <- (1 - beta1_max Pi) (sqrt(v / (1 - beta2^k)) + eps)   elementwise preconditioner
            if k == 1: beta <- beta1_max
            else:
                M    <- 1 / (P (1 + lambda P))                         elementwise metric
                gap  <- eta_prev sum(g (d / P + wd x))
                N    <- (1 + wd eta) gap / eta - sum((d - g)(g + lambda P d) M)
                        - wd sum(x (d - g))
                Dn   <- sum((d - g)^2 M)
                beta <- clip(N / Dn, 0, beta1_max), and 0 if Dn == 0
            d  <- ((1 - beta) g + (lambda P + beta) d) / (1 + lambda P)
            x  <- (1 - eta wd) x - eta d / P
            Pi <- Pi beta
        return x

    The bias correction of the first moment is folded into P through Pi: with lambda = 0 and
    beta forced to beta1 this is exactly ``torch.optim.AdamW``.

    Choices of this package:

    * CHOICE: the defaults, the per-tensor beta and the folding of the bias correction into P
      follow a public re-implementation citing the paper's Algorithms 1 and 3; the gap is the
      first-order estimate, as in AM-SGD.
    * CHOICE: ``coupling="paper"`` (default) is the form above. Its lambda term,
      ``1 + lambda P``, depends on the scale of the loss (multiply the loss by 100 and it
      behaves differently). ``coupling="scale_invariant"`` measures the lambda term in the
      preconditioned metric: ``d <- ((beta + lambda) d + (1 - beta) g) / (1 + lambda)``,
      ``M <- 1 / (P (1 + lambda))`` and ``g + lambda d`` in N; the trajectory is then invariant
      to the scale of the loss, as AdamW's is (up to eps).

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate eta (default 1e-3).
        betas: (beta1_max, beta2), default (0.89, 0.999); 0.89 = 0.9 - 0.1 lambda.
        eps: term added to the preconditioner's denominator (default 1e-8).
        lam: weight lambda of the pull toward the momentum step (default 0.1).
        weight_decay: decoupled weight decay (default 1e-2, as AdamW).
        coupling: ``"paper"`` or ``"scale_invariant"``.
        fixed_beta: force beta to this constant (the reduction tests).
        impl: ``"compiled"``, ``"foreach"`` or ``"forloop"`` (default as in :class:`AMSGD`).
        foreach: torch's flag, used when ``impl`` is not given.

    As in AM-SGD, a group whose lr is 0 is left untouched by ``step``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.89, 0.999),
        eps: float = 1e-8,
        lam: float = 0.1,
        weight_decay: float = 1e-2,
        *,
        coupling: str = "paper",
        fixed_beta: float | None = None,
        impl: str | None = None,
        foreach: bool | None = None,
    ) -> None:
        check_non_negative("learning rate", lr)
        check_betas(betas)
        if impl is not None:
            check_choice("impl", impl, IMPLS)
        check_non_negative("epsilon value", eps)
        check_non_negative("lam", lam)
        check_non_negative("weight_decay", weight_decay)
        check_choice("coupling", coupling, COUPLINGS)
        if fixed_beta is not None:
            check_unit_interval("fixed_beta", fixed_beta)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            lam=lam,
            weight_decay=weight_decay,
            coupling=coupling,
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
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        beta_products: list[Tensor],
        state_steps: list[Tensor],
        prev_lrs: list[float],
    ) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AMAdamW does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["beta_product"] = torch.ones((), dtype=p.dtype, device=p.device)
                state["prev_lr"] = torch.tensor(float(group["lr"]), dtype=torch.float64)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            beta_products.append(state["beta_product"])
            state_steps.append(state["step"])
            prev_lrs.append(float(state["prev_lr"]))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            exp_avgs: list[Tensor] = []
            exp_avg_sqs: list[Tensor] = []
            beta_products: list[Tensor] = []
            state_steps: list[Tensor] = []
            prev_lrs: list[float] = []
            self._init_group(
                group, params, grads, exp_avgs, exp_avg_sqs, beta_products, state_steps, prev_lrs
            )
            if not params or group["lr"] == 0:  # beta needs eta_prev / eta: a zero lr skips
                continue
            self.last_impl = resolve_impl(group.get("impl"), group["foreach"], params)
            betas = _AM_ADAMW_STEPS[self.last_impl](  # resolved already: not through am_adamw()
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                beta_products,
                state_steps,
                prev_lrs,
                lr=group["lr"],
                beta1_max=group["betas"][0],
                beta2=group["betas"][1],
                eps=group["eps"],
                lam=group["lam"],
                weight_decay=group["weight_decay"],
                coupling=group["coupling"],
                fixed_beta=group["fixed_beta"],
            )
            for p, beta in zip(params, betas, strict=True):
                state = self.state[p]
                state["beta"] = beta
                _keep_lr(state, group["lr"])
        return loss

    @property
    def last_beta(self) -> Tensor | None:
        """Beta of the last step, one entry per parameter tensor; ``None`` before any step."""
        return _last_beta(self)


def _am_adamw_beta(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    preconditioner: Tensor,
    damping: Tensor | float,
    *,
    prev_lr: float,
    lr: float,
    beta1_max: float,
    lam: float,
    weight_decay: float,
    coupling: str,
) -> Tensor:
    """The closed-form beta of one tensor (step k >= 2), before d and x are updated.

    ``damping`` is 1 / (1 + lambda P) (paper) or 1 / (1 + lambda) (scale-invariant), shared
    with the update of d. With u = d - g and s = u damping / P (so that u M = s):

        sum(u (g + lambda P d) M) = <s, g> + lambda <u damping, d>      (paper)
        sum(u (g + lambda d) M)   = <s, g> + lambda <s, d>              (scale-invariant)
        Dn = <s, u>

    which is the docstring's formula in fewer passes over memory.
    """
    delta = exp_avg - grad  # u = d - g
    delta_damped = delta * damping
    scaled = delta_damped / preconditioner  # s = u M
    if coupling == "paper":
        pull = flat_dot(scaled, grad) + lam * flat_dot(delta_damped, exp_avg)
    else:
        pull = flat_dot(scaled, grad) + lam * flat_dot(scaled, exp_avg)
    gap = flat_dot(grad, exp_avg / preconditioner)
    if weight_decay != 0:
        gap = gap + weight_decay * flat_dot(grad, param)
    gap = prev_lr * gap
    numerator = (1 + weight_decay * lr) * gap / lr - pull
    if weight_decay != 0:
        numerator = numerator - weight_decay * flat_dot(param, delta)
    denominator = flat_dot(scaled, delta)
    return _clipped_ratio(numerator, denominator, beta1_max)


def _damping(preconditioner: Tensor, lam: float, coupling: str) -> Tensor | float:
    """1 / (1 + lambda P) elementwise (paper) or the scalar 1 / (1 + lambda)."""
    if coupling == "paper":
        return torch.mul(preconditioner, lam).add_(1).reciprocal_()
    return 1 / (1 + lam)


def _preconditioner(
    exp_avg_sq: Tensor,
    step: Tensor,
    beta_product: Tensor,
    *,
    beta1_max: float,
    beta2: float,
    eps: float,
) -> Tensor:
    """P = (1 - beta1_max Pi) (sqrt(v / (1 - beta2^k)) + eps), in three passes."""
    bias_correction1 = 1 - beta1_max * beta_product
    bias_correction2_sqrt = (1 - beta2 ** float(step)) ** 0.5
    return (
        torch.sqrt(exp_avg_sq)
        .mul_(bias_correction1 / bias_correction2_sqrt)
        .add_(bias_correction1 * eps)
    )


def am_adamw(
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
    impl: str | None = None,
    foreach: bool | None = None,
) -> list[Tensor]:
    """Functional AM-AdamW: updates params and state in place; returns each tensor's beta."""
    return _AM_ADAMW_STEPS[resolve_impl(impl, foreach, params)](
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        beta_products,
        state_steps,
        prev_lrs,
        lr=lr,
        beta1_max=beta1_max,
        beta2=beta2,
        eps=eps,
        lam=lam,
        weight_decay=weight_decay,
        coupling=coupling,
        fixed_beta=fixed_beta,
    )


def _step_beta(
    step: Tensor, param: Tensor, fixed_beta: float | None, beta1_max: float
) -> Tensor | None:
    """The beta that needs no inner products: forced, or beta1_max on a tensor's first step."""
    if fixed_beta is not None:
        return torch.full((), fixed_beta, dtype=param.dtype, device=param.device)
    if float(step) == 1:
        return torch.full((), beta1_max, dtype=param.dtype, device=param.device)
    return None


def _single_tensor_am_adamw(
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
    # Each tensor goes through its whole update before the next: its temporaries stay in cache.
    betas = []
    for x, g, d, v, pi, step, prev_lr in zip(
        params, grads, exp_avgs, exp_avg_sqs, beta_products, state_steps, prev_lrs, strict=True
    ):
        step += 1
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p_cond = _preconditioner(v, step, pi, beta1_max=beta1_max, beta2=beta2, eps=eps)
        damping = _damping(p_cond, lam, coupling)
        beta = _step_beta(step, x, fixed_beta, beta1_max)
        if beta is None:
            beta = _am_adamw_beta(
                x,
                g,
                d,
                p_cond,
                damping,
                prev_lr=prev_lr,
                lr=lr,
                beta1_max=beta1_max,
                lam=lam,
                weight_decay=weight_decay,
                coupling=coupling,
            )
        # d <- ((1 - beta) g + (lambda P + beta) d) / (1 + lambda P): a lerp toward g with
        # weight (1 - beta) damping (elementwise for the paper's coupling).
        if coupling == "paper":
            d.lerp_(g, damping.mul_(1 - beta))
        else:
            d.lerp_(g, (1 - beta) * damping)
        if weight_decay != 0:
            x.mul_(1 - lr * weight_decay)
        x.addcdiv_(d, p_cond, value=-lr)
        pi.mul_(beta)
        betas.append(beta)
    return betas


def _multi_tensor_am_adamw(
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
    torch._foreach_add_(state_steps, 1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    bias_corrections1 = [1 - beta1_max * pi for pi in beta_products]
    preconditioners = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_mul_(
        preconditioners,
        [
            bc1 / (1 - beta2 ** float(k)) ** 0.5
            for bc1, k in zip(bias_corrections1, state_steps, strict=True)
        ],
    )
    torch._foreach_add_(preconditioners, [bc1 * eps for bc1 in bias_corrections1])
    if coupling == "paper":
        dampings: list = torch._foreach_mul(preconditioners, lam)
        torch._foreach_add_(dampings, 1.0)
        torch._foreach_reciprocal_(dampings)
    else:
        dampings = [1 / (1 + lam)] * len(params)

    betas = []
    for i, step in enumerate(state_steps):
        beta = _step_beta(step, params[i], fixed_beta, beta1_max)
        if beta is None:
            beta = _am_adamw_beta(
                params[i],
                grads[i],
                exp_avgs[i],
                preconditioners[i],
                dampings[i],
                prev_lr=prev_lrs[i],
                lr=lr,
                beta1_max=beta1_max,
                lam=lam,
                weight_decay=weight_decay,
                coupling=coupling,
            )
        betas.append(beta)

    if coupling == "paper":
        torch._foreach_mul_(dampings, [1 - beta for beta in betas])
        weights = dampings
    else:
        weights = [(1 - beta) / (1 + lam) for beta in betas]
    torch._foreach_lerp_(exp_avgs, grads, weights)
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_addcdiv_(params, exp_avgs, preconditioners, value=-lr)
    torch._foreach_mul_(beta_products, betas)
    return betas


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
    if cpu_kernels.supports(params, grads, exp_avgs, exp_avg_sqs):
        return _am_adamw_with_cpu_kernels(
            params, grads, exp_avgs, exp_avg_sqs, beta_products, state_steps, prev_lrs,
            lr=lr, beta1_max=beta1_max, beta2=beta2, eps=eps, lam=lam,
            weight_decay=weight_decay, coupling=coupling, fixed_beta=fixed_beta,
        )  # fmt: skip
    like = params[0]
    lr_t, beta1_t, beta2_t, eps_t, lam_t, wd_t = (
        SCALARS(name, value, like)
        for name, value in (
            ("lr", lr),
            ("beta1", beta1_max),
            ("beta2", beta2),
            ("eps", eps),
            ("lam", lam),
            ("weight_decay", weight_decay),
        )
    )
    static = dict(coupling=coupling, decayed=weight_decay != 0)
    steps = {float(step) for step in state_steps}  # CPU tensors: reading them is no sync
    if fixed_beta is None and len(steps) == 1 and len(set(prev_lrs)) == 1:
        # The usual case, every tensor at the same step: one beta graph and one update graph
        # for the group (a pair of calls per tensor cost ~40 us each).
        k = steps.pop() + 1
        for step in state_steps:
            step += 1
        bc2_sqrt = SCALARS("bias_correction2_sqrt", (1 - beta2**k) ** 0.5, like)
        first = SCALARS("first", float(k == 1), like)
        prev = SCALARS("prev_lr", prev_lrs[0], like)
        tensors = [[flat(t) for t in ts] for ts in (params, grads, exp_avgs, exp_avg_sqs)]
        group_betas = compiled("am_adamw_group_betas")(
            *tensors, beta_products, first, prev, lr_t, beta1_t, beta2_t, bc2_sqrt, eps_t,
            lam_t, wd_t, **static,
        )  # fmt: skip
        compiled("am_adamw_group_update")(
            *tensors, beta_products, group_betas, lr_t, beta1_t, beta2_t, bc2_sqrt, eps_t,
            lam_t, wd_t, **static,
        )  # fmt: skip
        betas = list(group_betas.unbind())
        torch._foreach_mul_(beta_products, betas)
        return betas
    beta_of, update = compiled("am_adamw_beta"), compiled("am_adamw_update")
    betas = []
    for x, g, d, v, pi, step, prev_lr in zip(
        params, grads, exp_avgs, exp_avg_sqs, beta_products, state_steps, prev_lrs, strict=True
    ):
        step += 1  # a CPU tensor, as in torch's AdamW: reading it is no device sync
        k = float(step)
        bc2_sqrt = SCALARS("bias_correction2_sqrt", (1 - beta2**k) ** 0.5, like)
        x, g, d, v = flat(x), flat(g), flat(d), flat(v)
        if fixed_beta is not None:
            beta = torch.full((), fixed_beta, dtype=x.dtype, device=x.device)
        else:
            first = SCALARS("first", float(k == 1), like)
            prev = SCALARS("prev_lr", prev_lr, like)
            beta = beta_of(
                x,
                g,
                d,
                v,
                pi,
                first,
                prev,
                lr_t,
                beta1_t,
                beta2_t,
                bc2_sqrt,
                eps_t,
                lam_t,
                wd_t,
                **static,
            )
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
            gap_scales=[(1 + weight_decay * lr) * prev_lr / lr for prev_lr in prev_lrs],
            **options,
        )  # fmt: skip
        betas = [
            beta1_max if k == 1 else _clipped_on_host(numerator, denominator, beta1_max)
            for k, (numerator, denominator) in zip(steps, sums, strict=True)
        ]
    cpu_kernels.am_adamw_update(params, grads, exp_avgs, exp_avg_sqs, betas=betas, lr=lr, **options)
    torch._foreach_mul_(beta_products, betas)
    return _as_tensors(betas, params[0])


_AM_ADAMW_STEPS: dict[str, Callable[..., list[Tensor]]] = {
    "compiled": _compiled_am_adamw,
    "foreach": _multi_tensor_am_adamw,
    "forloop": _single_tensor_am_adamw,
}


def _clipped_on_host(numerator: float, denominator: float, beta_max: float) -> float:
    """clip(N / Dn, 0, beta_max), 0 where Dn is not positive: :func:`_clipped_ratio` in floats
    (a NaN numerator stays NaN, as there)."""
    return min(max(numerator / denominator, 0.0), beta_max) if denominator > 0 else 0.0
