"""Small deterministic problems the optimizer tests train on."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def regression_problem(
    dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
) -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor]]:
    """A two-layer MLP and a loss on a fixed random regression batch."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(64, 8, generator=generator, dtype=dtype)
    targets = torch.sin(inputs.sum(1, keepdim=True))
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).to(
        dtype=dtype, device=device
    )
    inputs, targets = inputs.to(device), targets.to(device)
    return model, lambda m: nn.functional.mse_loss(m(inputs), targets)


def make_closure(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn) -> Callable:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        return loss

    return closure


def train(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, steps: int) -> list[float]:
    """Runs ``steps`` closure steps; returns the loss before each step."""
    closure = make_closure(model, optimizer, loss_fn)
    return [float(optimizer.step(closure).detach()) for _ in range(steps)]
