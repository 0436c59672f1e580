"""Compiled step cores of the memory optimizers, and the choice of implementation.

Every memory optimizer has three implementations of the same math, picked by its ``impl``
argument:

* ``"forloop"``: one tensor at a time, eager (the float64 reference of the parity tests);
* ``"foreach"``: torch's multi-tensor kernels, eager;
* ``"compiled"``: on CPU, memtune's C kernels (:mod:`memtune.optimizers.cpu_kernels`: the same
  math, one pass per tensor per phase, built once per machine); elsewhere, and on CPU where
  those cannot be built, the functions below compiled by ``torch.compile`` (inductor), one
  graph per tensor shape. A step is memory-bound, so what counts is how often each full-size
  array is read and written; inductor fuses the chain of elementwise ops and reductions of one
  tensor into a few loops, where eager code writes a temporary after every op. On CPU, AM-SGD's
  reduction is one graph for the whole group and its update runs as torch's fused SGD kernel
  (the update is SGD's with momentum = dampening = 1 - w, and reading w there costs no sync),
  with either backend; off the CPU its whole step (sums, beta, update) is one graph per group.

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
    "am_sgd_fraction",
    "compile_unavailable",
    "compiled",
    "flat",
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


def _flat_sum(t: Tensor) -> Tensor:
    """The sum of all elements, accumulated in float64 on CPU: inductor's CPU code sums
    float32 through a cascade helper that ran at about half the speed of a float64
    accumulator (docs/benchmarks.md)."""
    wide = t.dtype == torch.float64 or t.device.type == "cpu"
    return torch.sum(t, dtype=torch.float64 if wide else torch.float32)


# --------------------------------------------------------------------------------------------
# AM-SGD: a reduction pass (the three inner products), then the update pass.
# --------------------------------------------------------------------------------------------


def am_sgd_dots(
    param: Tensor, grad: Tensor, buffer: Tensor, wd: Tensor, *, decayed: bool
) -> Tensor:
    """[<g, g>, <g, d>, <d, d>] of one tensor, with g = grad + wd x (coupled L2)."""
    g = grad + wd * param if decayed else grad
    return torch.stack([_flat_sum(g * g), _flat_sum(g * buffer), _flat_sum(buffer * buffer)])


def am_sgd_group_dots(
    params: list[Tensor], grads: list[Tensor], buffers: list[Tensor], wd: Tensor, *, decayed: bool
) -> Tensor:
    """The rows [<g, g>, <g, d>, <d, d>] of every tensor of a group, from one graph: one call
    per step instead of one per tensor (~40 us each on CPU, as much as a bias's sums)."""
    return torch.stack(
        [
            am_sgd_dots(params[i], grads[i], buffers[i], wd, decayed=decayed)
            for i in range(len(params))
        ]
    )


def am_sgd_fraction(G: Any, X: Any, D: Any, gap: Any, *, lr: Any, lam: Any) -> tuple:
    """(N, Dn) of AM-SGD's beta = N / Dn from the three sums and the gap eta_prev * X: Python
    floats, tensors, or 0-d tensors inside a graph (every path of memtune.optimizers.am_sgd and am_adamw)."""
    numerator = (1 + lam) * gap / lr - (X + lam * D - G - lam * X)
    return numerator, D - 2 * X + G


def am_sgd_group_step(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    wd: Tensor,
    lr: Tensor,
    prev_lr: Tensor,
    lam: Tensor,
    beta_max: Tensor,
    *,
    decayed: bool,
    group_beta: bool,
) -> Tensor:
    """The whole AM-SGD step of a group off the CPU, in one graph: the three sums of every
    tensor, beta (one for the group, or one per tensor) and the update, for tensors that all
    have a buffer and share eta_prev. Returns beta (0-d, or one per tensor).

    On CUDA this is one call a step, with beta never leaving the device. The path it replaced
    there (this module's sums graph, ~40 eager scalar ops for beta, an update graph per
    tensor) was slower than foreach (bench/optimizer_step.py on an H200: docs/benchmarks.md)."""
    gs = [grads[i] + wd * params[i] if decayed else grads[i] for i in range(len(params))]
    rows = torch.stack(
        [
            torch.stack([_flat_sum(g * g), _flat_sum(g * d), _flat_sum(d * d)])
            for g, d in zip(gs, buffers, strict=True)
        ]
    ).to(lr.dtype)  # float32 for bf16 parameters (the scalars' dtype), else theirs
    G, X, D = rows.unbind(1)
    if group_beta:
        G, X, D = G.sum(), X.sum(), D.sum()
    numerator, denominator = am_sgd_fraction(G, X, D, prev_lr * X, lr=lr, lam=lam)
    ratio = torch.where(denominator > 0, numerator / denominator, torch.zeros_like(numerator))
    beta = torch.minimum(ratio.clamp(min=0), beta_max)
    weight = (1 - beta) / (1 + lam)
    for i in range(len(params)):
        w = weight if group_beta else weight[i]
        buffers[i].add_((gs[i] - buffers[i]) * w)
        params[i].sub_(buffers[i] * lr)
    return beta


def am_sgd_update(
    param: Tensor,
    grad: Tensor,
    buffer: Tensor,
    weight: Tensor,
    lr: Tensor,
    wd: Tensor,
    *,
    decayed: bool,
) -> None:
    """d <- d + weight (g - d);  x <- x - lr d."""
    g = grad + wd * param if decayed else grad
    buffer.add_((g - buffer) * weight)
    param.sub_(buffer * lr)


# --------------------------------------------------------------------------------------------
# AM-AdamW: a reduction pass for beta, then the update pass (beta is per tensor).
#
# Two graphs, not one: inductor's CPU code for one graph holding both the reductions and the
# stores ran at about twice the time of the two graphs together (docs/benchmarks.md). The
# reduction pass recomputes v's update instead of storing it (cheaper than one more full-size
# write and read).
# --------------------------------------------------------------------------------------------


def _am_adamw_metric(
    v: Tensor,
    beta_product: Tensor,
    beta1_max: Tensor,
    bc2_sqrt: Tensor,
    eps: Tensor,
    lam: Tensor,
    coupling: str,
) -> tuple[Tensor, Tensor, Tensor | Tensor]:
    """(M, 1 / P, damping) from the updated second moment, with one division per element:
    M = 1 / (P (1 + lambda P)), so 1 / P = (1 + lambda P) M and 1 / (1 + lambda P) = P M."""
    bias_correction1 = 1 - beta1_max * beta_product
    p_cond = torch.sqrt(v) * (bias_correction1 / bc2_sqrt) + bias_correction1 * eps
    if coupling == "paper":
        metric = 1 / (p_cond * (1 + lam * p_cond))
        return metric, (1 + lam * p_cond) * metric, p_cond * metric
    inverse = 1 / p_cond
    return inverse / (1 + lam), inverse, 1 / (1 + lam)


def am_adamw_beta(
    x: Tensor,
    g: Tensor,
    d: Tensor,
    v: Tensor,
    beta_product: Tensor,
    first: Tensor,
    prev_lr: Tensor,
    lr: Tensor,
    beta1_max: Tensor,
    beta2: Tensor,
    bc2_sqrt: Tensor,
    eps: Tensor,
    lam: Tensor,
    wd: Tensor,
    *,
    coupling: str,
    decayed: bool,
) -> Tensor:
    """The beta of one tensor (see :class:`memtune.optimizers.am_adamw.AMAdamW`), before any state
    changes; ``first`` is 1 on the tensor's first step (beta = beta1_max), else 0.

    N is linear in its five inner products, so it is one sum of their per-element combination.
    """
    v_new = v * beta2 + g * g * (1 - beta2)
    metric, inverse, damping = _am_adamw_metric(
        v_new, beta_product, beta1_max, bc2_sqrt, eps, lam, coupling
    )
    delta = d - g
    scaled = delta * metric
    pull = scaled * g + lam * (delta * damping * d if coupling == "paper" else scaled * d)
    gap = g * d * inverse
    if decayed:
        gap = gap + wd * g * x
    terms = (1 + wd * lr) * prev_lr / lr * gap - pull
    if decayed:
        terms = terms - wd * x * delta
    numerator = _flat_sum(terms)
    denominator = _flat_sum(scaled * delta)
    ratio = torch.where(denominator > 0, numerator / denominator, torch.zeros_like(numerator))
    beta = torch.where(first > 0, beta1_max, torch.minimum(ratio.clamp(min=0), beta1_max))
    return beta.to(x.dtype)


def am_adamw_update(
    x: Tensor,
    g: Tensor,
    d: Tensor,
    v: Tensor,
    beta_product: Tensor,
    beta: Tensor,
    lr: Tensor,
    beta1_max: Tensor,
    beta2: Tensor,
    bc2_sqrt: Tensor,
    eps: Tensor,
    lam: Tensor,
    wd: Tensor,
    *,
    coupling: str,
    decayed: bool,
) -> None:
    """v <- beta2 v + (1 - beta2) g^2;  d <- d + (1 - beta) damping (g - d);
    x <- (1 - lr wd) x - lr d / P.  (Pi <- Pi beta is the caller's: dynamo dropped that
    in-place update of a 0-d input, measured here, so it runs eagerly after the graph.)"""
    v.mul_(beta2).add_(g * g * (1 - beta2))
    _, inverse, damping = _am_adamw_metric(v, beta_product, beta1_max, bc2_sqrt, eps, lam, coupling)
    d.add_((g - d) * (damping * (1 - beta)))
    if decayed:
        x.mul_(1 - lr * wd)
    x.sub_(lr * d * inverse)


def am_adamw_group_betas(
    xs: list[Tensor], gs: list[Tensor], ds: list[Tensor], vs: list[Tensor], pis: list[Tensor],
    *scalars: Tensor, coupling: str, decayed: bool,
) -> Tensor:  # fmt: skip
    """:func:`am_adamw_beta` of every tensor of a group whose tensors share their step count and
    previous lr (``scalars`` as there, from ``first`` on), from one graph: one call a step."""
    static = {"coupling": coupling, "decayed": decayed}
    return torch.stack(
        [
            am_adamw_beta(xs[i], gs[i], ds[i], vs[i], pis[i], *scalars, **static)
            for i in range(len(xs))
        ]
    )


def am_adamw_group_update(
    xs: list[Tensor], gs: list[Tensor], ds: list[Tensor], vs: list[Tensor], pis: list[Tensor],
    betas: Tensor, *scalars: Tensor, coupling: str, decayed: bool,
) -> None:  # fmt: skip
    """:func:`am_adamw_update` of every tensor of such a group, from one graph."""
    static = {"coupling": coupling, "decayed": decayed}
    for i in range(len(xs)):
        am_adamw_update(xs[i], gs[i], ds[i], vs[i], pis[i], betas[i], *scalars, **static)


# --------------------------------------------------------------------------------------------
# Adam+CM and Adam+CG: the buffer's slot write fused with the Adam arithmetic of one tensor.
# --------------------------------------------------------------------------------------------


def _write_slot(
    buffer: Tensor,
    buffer_sum: Tensor,
    index: Tensor,
    replace: Tensor,
    value: Tensor,
    write: bool | None,
) -> None:
    """buffer[index] <- value if replace, keeping buffer_sum = buffer.sum(0).

    ``write`` is ``False`` when the host knows that nothing is replaced (CPU, where reading the
    decision is free): then neither the buffer nor the sum is touched. ``None`` decides on the
    device (CUDA: no sync).
    """
    if write is False:
        return
    old = buffer.index_select(0, index.reshape(1)).squeeze(0)
    new = torch.where(replace, value, old)
    buffer_sum.add_(new - old)
    buffer.index_copy_(0, index.reshape(1), new.unsqueeze(0))


def adam_cm_step(
    x: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    buffer: Tensor | None,
    buffer_sum: Tensor | None,
    index: Tensor | None,
    replace: Tensor | None,
    count: Tensor | None,
    lr: Tensor,
    beta1: Tensor,
    beta2: Tensor,
    eps: Tensor,
    wd: Tensor,
    step_size: Tensor,
    bc2_sqrt: Tensor,
    *,
    decayed: bool,
    write: bool | None,
) -> None:
    """One Adam+CM step of a tensor past its first (see :class:`memtune.optimizers.AdamCM`)."""
    if decayed:
        x.mul_(1 - lr * wd)
    m.add_((g - m) * (1 - beta1))
    u = m
    if buffer is not None:
        u = m + buffer_sum / count.clamp(min=1)
        _write_slot(buffer, buffer_sum, index, replace, m, write)
    v.mul_(beta2).add_(u * u * (1 - beta2))
    x.add_(step_size * u / (torch.sqrt(v) / bc2_sqrt + eps))


def adam_cg_step(
    x: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    buffer: Tensor | None,
    buffer_sum: Tensor | None,
    index: Tensor | None,
    replace: Tensor | None,
    count: Tensor | None,
    lr: Tensor,
    beta1: Tensor,
    beta2: Tensor,
    eps: Tensor,
    wd: Tensor,
    step_size: Tensor,
    bc2_sqrt: Tensor,
    *,
    decayed: bool,
    write: bool | None,
) -> None:
    """One Adam+CG step of a tensor (see :class:`memtune.optimizers.AdamCG`)."""
    u = g
    if buffer is not None:
        u = g + buffer_sum / count.clamp(min=1)
        _write_slot(buffer, buffer_sum, index, replace, g, write)
    if decayed:
        u = u + wd * x
    m.add_((u - m) * (1 - beta1))
    v.mul_(beta2).add_(u * u * (1 - beta2))
    x.add_(step_size * m / (torch.sqrt(v) / bc2_sqrt + eps))


def _group_of(core: Callable[..., None]) -> Callable[..., None]:
    """``core`` (adam_cm_step or adam_cg_step) over every tensor of a group whose tensors share
    their step count and slot decision (``synced``), in one graph: one call a step."""

    def group_step(
        xs: list[Tensor], gs: list[Tensor], ms: list[Tensor], vs: list[Tensor],
        buffers: list[Tensor], sums: list[Tensor], index: Tensor | None,
        replace: Tensor | None, count: Tensor | None, *scalars: Tensor,
        decayed: bool, write: bool | None,
    ) -> None:  # fmt: skip
        for i in range(len(xs)):
            buffer, buffer_sum = (buffers[i], sums[i]) if buffers else (None, None)
            core(xs[i], gs[i], ms[i], vs[i], buffer, buffer_sum, index, replace, count,
                 *scalars, decayed=decayed, write=write)  # fmt: skip

    group_step.__name__ = group_step.__qualname__ = core.__name__.replace("_step", "_group_step")
    return group_step


_CORES: dict[str, Callable[..., Any]] = {
    "am_sgd_group_dots": am_sgd_group_dots,
    "am_sgd_group_step": am_sgd_group_step,
    "am_sgd_update": am_sgd_update,
    "am_adamw_beta": am_adamw_beta,
    "am_adamw_update": am_adamw_update,
    "am_adamw_group_betas": am_adamw_group_betas,
    "am_adamw_group_update": am_adamw_group_update,
    "adam_cm_step": adam_cm_step,
    "adam_cg_step": adam_cg_step,
    "adam_cm_group_step": _group_of(adam_cm_step),
    "adam_cg_group_step": _group_of(adam_cg_step),
}


@functools.cache
def compiled(name: str) -> Callable[..., Any]:
    """The compiled version of one core above (compiled lazily, at its first call).

    The callers pass :func:`flat` views, so the length of a tensor is the only shape, and it
    is dynamic from the start.

    A process may need more graphs per core than dynamo's default limit of 8 (float32 and
    float64, weight decay on and off, size 1 and the rest), and ``fullgraph=True`` turns
    hitting it into an error, so the limit is raised (never lowered) for the process.
    """
    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, 64)
    return torch.compile(_CORES[name], fullgraph=True)
