"""Adaptive memory momentum: the closed-form beta, the quadratic claims, the coupling option."""

from __future__ import annotations

import pytest
import torch

from memtune.optimizers import AMSGD, AMAdamW

GRADIENT = torch.tensor([0.6, 0.8], dtype=torch.float64)  # |g| = 1


def _beta_after_one_step(memory: torch.Tensor, lam: float = 0.1) -> float:
    """AM-SGD's beta when the memory d is ``memory`` and the gradient is GRADIENT (constant lr)."""
    x = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = AMSGD([x], lr=0.1, lam=lam)
    x.grad = torch.ones(2, dtype=torch.float64)
    optimizer.step()  # first step: creates the memory and records eta_prev = 0.1
    optimizer.state[x]["momentum_buffer"].copy_(memory)
    x.grad = GRADIENT.clone()
    optimizer.step()
    return float(optimizer.last_beta)


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        pytest.param(-GRADIENT, (1 - 3 * 0.1) / 4, id="opposite"),
        pytest.param(torch.stack([-GRADIENT[1], GRADIENT[0]]), (1 - 0.1) / 2, id="orthogonal"),
        pytest.param(2 * GRADIENT, 0.9, id="twice-clipped"),
        pytest.param(0.5 * GRADIENT, 0.9, id="half-clipped"),
        pytest.param(GRADIENT, 0.0, id="equal"),
    ],
)
def test_am_sgd_beta_has_the_analytic_value(memory, expected):
    assert _beta_after_one_step(memory) == pytest.approx(expected, abs=1e-12)


def test_am_sgd_memory_equal_to_gradient_gives_the_gradient():
    x = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = AMSGD([x], lr=0.1)
    x.grad = GRADIENT.clone()
    optimizer.step()
    optimizer.step()
    assert torch.equal(optimizer.state[x]["momentum_buffer"], GRADIENT)


def test_am_sgd_first_step_is_plain_sgd():
    x = torch.nn.Parameter(torch.ones(3))
    x.grad = torch.tensor([1.0, -2.0, 0.5])
    AMSGD([x], lr=0.1).step()
    torch.testing.assert_close(x.detach(), torch.tensor([0.9, 1.2, 0.95]))


def test_am_sgd_group_beta_is_shared_and_tensor_beta_is_not():
    params = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)) for _ in range(2)]
    for granularity, distinct in (("group", 1), ("tensor", 2)):
        optimizer = AMSGD(params, lr=0.1, granularity=granularity)
        for grads in ([GRADIENT, GRADIENT], [-GRADIENT, GRADIENT.flip(0)]):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
        assert optimizer.last_beta.numel() == distinct


def test_last_beta_stays_on_the_parameters_device_without_a_copy():
    x = torch.nn.Parameter(torch.zeros(2))
    optimizer = AMSGD([x], lr=0.1)
    assert optimizer.last_beta is None
    for _ in range(2):
        x.grad = torch.randn(2)
        optimizer.step()
    assert isinstance(optimizer.last_beta, torch.Tensor)
    assert optimizer.last_beta.device == x.device


def _quadratic_loss_after(make_optimizer, lr: float, steps: int = 500) -> float:
    curvature = torch.logspace(0, 2, 50, dtype=torch.float64)
    x = torch.nn.Parameter(torch.ones(50, dtype=torch.float64))
    optimizer = make_optimizer([x], lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (curvature * x**2).sum()).backward()
        optimizer.step()
    return float(0.5 * (curvature * x.detach() ** 2).sum())


def _heavy_ball(params, lr):
    return torch.optim.SGD(params, lr=lr, momentum=0.9, dampening=0.9)


def test_am_sgd_beats_gd_and_heavy_ball_at_lr_one_over_l():
    lr = 1 / 100
    am = _quadratic_loss_after(lambda p, lr: AMSGD(p, lr=lr), lr)
    assert am < _quadratic_loss_after(lambda p, lr: torch.optim.SGD(p, lr=lr), lr)
    assert am < _quadratic_loss_after(_heavy_ball, lr)


