"""Adam+CM and Adam+CG: the priority buffer semantics of the reference code."""

from __future__ import annotations

import pytest
import torch

from memtune.optimizers import AdamCG, AdamCM

BETA1, BETA2, EPS, LR = 0.9, 0.999, 1e-8, 0.1
GRADIENTS = [
    torch.tensor([1.0, -2.0]),
    torch.tensor([0.5, 1.0]),
    torch.tensor([-1.0, 0.25]),
    torch.tensor([2.0, 2.0]),
]


def _feed(optimizer, params, gradients):
    for grad in gradients:
        for p in params:
            p.grad = grad.clone().to(p.dtype)
        optimizer.step()


def test_first_step_leaves_params_unchanged_and_stores_the_gradient():
    x = torch.nn.Parameter(torch.ones(2))
    optimizer = AdamCM([x], lr=LR)
    _feed(optimizer, [x], GRADIENTS[:1])
    assert torch.equal(x.detach(), torch.ones(2))
    state = optimizer.state[x]
    assert torch.equal(state["critical_buffer"][torch.argmax(state["critical_keys"])], GRADIENTS[0])
    assert torch.equal(state["critical_sum"], GRADIENTS[0])


def test_buffer_of_one_without_decay_adds_the_previous_momentum():
    """C = 1, decay = 0: u_2 = m_2 + g_1 and u_t = m_t + m_{t-1} after; v is the EMA of u^2."""
    x = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = AdamCM([x], lr=LR, topc=1, decay=0.0)
    _feed(optimizer, [x], GRADIENTS)

    grads = [g.double() for g in GRADIENTS]
    m, v, expected_x, previous = (
        torch.zeros(2, dtype=torch.float64),
        0,
        torch.zeros(2, dtype=torch.float64),
        grads[0],
    )
    for k, g in enumerate(grads[1:], start=2):  # the first call makes no move, k counts it
        m = BETA1 * m + (1 - BETA1) * g
        u = m + previous
        previous = m
        v = BETA2 * v + (1 - BETA2) * u**2
        expected_x = expected_x - LR / (1 - BETA1**k) * u / (v.sqrt() / (1 - BETA2**k) ** 0.5 + EPS)
    torch.testing.assert_close(optimizer.state[x]["exp_avg_sq"], v)
    torch.testing.assert_close(x.detach(), expected_x)


def test_synced_priority_is_the_sum_of_the_tensor_norms():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    optimizer = AdamCM(params, lr=LR, decay=1.0)
    grads = [torch.tensor([3.0, 4.0]), torch.tensor([0.0, 6.0, 8.0])]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer.step()
    for p in params:
        keys = optimizer.state[p]["critical_keys"]
        assert keys.max() == pytest.approx(5.0 + 10.0)


def test_unsynced_priority_is_each_tensors_own_norm():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    optimizer = AdamCM(params, lr=LR, decay=1.0, synced=False)
    for p, g in zip(params, [torch.tensor([3.0, 4.0]), torch.tensor([0.0, 6.0, 8.0])], strict=True):
        p.grad = g
    optimizer.step()
    assert [float(optimizer.state[p]["critical_keys"].max()) for p in params] == pytest.approx(
        [5.0, 10.0]
    )


def test_priorities_decay_every_step():
    x = torch.nn.Parameter(torch.zeros(2))
    optimizer = AdamCM([x], lr=LR, topc=3, decay=0.5)
    _feed(optimizer, [x], GRADIENTS[:2])
    norms = [float(g.norm()) for g in GRADIENTS[:2]]
    keys = sorted(k for k in optimizer.state[x]["critical_keys"].tolist() if k != float("-inf"))
    assert keys == pytest.approx(sorted([norms[0] * 0.25, norms[1] * 0.5]))


def test_lower_priority_snapshot_does_not_replace_a_higher_one():
    x = torch.nn.Parameter(torch.zeros(2))
    optimizer = AdamCM([x], lr=LR, topc=1, decay=1.0)
    _feed(optimizer, [x], [torch.tensor([10.0, 0.0]), torch.tensor([0.1, 0.0])])
    assert torch.equal(optimizer.state[x]["critical_buffer"][0], torch.tensor([10.0, 0.0]))


def test_running_sum_equals_the_buffer_sum_after_many_replacements():
    x = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    optimizer = AdamCM([x], lr=1e-2, topc=3)
    generator = torch.Generator().manual_seed(0)
    _feed(
        optimizer,
        [x],
        [torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(50)],
    )
    state = optimizer.state[x]
    torch.testing.assert_close(state["critical_sum"], state["critical_buffer"].sum(0))


def test_topc_zero_keeps_no_buffer_and_steps_with_the_momentum():
    x = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = AdamCM([x], lr=LR, topc=0)
    _feed(optimizer, [x], GRADIENTS[:2])
    assert not any(key.startswith("critical") for key in optimizer.state[x])
    m = (1 - BETA1) * GRADIENTS[1].double()
    v = (1 - BETA2) * m**2
    expected = -LR / (1 - BETA1**2) * m / (v.sqrt() / (1 - BETA2**2) ** 0.5 + EPS)
    torch.testing.assert_close(x.detach(), expected)


def test_adam_cg_first_step_is_a_plain_adam_step():
    x, y = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    _feed(AdamCG([x], lr=LR), [x], GRADIENTS[:1])
    _feed(torch.optim.Adam([y], lr=LR), [y], GRADIENTS[:1])
    torch.testing.assert_close(x, y)


def test_adam_cg_adds_the_buffer_mean_of_past_gradients():
    x = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = AdamCG([x], lr=LR, topc=5, decay=0.7)
    _feed(optimizer, [x], GRADIENTS[:3])
    grads = [g.double() for g in GRADIENTS[:3]]
    directions = [grads[0], grads[1] + grads[0], grads[2] + (grads[0] + grads[1]) / 2]
    m, v, expected = 0, 0, torch.zeros(2, dtype=torch.float64)
    for k, u in enumerate(directions, start=1):
        m = BETA1 * m + (1 - BETA1) * u
        v = BETA2 * v + (1 - BETA2) * u**2
        expected = expected - LR / (1 - BETA1**k) * m / (v.sqrt() / (1 - BETA2**k) ** 0.5 + EPS)
    torch.testing.assert_close(x.detach(), expected)
