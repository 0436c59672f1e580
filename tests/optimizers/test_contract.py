"""Contract tests over every registry entry: what any optimizer of memtune must do."""

from __future__ import annotations

import copy

import pytest
import torch

from memtune.optimizers import OPTIMIZERS, UnknownNameError, build_optimizer, get_optimizer
from tests.optimizers.problems import make_closure, regression_problem, train


def _variants() -> list:
    """Each registry entry, and its multi-tensor path where it has one."""
    variants = []
    for spec in OPTIMIZERS:
        variants.append(pytest.param(spec.name, {}, id=spec.name))
        if spec.supports_foreach:
            variants.append(pytest.param(spec.name, {"foreach": True}, id=f"{spec.name}-foreach"))
    variants += [
        pytest.param("am_sgd", {"granularity": "tensor"}, id="am_sgd-tensor"),
        pytest.param("am_adamw", {"coupling": "scale_invariant"}, id="am_adamw-scale_invariant"),
        pytest.param("adam_cm", {"synced": False}, id="adam_cm-unsynced"),
        pytest.param("adam_cm", {"topc": 0}, id="adam_cm-topc0"),
        pytest.param("sam", {"base": "adamw", "lr": 1e-2}, id="sam-adamw"),
    ]
    return variants


VARIANTS = _variants()


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_loss_goes_down_on_a_small_problem(name, overrides, device):
    model, loss_fn = regression_problem(device=device)
    losses = train(model, build_optimizer(name, model.parameters(), **overrides), loss_fn, 60)
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_step_without_gradients_is_a_no_op(name, overrides, device):
    model, _ = regression_problem(device=device)
    optimizer = build_optimizer(name, model.parameters(), **overrides)
    before = copy.deepcopy(model.state_dict())
    optimizer.step(lambda: torch.tensor(0.0))  # a closure that computes no gradient
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert len(optimizer.state) == 0


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_param_group_with_tiny_lr_does_not_move(name, overrides, device):
    model, loss_fn = regression_problem(device=device)
    first, second = model[0], model[2]
    optimizer = build_optimizer(
        name,
        [{"params": first.parameters()}, {"params": second.parameters(), "lr": 1e-12}],
        **overrides,
    )
    frozen = [p.detach().clone() for p in second.parameters()]
    moving = [p.detach().clone() for p in first.parameters()]
    train(model, optimizer, loss_fn, 5)
    for p, p0 in zip(second.parameters(), frozen, strict=True):
        torch.testing.assert_close(p, p0, atol=1e-9, rtol=0)
    assert any(not torch.allclose(p, p0) for p, p0 in zip(first.parameters(), moving, strict=True))


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_state_dict_round_trip_gives_identical_trajectory(name, overrides, device):
    model, loss_fn = regression_problem(device=device)
    optimizer = build_optimizer(name, model.parameters(), **overrides)
    train(model, optimizer, loss_fn, 4)
    saved_model, saved_optimizer = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(optimizer.state_dict()),
    )
    train(model, optimizer, loss_fn, 4)

    resumed, _ = regression_problem(
        device=device, seed=1
    )  # other weights: all must come from the save
    resumed.load_state_dict(saved_model)
    resumed_optimizer = build_optimizer(name, resumed.parameters(), **overrides)
    resumed_optimizer.load_state_dict(saved_optimizer)
    train(resumed, resumed_optimizer, loss_fn, 4)
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_deepcopy_continues_the_same_trajectory(name, overrides, device):
    model, loss_fn = regression_problem(device=device)
    optimizer = build_optimizer(name, model.parameters(), **overrides)
    train(model, optimizer, loss_fn, 3)
    twin_model, twin_optimizer = copy.deepcopy((model, optimizer))
    train(model, optimizer, loss_fn, 3)
    train(twin_model, twin_optimizer, loss_fn, 3)
    for p, q in zip(model.parameters(), twin_model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_state_holds_tensors_only(name, overrides):
    model, loss_fn = regression_problem()
    optimizer = build_optimizer(name, model.parameters(), **overrides)
    train(model, optimizer, loss_fn, 3)
    for state in optimizer.state_dict()["state"].values():
        for key, value in state.items():
            assert isinstance(value, torch.Tensor), key


INVALID_ARGUMENTS = [
    ("sgd", {"lr": -1.0}, "learning rate"),
    ("am_sgd", {"lr": -1.0}, "learning rate"),
    ("am_sgd", {"lam": -0.1}, "lam"),
    ("am_sgd", {"beta_max": 1.0}, "beta_max"),
    ("am_sgd", {"weight_decay": -1.0}, "weight_decay"),
    ("am_sgd", {"granularity": "layer"}, "granularity"),
    ("am_sgd", {"fixed_beta": 2.0}, "fixed_beta"),
    ("am_adamw", {"betas": (1.0, 0.999)}, "beta parameter at index 0"),
    ("am_adamw", {"betas": (0.9, -0.1)}, "beta parameter at index 1"),
    ("am_adamw", {"eps": -1.0}, "epsilon"),
    ("am_adamw", {"lam": -1.0}, "lam"),
    ("am_adamw", {"coupling": "loose"}, "coupling"),
    ("adam_cm", {"topc": -1}, "topc"),
    ("adam_cm", {"topc": 2.5}, "topc"),
    ("adam_cm", {"decay": 1.5}, "decay"),
    ("adam_cm", {"lr": -1e-3}, "learning rate"),
    ("adam_cg", {"topc": -2}, "topc"),
    ("adam_cg", {"decay": -0.1}, "decay"),
    ("sam", {"rho": -0.1}, "rho"),
    ("sam", {"base": "nonexistent"}, "nonexistent"),
]


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [pytest.param(*case, id=f"{case[0]}-{next(iter(case[1]))}") for case in INVALID_ARGUMENTS],
)
def test_invalid_argument_raises_value_error_naming_it(name, overrides, message):
    model, _ = regression_problem()
    with pytest.raises(ValueError, match=message):
        build_optimizer(name, model.parameters(), **overrides)


