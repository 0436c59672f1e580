"""The three step implementations (for-loop, foreach, compiled) compute the same thing.

The for-loop in float64 is the reference. Tolerance: rtol 1e-10 / atol 1e-12 over 8 steps (the
compiled graphs sum in another order, and turn a few divisions into products with a
reciprocal; the differences measured are below 2e-13). On CPU the compiled implementation
runs memtune's C kernels; "inductor" is the same implementation with those switched off, so
both of its CPU backends are held to the reference.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch
from torch import nn

from memtune.optimizers import build_optimizer, cpu_kernels
from memtune.optimizers import compiled as compiled_module
from memtune.optimizers.compiled import COMPILE_MIN_NUMEL, resolve_impl
from memtune.optimizers.contract import regression_problem, train
from memtune.optimizers.options import AMAdamWOptions

MEMORY = ("am_sgd", "am_adamw", "adam_cm", "adam_cg")
CASES = [
    ("am_sgd", {}),
    ("am_sgd", {"granularity": "tensor", "weight_decay": 1e-3}),
    ("am_sgd", {"fixed_beta": 0.5, "weight_decay": 1e-3}),
    ("am_sgd", {"lam": 0.0, "fixed_beta": 0.0, "weight_decay": 1e-3}),  # w = 1: momentum 0
    ("am_adamw", {"lr": 1e-2}),
    ("am_adamw", {"lr": 1e-2, "coupling": "scale_invariant", "weight_decay": 0.1}),
    ("am_adamw", {"lr": 1e-2, "fixed_beta": 0.5, "weight_decay": 0.0}),
    ("adam_cm", {"lr": 1e-2}),
    ("adam_cm", {"lr": 1e-2, "synced": False, "topc": 3, "weight_decay": 1e-2}),
    ("adam_cm", {"lr": 1e-2, "topc": 0}),
    ("adam_cg", {"lr": 1e-2}),
    ("adam_cg", {"lr": 1e-2, "synced": False, "topc": 3, "weight_decay": 1e-2}),
    ("adam_cg", {"lr": 1e-2, "topc": 0, "weight_decay": 1e-3}),
]
TOLERANCE = dict(rtol=1e-10, atol=1e-12)
IMPLS = [
    pytest.param("foreach", id="foreach"),
    pytest.param("compiled", id="compiled"),
    pytest.param("inductor", id="inductor", marks=pytest.mark.slow),
]


def _backend(impl: str) -> tuple[str, contextlib.AbstractContextManager]:
    """The impl the optimizer is built with, and the block its steps run in."""
    if impl == "inductor":
        return "compiled", cpu_kernels.disabled()
    return impl, contextlib.nullcontext()


def _case_id(name: str, overrides: dict) -> str:
    return "-".join([name, *map(str, overrides.values())])


def _run(name, overrides, impl, steps, device="cpu", state=None):
    impl, block = _backend(impl)
    model, loss_fn = regression_problem(dtype=torch.float64, device=device)
    optimizer = build_optimizer(name, model.parameters(), impl=impl, **overrides)
    if state is not None:
        model.load_state_dict(state[0])
        optimizer.load_state_dict(state[1])
    with block:
        train(model, optimizer, loss_fn, steps)
    return model, optimizer


def _assert_same(reference, other):
    (model, optimizer), (other_model, other_optimizer) = reference, other
    for p, q in zip(model.parameters(), other_model.parameters(), strict=True):
        torch.testing.assert_close(p, q.cpu(), **TOLERANCE)  # the reference runs on the CPU
        state, other_state = optimizer.state[p], other_optimizer.state[q]
        assert state.keys() == other_state.keys()
        for key in state:
            torch.testing.assert_close(
                state[key].cpu(), other_state[key].cpu(), **TOLERANCE, msg=key
            )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("name", "overrides"), [pytest.param(n, o, id=_case_id(n, o)) for n, o in CASES]
)
def test_implementation_matches_the_float64_forloop_over_every_state_entry(
    name, overrides, impl, device
):
    if impl == "inductor" and device == "cuda":
        pytest.skip("the CPU kernels are CPU only: on CUDA compiled is inductor")
    reference = _run(name, overrides, "forloop", 8)
    other = _run(name, overrides, impl, 8, device=device)
    assert other[1].last_impl == _backend(impl)[0]  # it really ran, no silent fallback
    _assert_same(reference, other)


def _run_with_a_lagging_tensor(name, impl, steps=8):
    """Steps where the first layer's weight has no gradient on steps 2 and 5: it falls behind the
    other tensors, whose step counts then differ from its own."""
    impl, block = _backend(impl)
    model, loss_fn = regression_problem(dtype=torch.float64)
    optimizer = build_optimizer(name, model.parameters(), impl=impl, lr=1e-2)
    with block:
        for step in range(steps):
            optimizer.zero_grad()
            loss_fn(model).backward()
            if step in (2, 5):
                model[0].weight.grad = None
            optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("impl", ["compiled", pytest.param("inductor", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", MEMORY)
def test_tensors_at_different_steps_match_the_forloop(name, impl):
    """The compiled graphs for a whole group need one step count, the CPU kernels take one per
    tensor; a group whose tensors are at different steps still equals the float64 for-loop."""
    reference = _run_with_a_lagging_tensor(name, "forloop")
    compiled_run = _run_with_a_lagging_tensor(name, impl)
    assert compiled_run[1].last_impl == "compiled"
    _assert_same(reference, compiled_run)


@pytest.mark.slow
@pytest.mark.parametrize("name", MEMORY)
def test_state_dict_moves_between_implementations_mid_run(name):
    """3 steps for-loop, then 3 each compiled (the CPU kernels), inductor and foreach, every
    one from the state_dict of the one before: as 12 for-loop steps."""
    overrides = {"lr": 1e-2, "weight_decay": 1e-3}
    reference = _run(name, overrides, "forloop", 12)
    model, optimizer = _run(name, overrides, "forloop", 3)
    for impl in ("compiled", "inductor", "foreach"):
        state = (model.state_dict(), optimizer.state_dict())
        model, optimizer = _run(name, overrides, impl, 3, state=state)
        assert optimizer.last_impl == _backend(impl)[0]
    _assert_same(reference, (model, optimizer))


@pytest.mark.slow
@pytest.mark.parametrize("name", MEMORY)
def test_compiled_step_does_not_recompile_when_hyperparameters_change(name, device):
    """A sweep of 5 learning rates (and other scalars) over 3 tensor shapes compiles as many
    graphs as its first learning rate did: the scalars are 0-d tensors, not guards."""
    counters = torch._dynamo.utils.counters

    def sweep(lrs):
        for lr in lrs:
            torch.manual_seed(0)
            params = [
                nn.Parameter(torch.randn(shape, device=device))
                for shape in ((5, 7), (5,), (3, 4, 2))
            ]
            extra = {"lam": lr * 10} if name.startswith("am_") else {"betas": (0.9, 1 - lr)}
            optimizer = build_optimizer(
                name, params, impl="compiled", lr=lr, weight_decay=lr, **extra
            )
            for _ in range(3):
                for p in params:
                    p.grad = torch.randn_like(p)
                optimizer.step()
        return counters["stats"]["unique_graphs"]

    torch._dynamo.reset()
    compiled_module.compiled.cache_clear()
    compiled_module.compile_unavailable(device)  # its probe graph is not the optimizer's
    counters.clear()
    with cpu_kernels.disabled():  # inductor's graphs, as on CUDA
        first = sweep([1e-3])
        assert first > 0
        assert sweep([3e-3, 1e-2, 3e-2, 1e-1]) == first


def _meta(numel: int) -> list[torch.Tensor]:
    return [torch.empty(numel, device="meta")]


def test_default_compiles_a_large_group_only(monkeypatch):
    monkeypatch.setattr(compiled_module, "compile_unavailable", lambda device_type: None)
    assert resolve_impl(None, None, _meta(COMPILE_MIN_NUMEL)) == "compiled"
    assert resolve_impl(None, None, _meta(COMPILE_MIN_NUMEL - 1)) == "forloop"
    assert resolve_impl(None, True, _meta(COMPILE_MIN_NUMEL)) == "foreach"  # torch's flag
    assert resolve_impl("forloop", True, _meta(10)) == "forloop"  # impl wins


def test_compiled_falls_back_to_eager_with_one_logged_line(caplog):
    compiled_module.compile_unavailable.cache_clear()
    with caplog.at_level(logging.WARNING, logger="memtune.optimizers.compiled"):
        assert resolve_impl("compiled", None, _meta(10)) == "forloop"
        assert resolve_impl("compiled", None, _meta(10)) == "forloop"
    assert len(caplog.records) == 1
    assert "unavailable" in caplog.records[0].getMessage()
    assert "meta" in caplog.records[0].getMessage()


def test_compiled_needs_dense_tensors():
    strided = torch.empty(4, 6).t()
    assert resolve_impl("compiled", None, [strided]) == "forloop"


@pytest.mark.parametrize("name", MEMORY)
def test_unknown_impl_is_refused(name):
    with pytest.raises(ValueError, match="impl"):
        build_optimizer(name, [nn.Parameter(torch.zeros(2))], impl="fast")


def test_options_model_names_the_choices():
    with pytest.raises(ValueError, match="compiled"):
        AMAdamWOptions(impl="fast")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", ["foreach", "compiled"])
@pytest.mark.parametrize(
    ("name", "overrides"), [pytest.param(n, o, id=_case_id(n, o)) for n, o in CASES]
)
def test_cuda_step_makes_no_host_sync(name, overrides, impl):
    """After the first steps (state made, graphs compiled), a step on CUDA never waits for the
    device: beta, the slot decision and the scalars stay on it. CUDA's sync debug mode turns
    any synchronizing call inside ``step()`` into an error."""
    model, loss_fn = regression_problem(dtype=torch.float32, device="cuda")
    optimizer = build_optimizer(name, model.parameters(), impl=impl, **overrides)
    train(model, optimizer, loss_fn, 3)
    for _ in range(3):
        optimizer.zero_grad()
        loss_fn(model).backward()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert optimizer.last_impl == impl
    assert all(torch.isfinite(p).all() for p in model.parameters())
