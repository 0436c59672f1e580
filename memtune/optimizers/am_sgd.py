"""AM-SGD: SGD with adaptive memory momentum (Topollai & Choromanska, arXiv 2510.04988).

The constant momentum coefficient of heavy ball is replaced by a coefficient beta_t computed
every step from a two-plane proximal model of the loss: one plane with the current gradient as
slope, one with the memory (the momentum buffer). The closed form, and the choices this package
made where the paper left a detail open, are in the class docstring and in
``docs/algorithms.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from memtune.optimizers._am_common import (
    GRANULARITIES,
    _am_sgd_betas,
    _am_sgd_first_steps,
    keep_lr,
    last_beta,
)
from memtune.optimizers._base import (
    ParamsT,
    check_choice,
    check_non_negative,
    check_unit_interval,
    evaluate_closure,
    keep_float64_on_load,
    keep_implementation_on_load,
)
from memtune.optimizers.am_sgd_compiled import _compiled_am_sgd
from memtune.optimizers.compiled import (
    IMPLS,
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
            torch.compile works, else torch's default); see :mod:`memtune.optimizers.compiled`.
            On CPU the compiled step's update is torch's fused SGD kernel with momentum = dampening = 1 - w, w = (1 - beta) / (1 + lam).
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


_AM_SGD_STEPS: dict[str, Callable[..., list[Tensor]]] = {
    "compiled": _compiled_am_sgd,
    "foreach": _multi_tensor_am_sgd,
    "forloop": _single_tensor_am_sgd,
}
