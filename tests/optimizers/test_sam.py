"""SAM: the gradient is taken at the perturbed point, the weights are restored exactly."""

from __future__ import annotations

import pytest
import torch

from memtune.optimizers import SAM, build_optimizer


def test_sam_steps_with_the_gradient_at_the_ascent_point():
    curvature, rho, lr = 3.0, 0.05, 0.1
    x = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    optimizer = SAM([x], base=torch.optim.SGD, rho=rho, lr=lr, momentum=0.0)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * curvature * (x**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    # e = rho * g / |g| = rho (x > 0); g_sam = a (x + rho)
    assert float(x.detach()) == pytest.approx(2.0 - lr * curvature * (2.0 + rho), rel=1e-14)


def test_sam_counts_two_gradient_evaluations_per_step():
    x = torch.nn.Parameter(torch.ones(2))
    optimizer = SAM([x], rho=0.1, lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        optimizer.zero_grad()
        loss = (x**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert len(calls) == 2


def test_registry_builds_sam_over_the_named_base_with_its_defaults():
    x = torch.nn.Parameter(torch.ones(2))
    optimizer = build_optimizer("sam", [x], base="adamw", lr=0.01)
    assert isinstance(optimizer.base_optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-2  # adamw's registry default
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_sam_refuses_a_base_that_needs_a_closure():
    with pytest.raises(ValueError, match="closure"):
        build_optimizer("sam", [torch.nn.Parameter(torch.ones(1))], base="sam")
