"""The choice of implementation of the memory optimizers, and what their compiled steps share.

Every memory optimizer has three implementations of the same math, picked by its ``impl``
argument:

* ``"forloop"``: one tensor at a time, eager (the float64 reference of the parity tests);
* ``"foreach"``: torch's multi-tensor kernels, eager;
* ``"compiled"``: on CPU, memtune's C kernels (:mod:`memtune.optimizers.cpu_kernels`: the same
  math, one pass per tensor per phase, built once per machine); elsewhere, and on CPU where
  those cannot be built, each optimizer's graph cores compiled by ``torch.compile`` (inductor)
  through :func:`compiled`, one graph per tensor shape. A step is memory-bound, so what counts
  is how often each full-size array is read and written; inductor fuses the chain of
  elementwise ops and reductions of one tensor into a few loops, where eager code writes a
  temporary after every op. The cores and the paths that run them are in
  :mod:`memtune.optimizers.am_sgd_compiled`, :mod:`memtune.optimizers.am_adamw_compiled` and
  :mod:`memtune.optimizers._priority_buffer_compiled` (Adam+CM and Adam+CG).

Hyperparameters enter the graphs as 0-d tensors (see :class:`Scalars`), never as Python
numbers: dynamo would specialize on a number and compile again for every learning rate of a
sweep. What stays static is structural (the coupling, whether weight decay is on), so a study
compiles at most a few graphs per tensor shape. The 0-d tensors live on the parameters' device
and change with ``fill_``, so a step needs no host sync on CUDA.

Compiling with inductor costs seconds per process (it keeps its cache on disk; see
:func:`memtune.tuning.cluster.configure_ray_environment`), so without the CPU kernels the
default picks it only for a group of at least :data:`COMPILE_MIN_NUMEL` elements, where it
pays for itself within a trial; the CPU kernels cost about a second once per machine and are
the default on CPU at every size (``bench/optimizer_step.py`` measures both).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from memtune.optimizers import cpu_kernels

__all__ = [
    "COMPILE_MIN_NUMEL",
    "IMPLS",
    "SCALARS",
    "Scalars",
    "compile_unavailable",
    "compiled",
    "flat",
    "flat_sum",
    "resolve_impl",
]

log = logging.getLogger(__name__)

IMPLS = ("compiled", "foreach", "forloop")

# Below this many elements per param group the default does not compile: a smoke-size trial
# ends before the compile time is paid back (bench/optimizer_step.py, --width 64 vs 2048).
COMPILE_MIN_NUMEL = 1_000_000


@functools.cache
def compile_unavailable(device_type: str) -> str | None:
    """Why ``torch.compile`` cannot run a step on this device type, or ``None`` when it can.

    Probed once per process with a tiny function; a failure is logged once, and the
    optimizers fall back to their eager path.
    """
    reason = None
    if device_type not in ("cpu", "cuda"):
        reason = f"no inductor backend for device {device_type!r}"
    else:
        try:
            probe = torch.compile(lambda t: t * 2 + 1, fullgraph=True, dynamic=False)
            probe(torch.ones(8, device=device_type))
        except Exception as error:  # no C++ compiler, no triton, a torch without inductor
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if reason is not None:
        log.warning("memtune: compiled optimizer steps unavailable (%s); using eager", reason)
    return reason


def resolve_impl(impl: str | None, foreach: bool | None, params: Sequence[Tensor]) -> str:
    """The implementation one group's step runs.

    An explicit ``impl`` wins, then torch's ``foreach`` flag. By default: compiled on CPU
    wherever memtune's CPU kernels take the tensors (any size: they are built once per machine
    in about a second, and ran faster than the eager paths from 60K parameters up), compiled
    for a large group on a device where torch.compile works, else torch's own default (foreach
    on CUDA, the for-loop elsewhere, where it keeps each tensor in cache through its update).
    A ``"compiled"`` that can run neither falls back to that default (logged once).
    """
    if impl in ("foreach", "forloop"):
        return impl
    if impl is None and foreach is not None:
        return "foreach" if foreach else "forloop"
    eager = "foreach" if params and all(p.is_cuda for p in params) else "forloop"
    # The compiled cores see every tensor flattened (a view): a strided one keeps the eager path.
    dense = bool(params) and all(
        p.is_contiguous() and (p.grad is None or p.grad.is_contiguous()) for p in params
    )
    on_cpu_kernels = dense and params[0].device.type == "cpu" and cpu_kernels.supports(params)
    if impl is None:
        if on_cpu_kernels:
            return "compiled"
        if sum(p.numel() for p in params) < COMPILE_MIN_NUMEL:
            return eager
        impl = "compiled"
    if impl == "compiled" and params:
        if on_cpu_kernels:
            return impl  # no inductor needed (memtune.optimizers.cpu_kernels)
        if not dense or compile_unavailable(params[0].device.type):
            return eager
    return impl


# Tensors of at least this many elements get a graph of their own shape (static shapes ran
# ~45% faster than one dynamic-length graph on CPU); smaller ones share one dynamic graph.
STATIC_MIN_NUMEL = 1 << 16


def flat(tensor: Tensor, leading: int = 0) -> Tensor:
    """The tensor as the compiled graphs take it: a large one detached in its own shape, a
    small one as a 1-d view (2-d for a buffer of ``leading`` snapshots) with its length
    dynamic, so that the many small shapes of a model (biases, norms) share one graph.
    Dynamo specializes size 1, which costs one more graph."""
    if tensor.numel() >= STATIC_MIN_NUMEL * max(leading, 1):
        return tensor.detach()
    view = tensor.detach().view(leading, -1) if leading else tensor.detach().view(-1)
    torch._dynamo.maybe_mark_dynamic(view, view.dim() - 1)
    return view


class Scalars:
    """0-d tensors that carry hyperparameters into compiled graphs without recompiling.

    ``scalars("lr", 1e-3, like=p)`` returns the same tensor for the same name, device and
    dtype, refilled (``fill_``: an async kernel on CUDA) only when the value changed. The dtype
    is float64 for float64 parameters and float32 otherwise (so that beta2 = 0.999 survives
    bf16 parameters). Refilling a tensor that a queued kernel still reads is safe: kernels run
    in stream order on CUDA and at once on CPU.
    """

    def __init__(self) -> None:
        self._tensors: dict[tuple[str, torch.device, torch.dtype], tuple[float, Tensor]] = {}

    def __call__(self, name: str, value: float, like: Tensor) -> Tensor:
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        key = (name, like.device, dtype)
        held = self._tensors.get(key)
        if held is None:
            tensor = torch.tensor(value, dtype=dtype, device=like.device)
        else:
            old, tensor = held
            if old != value:
                tensor.fill_(value)
        self._tensors[key] = (value, tensor)
        return tensor


SCALARS = Scalars()  # one per process: the compiled graphs see the same 0-d tensors each step


def flat_sum(t: Tensor) -> Tensor:
    """The sum of all elements, accumulated in float64 on CPU: inductor's CPU code sums
    float32 through a cascade helper that ran at about half the speed of a float64
    accumulator (docs/benchmarks.md)."""
    wide = t.dtype == torch.float64 or t.device.type == "cpu"
    return torch.sum(t, dtype=torch.float64 if wide else torch.float32)


@functools.cache
def compiled(core: Callable[..., Any]) -> Callable[..., Any]:
    """The compiled version of one graph core (compiled lazily, at its first call; one per
    core and process).

    The callers pass :func:`flat` views, so the length of a tensor is the only shape, and it
    is dynamic from the start.

    A process may need more graphs per core than dynamo's default limit of 8 (float32 and
    float64, weight decay on and off, size 1 and the rest), and ``fullgraph=True`` turns
    hitting it into an error, so the limit is raised (never lowered) for the process.
    """
    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, 64)
    return torch.compile(core, fullgraph=True)
