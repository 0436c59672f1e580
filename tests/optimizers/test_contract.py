"""Contract tests over every registry entry: what any optimizer of memtune must do."""

from __future__ import annotations

import copy

import pytest
import torch

from memtune.optimizers import OPTIMIZERS, UnknownNameError, build_optimizer, get_optimizer
from memtune.optimizers.contract import CHECKS, make_closure, regression_problem


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


@pytest.mark.parametrize("check", list(CHECKS), ids=str)
@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_optimizer_contract(check, name, overrides, device):
    """Every check of memtune.optimizers.contract, over every registered optimizer (plugins
    included) and its variants: loss goes down, a step without gradients is a no-op, a tiny-lr
    group does not move, state_dict and deepcopy continue the same trajectory, state holds
    tensors only, and the registry's state bytes are what the optimizer holds."""
    CHECKS[check](name, overrides, device)


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
