"""The compiled steps' C kernels on CPU (memtune.optimizers.cpu_kernels): built once, the same
math as the reference, NaN kept, and a clean fallback where they cannot be built."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from memtune.optimizers import build_optimizer, cpu_kernels
from tests.optimizers.test_implementations import MEMORY, TOLERANCE

OVERRIDES = {
    "am_sgd": {"lr": 0.1, "weight_decay": 1e-3},
    "am_adamw": {"lr": 1e-2, "weight_decay": 0.1},
    "adam_cm": {"lr": 1e-2, "weight_decay": 1e-2},
    "adam_cg": {"lr": 1e-2, "weight_decay": 1e-2, "topc": 3},
}


@pytest.fixture
def fresh_library():
    """The process's library forgotten before and after the test (it is cached per process)."""
    cpu_kernels._library.cache_clear()
    yield
    cpu_kernels._library.cache_clear()


def _steps(name, impl, dtype, steps=6, nan_at=None):
    """``steps`` steps over a tensor big enough for the kernels' threads (>= PARALLEL_MIN
    elements) and a small one, with the same seeded gradients for every implementation."""
    generator = torch.Generator().manual_seed(0)

    def draw(*shape: int) -> torch.Tensor:  # the same numbers in every dtype
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    params = [nn.Parameter(draw(160, 256)), nn.Parameter(draw(160))]
    optimizer = build_optimizer(name, params, impl=impl, **OVERRIDES[name])
    for step in range(steps):
        for p in params:
            p.grad = draw(*p.shape)
        if step == nan_at:
            params[0].grad[3, 7] = float("nan")
        optimizer.step()
    return params, optimizer


@pytest.fixture
def two_threads():
    """At least two threads for the kernels (they take torch's count), whatever the test
    process was given: ``make test``'s processes get one core each on 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("name", MEMORY)
def test_kernels_on_threads_match_the_float64_forloop_over_every_state_entry(name):
    reference, reference_optimizer = _steps(name, "forloop", torch.float64)
    params, optimizer = _steps(name, "compiled", torch.float64)
    assert optimizer.last_impl == "compiled"
    for p, q in zip(reference, params, strict=True):
        torch.testing.assert_close(q, p, **TOLERANCE)
        for key, value in reference_optimizer.state[p].items():
            torch.testing.assert_close(optimizer.state[q][key], value, **TOLERANCE, msg=key)


@pytest.mark.parametrize("name", MEMORY)
def test_float32_kernels_stay_within_float32_rounding_of_the_reference(name):
    reference, _ = _steps(name, "forloop", torch.float64)
    params, _ = _steps(name, "compiled", torch.float32)
    for p, q in zip(reference, params, strict=True):
        torch.testing.assert_close(q.double(), p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MEMORY)
def test_a_nan_gradient_reaches_the_same_parameters_as_in_the_forloop(name):
    """The kernels are built without finite-math flags: a NaN propagates as it does in torch,
    which is how a study sees a divergence."""
    reference, _ = _steps(name, "forloop", torch.float32, nan_at=3)
    params, _ = _steps(name, "compiled", torch.float32, nan_at=3)
    assert torch.isnan(reference[0]).any()
    for p, q in zip(reference, params, strict=True):
        assert torch.equal(torch.isnan(q), torch.isnan(p))


def test_kernel_steps_compile_no_graph():
    counters = torch._dynamo.utils.counters
    counters.clear()
    for name in MEMORY:
        _, optimizer = _steps(name, "compiled", torch.float32)
        assert optimizer.last_impl == "compiled"
    assert counters["stats"]["unique_graphs"] == 0


def test_tensors_the_kernels_do_not_take_are_refused():
    dense = torch.zeros(4)
    assert cpu_kernels.supports([dense], [torch.zeros(4, dtype=torch.float64)]) is False
    assert cpu_kernels.supports([torch.zeros(4, dtype=torch.bfloat16)]) is False
    assert cpu_kernels.supports([torch.zeros(4, 6).t()]) is False
    assert cpu_kernels.supports([torch.empty(4, device="meta")]) is False
    assert cpu_kernels.supports([dense]) is True
    with cpu_kernels.disabled():
        assert cpu_kernels.supports([dense]) is False


def test_the_library_is_built_once_per_machine_and_flags(tmp_path, monkeypatch, fresh_library):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiler = cpu_kernels._compiler()
    first = cpu_kernels._build(compiler)
    assert first.is_relative_to(tmp_path) and first.exists()
    built_at = first.stat().st_mtime_ns
    assert cpu_kernels._build(compiler) == first
    assert first.stat().st_mtime_ns == built_at  # loaded, not built again
    monkeypatch.setattr(cpu_kernels, "FLAGS", [*cpu_kernels.FLAGS, "-DMEMTUNE_OTHER_BUILD"])
    assert cpu_kernels._build(compiler) != first  # other flags, another library
    assert cpu_kernels.kernels_unavailable() is None  # and the process loads it


def test_without_a_compiler_the_kernels_say_why_once_and_steps_still_run(
    monkeypatch, caplog, fresh_library
):
    monkeypatch.setenv("CC", "/nonexistent/cc")  # $CC, when set, is the only one tried
    with caplog.at_level(logging.WARNING, logger="memtune.optimizers.cpu_kernels"):
        assert "no C compiler" in cpu_kernels.kernels_unavailable()
        assert "no C compiler" in cpu_kernels.kernels_unavailable()
    assert len(caplog.records) == 1
    assert cpu_kernels.supports([torch.zeros(4)]) is False
    # The for-loop runs where the kernels cannot (and inductor's graphs where they compile).
    params, optimizer = _steps("am_adamw", "forloop", torch.float32, steps=2)
    assert optimizer.last_impl == "forloop" and torch.isfinite(params[0]).all()