def test_unknown_optimizer_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as error:
        get_optimizer("adamm")
    for name in ("sgd", "am_sgd", "am_adamw", "adam_cm", "adam_cg", "sam"):
        assert name in str(error.value)


def test_sam_step_without_closure_raises():
    model, _ = regression_problem()
    with pytest.raises(RuntimeError, match="closure"):
        build_optimizer("sam", model.parameters()).step()


@pytest.mark.parametrize(
    "spec", [spec for spec in OPTIMIZERS if spec.reduces_to], ids=lambda spec: spec.name
)
def test_reduction_matches_its_torch_baseline_in_float64(spec):
    reduction = spec.reduces_to
    model, loss_fn = regression_problem(dtype=torch.float64)
    twin = copy.deepcopy(model)
    optimizer = spec.build(model.parameters(), **{**reduction.settings, "lr": 0.03})
    baseline = get_optimizer(reduction.baseline).build(
        twin.parameters(), **{**reduction.baseline_settings, "lr": 0.03}
    )
    closure, baseline_closure = (
        make_closure(model, optimizer, loss_fn),
        make_closure(twin, baseline, loss_fn),
    )
    for _ in range(10):
        optimizer.step(closure)
        baseline.step(baseline_closure)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec", list(OPTIMIZERS), ids=lambda spec: spec.name)
def test_registry_state_bytes_match_the_state_an_optimizer_holds(spec):
    model, loss_fn = regression_problem()
    optimizer = spec.build(model.parameters())
    train(model, optimizer, loss_fn, 2)
    n_params = sum(p.numel() for p in model.parameters())
    held = sum(  # the tensors shaped like the parameter, or a stack of such (the buffers)
        value.numel() * value.element_size()
        for p in model.parameters()
        for value in optimizer.state[p].values()
        if value.shape == p.shape or value.shape[1:] == p.shape
    )
    assert held / n_params == pytest.approx(spec.state_bytes_per_param())