def test_am_sgd_converges_at_forty_over_l_where_heavy_ball_diverges():
    lr = 40 / 100
    initial = 0.5 * float(torch.logspace(0, 2, 50, dtype=torch.float64).sum())
    heavy_ball = _quadratic_loss_after(_heavy_ball, lr)
    assert not heavy_ball < initial  # inf, nan, or larger: diverged
    assert _quadratic_loss_after(lambda p, lr: AMSGD(p, lr=lr), lr) < 1e-6 * initial


def test_am_sgd_zero_lr_leaves_params_and_memory_untouched():
    x = torch.nn.Parameter(torch.ones(2))
    optimizer = AMSGD([x], lr=0.1)
    x.grad = torch.tensor([1.0, 2.0])
    optimizer.step()
    before = (x.detach().clone(), optimizer.state[x]["momentum_buffer"].clone())
    optimizer.param_groups[0]["lr"] = 0.0
    x.grad = torch.tensor([-3.0, 1.0])
    optimizer.step()
    assert torch.equal(x.detach(), before[0])
    assert torch.equal(optimizer.state[x]["momentum_buffer"], before[1])
    assert torch.isfinite(optimizer.state[x]["momentum_buffer"]).all()


def _adamw_trajectory(coupling: str, scale: float, steps: int = 40) -> torch.Tensor:
    curvature = torch.logspace(0, 1, 10, dtype=torch.float64)
    x = torch.nn.Parameter(torch.linspace(-1, 1, 10, dtype=torch.float64))
    optimizer = AMAdamW([x], lr=0.05, lam=0.5, eps=1e-14, weight_decay=0, coupling=coupling)
    points = []
    for _ in range(steps):
        optimizer.zero_grad()
        (scale * 0.5 * (curvature * x**2).sum()).backward()
        optimizer.step()
        points.append(x.detach().clone())
    return torch.stack(points)


def test_am_adamw_scale_invariant_coupling_ignores_the_loss_scale():
    torch.testing.assert_close(
        _adamw_trajectory("scale_invariant", 100.0),
        _adamw_trajectory("scale_invariant", 1.0),
        rtol=1e-8,
        atol=1e-10,
    )


def test_am_adamw_paper_coupling_depends_on_the_loss_scale():
    # Why the option exists: 1 + lambda P changes with the loss scale.
    difference = (_adamw_trajectory("paper", 100.0) - _adamw_trajectory("paper", 1.0)).abs().max()
    assert difference > 1e-3


def test_am_adamw_first_step_uses_beta1_max_then_adapts():
    x = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    optimizer = AMAdamW([x], lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    betas = []
    for _ in range(6):  # uncorrelated gradients: the memory stops describing the loss
        x.grad = torch.randn(4, generator=generator, dtype=torch.float64)
        optimizer.step()
        betas.append(float(optimizer.last_beta))
    assert betas[0] == 0.89
    assert all(0 <= beta <= 0.89 for beta in betas)
    assert min(betas[1:]) < 0.89


def test_am_adamw_beta_product_tracks_the_bias_correction():
    x = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    optimizer = AMAdamW([x], lr=1e-2)
    product = torch.tensor(1.0, dtype=torch.float64)
    for _ in range(4):
        x.grad = torch.randn(3, dtype=torch.float64)
        optimizer.step()
        product = product * optimizer.last_beta[0]
    torch.testing.assert_close(optimizer.state[x]["beta_product"], product)


@pytest.mark.parametrize("make", [AMSGD, AMAdamW], ids=["am_sgd", "am_adamw"])
def test_am_nan_gradient_gives_a_finite_beta_and_marks_only_its_own_entries(make):
    """A NaN in the gradient must not raise: beta falls to 0 (the Dn > 0 test is false for NaN)
    and the NaN shows in the weight entry it touched, where the trial's divergence check finds
    it; the other entries take a finite step."""
    x = torch.nn.Parameter(torch.ones(2))
    optimizer = make([x], lr=0.1)
    x.grad = torch.ones(2)
    optimizer.step()
    x.grad = torch.tensor([float("nan"), 1.0])
    optimizer.step()
    assert float(optimizer.last_beta) == 0.0
    assert torch.isnan(x.detach()[0]) and torch.isfinite(x.detach()[1])
