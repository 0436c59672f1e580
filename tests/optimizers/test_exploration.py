"""The CM paper's exploration claim on the 1-D sharp/flat function (docs/algorithms.md, "Test functions").

Measured on this set-up (lr 0.05, gradient noise 0.3, 500 steps): Adam+CM ends in the flat
well in 14/20 runs at s = 8 and 10/20 at s = 16 (over 200 seeds: 85% and 70%); Adam in none.
With noise 0.1 the 200-seed rates are 75% and 60%, and a 20-seed draw can fall just under half.
"""

from __future__ import annotations

import pytest
import torch

from memtune.optimizers import build_optimizer
from memtune.studies.landscapes import sharp_flat

SEEDS, STEPS, LR, NOISE = 20, 500, 0.05, 0.3


def _escape_rate(name: str, sharpness: float) -> float:
    # One tensor per seed and unsynced priorities: the 20 runs are independent, in one optimizer.
    generator = torch.Generator().manual_seed(0)
    starts = torch.randn(SEEDS, generator=generator) * 0.5 / sharpness
    points = [torch.nn.Parameter(start.reshape(1, 1)) for start in starts]
    extra = {"synced": False} if name == "adam_cm" else {}
    optimizer = build_optimizer(name, points, lr=LR, **extra)
    for _ in range(STEPS):
        optimizer.zero_grad()
        sum(sharp_flat(x, sharpness).sum() for x in points).backward()
        for x in points:
            x.grad += NOISE * torch.randn(x.shape, generator=generator)
        optimizer.step()
    return sum(abs(float(x.detach()) - 3) < 0.5 for x in points) / SEEDS


@pytest.mark.slow
@pytest.mark.parametrize("sharpness", [8.0, 16.0])
def test_adam_cm_escapes_the_sharp_well_where_adam_stays(sharpness):
    assert _escape_rate("adam_cm", sharpness) >= 0.5
    assert _escape_rate("adam", sharpness) <= 0.1
