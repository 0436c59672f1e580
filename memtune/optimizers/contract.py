"""What any optimizer in memtune's registry must do, as checks that raise AssertionError.

The test suite runs them over every registered optimizer, plugins included
(``tests/optimizers/test_contract.py``), and ``memtune check-optimizer NAME`` runs them on
demand for one. Each trains a small fixed regression problem.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from memtune.optimizers.registry import get_optimizer

__all__ = ["CHECKS", "make_closure", "regression_problem", "run_checks", "train"]

LossFn = Callable[[nn.Module], torch.Tensor]


def regression_problem(
    dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
) -> tuple[nn.Module, LossFn]:
    """A two-layer MLP and a loss on a fixed random regression batch."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(64, 8, generator=generator, dtype=dtype)
    targets = torch.sin(inputs.sum(1, keepdim=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    model = model.to(dtype=dtype, device=device)
    inputs, targets = inputs.to(device), targets.to(device)
    return model, lambda m: nn.functional.mse_loss(m(inputs), targets)


def make_closure(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn) -> Callable:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        return loss

    return closure


def train(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, steps: int):
    """Runs ``steps`` closure steps; returns the loss before each step."""
    closure = make_closure(model, optimizer, loss_fn)
    return [float(optimizer.step(closure).detach()) for _ in range(steps)]


def _build(name: str, params: Any, overrides: Mapping[str, Any]) -> torch.optim.Optimizer:
    return get_optimizer(name).build(params, **overrides)


def loss_goes_down(name: str, overrides: Mapping[str, Any], device: str = "cpu") -> None:
    model, loss_fn = regression_problem(device=device)
    losses = train(model, _build(name, model.parameters(), overrides), loss_fn, 60)
    assert losses[-1] < 0.9 * losses[0], f"loss {losses[0]:.4g} -> {losses[-1]:.4g} in 60 steps"


def step_without_gradients_is_a_no_op(
    name: str, overrides: Mapping[str, Any], device: str = "cpu"
) -> None:
    model, _ = regression_problem(device=device)
    optimizer = _build(name, model.parameters(), overrides)
    before = copy.deepcopy(model.state_dict())
    optimizer.step(lambda: torch.tensor(0.0))  # a closure that computes no gradient
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} moved without a gradient"
    assert len(optimizer.state) == 0, "state was created without a gradient"


def tiny_lr_group_does_not_move(
    name: str, overrides: Mapping[str, Any], device: str = "cpu"
) -> None:
    model, loss_fn = regression_problem(device=device)
    first, second = model[0], model[2]
    groups = [{"params": first.parameters()}, {"params": second.parameters(), "lr": 1e-12}]
    optimizer = _build(name, groups, overrides)
    frozen = [p.detach().clone() for p in second.parameters()]
    moving = [p.detach().clone() for p in first.parameters()]
    train(model, optimizer, loss_fn, 5)
    for p, p0 in zip(second.parameters(), frozen, strict=True):
        torch.testing.assert_close(p, p0, atol=1e-9, rtol=0)
    assert any(
        not torch.allclose(p, p0) for p, p0 in zip(first.parameters(), moving, strict=True)
    ), "the group with the normal lr did not move"


def state_dict_round_trip_gives_the_same_trajectory(
    name: str, overrides: Mapping[str, Any], device: str = "cpu"
) -> None:
    model, loss_fn = regression_problem(device=device)
    optimizer = _build(name, model.parameters(), overrides)
    train(model, optimizer, loss_fn, 4)
    saved = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    train(model, optimizer, loss_fn, 4)
    resumed, _ = regression_problem(device=device, seed=1)  # other weights: all from the save
    resumed.load_state_dict(saved[0])
    resumed_optimizer = _build(name, resumed.parameters(), overrides)
    resumed_optimizer.load_state_dict(saved[1])
    train(resumed, resumed_optimizer, loss_fn, 4)
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q), "a resumed optimizer took another trajectory"


def deepcopy_continues_the_same_trajectory(
    name: str, overrides: Mapping[str, Any], device: str = "cpu"
) -> None:
    model, loss_fn = regression_problem(device=device)
    optimizer = _build(name, model.parameters(), overrides)
    train(model, optimizer, loss_fn, 3)
    twin_model, twin_optimizer = copy.deepcopy((model, optimizer))
    train(model, optimizer, loss_fn, 3)
    train(twin_model, twin_optimizer, loss_fn, 3)
    for p, q in zip(model.parameters(), twin_model.parameters(), strict=True):
        assert torch.equal(p, q), "a deep copy took another trajectory"


def state_holds_tensors_only(name: str, overrides: Mapping[str, Any], device: str = "cpu") -> None:
    model, loss_fn = regression_problem(device=device)
    optimizer = _build(name, model.parameters(), overrides)
    train(model, optimizer, loss_fn, 3)
    for state in optimizer.state_dict()["state"].values():
        for key, value in state.items():
            assert isinstance(value, torch.Tensor), f"state entry {key!r} is not a tensor"


def registry_state_bytes_match_the_state_held(
    name: str, overrides: Mapping[str, Any], device: str = "cpu"
) -> None:
    spec = get_optimizer(name)
    model, loss_fn = regression_problem(device=device)
    optimizer = spec.build(model.parameters(), **overrides)
    train(model, optimizer, loss_fn, 2)
    n_params = sum(p.numel() for p in model.parameters())
    held = sum(  # tensors shaped like the parameter, or a stack of such (the buffers)
        value.numel() * value.element_size()
        for p in model.parameters()
        for value in optimizer.state[p].values()
        if value.shape == p.shape or value.shape[1:] == p.shape
    )
    expected = spec.state_bytes_per_param(dict(overrides))
    assert abs(held / n_params - expected) < 1e-6, (
        f"holds {held / n_params} B/param, says {expected}"
    )


CHECKS: dict[str, Callable[..., None]] = {
    check.__name__: check
    for check in (
        loss_goes_down,
        step_without_gradients_is_a_no_op,
        tiny_lr_group_does_not_move,
        state_dict_round_trip_gives_the_same_trajectory,
        deepcopy_continues_the_same_trajectory,
        state_holds_tensors_only,
        registry_state_bytes_match_the_state_held,
    )
}


def run_checks(
    name: str, overrides: Mapping[str, Any] | None = None, device: str = "cpu"
) -> dict[str, str | None]:
    """Every check on one optimizer: check name -> None (passed) or what failed."""
    results: dict[str, str | None] = {}
    for check_name, check in CHECKS.items():
        try:
            check(name, overrides or {}, device)
            results[check_name] = None
        except Exception as error:  # a check's failure is a result, reported by name
            results[check_name] = f"{type(error).__name__}: {error}"
    return results
