"""Sharpness-aware minimization (Foret et al., arXiv 2010.01412) over any registered optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from memtune.optimizers._base import ParamsT, check_non_negative, evaluate_closure

__all__ = ["SAM"]


class SAM(Optimizer):
    r"""Sharpness-aware minimization wrapped around a base optimizer.

    .. code-block:: text

        input: rho, a base optimizer, a closure computing L(w) and its gradient
        for t = 1, 2, ...:
            g     <- grad L(w)
            e     <- rho g / (|g| + 1e-12)          |g| over every parameter of every group
            w     <- w + e
            g_sam <- grad L(w)                      (same batch: the closure again)
            w     <- w - e                          (restored exactly from a copy)
            base step with g_sam
        return w

    Two forward/backward passes per step; the registry records it so that studies count it
    when they compare cost. ``rho=0`` is exactly the base optimizer. ``step`` needs a closure
    that zeroes the gradients, computes the loss, calls ``backward`` and returns the loss.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        base: the base optimizer's class (the registry turns a name such as ``"adamw"`` into
            its class and defaults: ``build_optimizer("sam", params, base="adamw")``).
        rho: radius of the ascent step (default 0.05).
        **base_kwargs: arguments of the base optimizer (``lr``, ``momentum`` ...).
    """

    def __init__(
        self,
        params: ParamsT,
        base: type[Optimizer] = torch.optim.SGD,
        rho: float = 0.05,
        **base_kwargs: Any,
    ) -> None:
        check_non_negative("rho", rho)
        super().__init__(params, dict(rho=rho))
        self.base_optimizer = base(self.param_groups, **base_kwargs)
        # One list of groups and one state for both, so lr schedulers, param-group edits and
        # anything that reads optimizer.state see the base's.
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        if closure is None:
            raise RuntimeError("SAM needs a closure: it evaluates the gradient twice per step")
        loss = evaluate_closure(closure)
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return loss
        grad_norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in params])
        )
        originals = []
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                originals.append((p, p.detach().clone()))
                p.add_(p.grad * scale.to(p.dtype))
        evaluate_closure(closure)
        for p, original in originals:
            p.copy_(original)
        self.base_optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    def __getstate__(self) -> dict[str, Any]:
        # Optimizer.__getstate__ keeps defaults, state and param_groups only: the base too.
        return self.__dict__.copy()
