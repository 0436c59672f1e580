"""Test functions for exploration studies and tests (docs/algorithms.md, "Test functions").

Each takes a tensor whose last dimension holds the coordinates and returns the value per
point, so a batch of starting points runs as one tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["ackley", "goldstein_price", "sharp_flat"]


def goldstein_price(xy: Tensor) -> Tensor:
    """Goldstein-Price on [-2, 2]^2: global minimum f(0, -1) = 3, local minima 30, 84, 840."""
    x, y = xy[..., 0], xy[..., 1]
    a = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x**2 - 14 * y + 6 * x * y + 3 * y**2)
    b = 30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x**2 + 48 * y - 36 * x * y + 27 * y**2)
    return a * b


def ackley(xy: Tensor) -> Tensor:
    """2-D Ackley: global minimum f(0, 0) = 0, local minima near the integer points."""
    x, y = xy[..., 0], xy[..., 1]
    radial = -20 * torch.exp(-0.2 * torch.sqrt(0.5 * (x**2 + y**2) + 1e-30))
    periodic = -torch.exp(0.5 * (torch.cos(2 * math.pi * x) + torch.cos(2 * math.pi * y)))
    return radial + periodic + math.e + 20


def sharp_flat(x: Tensor, sharpness: float) -> Tensor:
    """Two wells of equal depth: a sharp one at 0 (width 1/s) and a flat one at 3."""
    x = x[..., 0]
    return -torch.exp(-((sharpness * x) ** 2) / 2) - torch.exp(-((x - 3) ** 2) / 2)
