"""AM-AdamW: AdamW with adaptive memory momentum (Topollai & Choromanska, arXiv 2510.04988).

Adam's constant beta1 is replaced by a beta_t computed every step from the two-plane proximal
model of AM-SGD, in the geometry of Adam's preconditioner. The closed form, and the choices
this package made where the paper left a detail open, are in the class docstring and in
``docs/algorithms.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from memtune.optimizers._am_common import (
    COUPLINGS,
    am_adamw_numerator,
    clipped_ratio,
    keep_lr,
    last_beta,
)
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
from memtune.optimizers.am_adamw_compiled import _compiled_am_adamw
from memtune.optimizers.compiled import (
    IMPLS,
    resolve_impl,
)

__all__ = ["AMAdamW", "am_adamw"]

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
                keep_lr(state, group["lr"])
        return loss

    @property
    def last_beta(self) -> Tensor | None:
        """Beta of the last step, one entry per parameter tensor; ``None`` before any step."""
        return last_beta(self)


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
    decay_pull = None
    if weight_decay != 0:
        gap = gap + weight_decay * flat_dot(grad, param)
        decay_pull = weight_decay * flat_dot(param, delta)
    numerator = am_adamw_numerator(
        gap, pull, decay_pull, prev_lr=prev_lr, lr=lr, weight_decay=weight_decay
    )
    denominator = flat_dot(scaled, delta)
    return clipped_ratio(numerator, denominator, beta1_max)


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


_AM_ADAMW_STEPS: dict[str, Callable[..., list[Tensor]]] = {
    "compiled": _compiled_am_adamw,
    "foreach": _multi_tensor_am_adamw,
    "forloop": _single_tensor_am_adamw,
}
