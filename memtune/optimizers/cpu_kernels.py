"""The compiled steps' kernels on the CPU: ``cpu_kernels.c``, built once per machine.

A step is memory-bound (AM-AdamW's sums pass, with a square root and a division per element,
is compute-bound on a small CPU), and on the CPU inductor's code for these steps ran at 2-3x
torch's fused AdamW (its reductions at about half the bandwidth of torch's fused update, plus
~40 us of Python and dynamo per graph call). The C file streams each tensor once per pass in plain
loops that gcc vectorizes, one ctypes call per group and pass (``bench/optimizer_step.py``
measures both). The math is the same as the inductor cores'
(:mod:`memtune.optimizers.am_sgd_compiled`, :mod:`memtune.optimizers.am_adamw_compiled`,
:mod:`memtune.optimizers._priority_buffer_compiled`), which stay the compiled path on CUDA and wherever this
library cannot be built.

The library is built with the machine's C compiler (``$CC``, else the one Python was built
with, else ``cc``: the same one inductor uses) for this processor (``-march=native``), into
the user's cache directory, named by a hash of the source, the flags, the compiler and the
processor, so a machine builds it once (about a second) and every trial process after that
loads it. ``MEMTUNE_CPU_KERNELS=0`` turns it off (the inductor graphs run instead).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from platformdirs import user_cache_dir
from torch import Tensor

__all__ = [
    "adam_buffer_step",
    "am_adamw_sums",
    "am_adamw_update",
    "am_sgd_dots",
    "disabled",
    "kernels_unavailable",
    "sum_squares",
    "supports",
]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.c")
# -fassociative-math (with the two flags it needs) lets gcc vectorize the chunk sums; no
# finite-math flag: NaN and infinities must propagate (that is how a divergence is seen).
FLAGS = [
    "-O3",
    "-march=native",
    # x86 only: gcc prefers 256-bit vectors on AVX-512 processors; 512 ran AM-AdamW's
    # compute-bound sums ~20% faster here. (Arm's gcc does not know the flag.)
    *(["-mprefer-vector-width=512"] if platform.machine() in ("x86_64", "AMD64") else []),
    "-fPIC",
    "-fopenmp",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fno-signed-zeros",
    "-fassociative-math",
]
VARIANTS = {"_f32": ("float", "sqrtf"), "_f64": ("double", "sqrt")}
SUFFIX = {torch.float32: "_f32", torch.float64: "_f64"}

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_I64 = ctypes.POINTER(ctypes.c_int64)
_D = ctypes.POINTER(ctypes.c_double)
_i, _d = ctypes.c_int, ctypes.c_double
_SIGNATURES = {
    "am_sgd_dots": [_i, _PP, _PP, _PP, _I64, _d, _i, _D, _i],
    "am_adamw_sums": [_i, _PP, _PP, _PP, _PP, _I64, _D, _D, _D, _d, _d, _d, _d, _i, _i, _D, _i],
    "am_adamw_update": [_i, _PP, _PP, _PP, _PP, _I64, _D, _D, _D, _d, _d, _d, _d, _d, _i, _i, _i],
    "adam_cm_step": [_i, *[_PP] * 6, _I64, _D, _D, _d, _i, _d, _d, _d, _d, _d, _i, _i],
    "adam_cg_step": [_i, *[_PP] * 6, _I64, _D, _D, _d, _i, _d, _d, _d, _d, _d, _i, _i],
    "sum_squares": [_i, _PP, _I64, _D, _i],
}


def _compiler() -> str | None:
    """``$CC`` when it is set (and then only it), else Python's compiler, ``cc`` or ``gcc``."""
    chosen = os.environ.get("CC")
    candidates = [chosen] if chosen else [sysconfig.get_config_var("CC"), "cc", "gcc"]
    for candidate in candidates:
        if candidate and shutil.which(candidate.split()[0]):
            return candidate.split()[0]
    return None


def _processor() -> str:
    """What -march=native compiles for: the model and feature flags of this processor."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(wanted)))


def _build(compiler: str) -> Path:
    """The library's path in the cache, compiled first if it is not there (atomically: trial
    processes of one machine may build it at the same time)."""
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=True
    ).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), *FLAGS, version, _processor()]).encode()
    ).hexdigest()[:16]
    directory = Path(user_cache_dir("memtune")) / "cpu_kernels"
    target = directory / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        objects = []
        for suffix, (real, sqrt) in VARIANTS.items():
            obj = Path(work) / f"kernels{suffix}.o"
            defines = [f"-DREAL={real}", f"-DSUFFIX={suffix}", f"-DSQRT={sqrt}"]
            subprocess.run(
                [compiler, *FLAGS, *defines, "-c", str(SOURCE), "-o", str(obj)],
                capture_output=True,
                text=True,
                check=True,
            )
            objects.append(str(obj))
        built = Path(work) / target.name
        subprocess.run(
            [compiler, "-shared", "-fopenmp", *objects, "-o", str(built), "-lm"],
            capture_output=True,
            text=True,
            check=True,
        )
        os.replace(built, target)
    return target


@functools.cache
def _library() -> ctypes.CDLL | str:
    """The loaded library, or why there is none (logged once per process)."""
    if os.environ.get("MEMTUNE_CPU_KERNELS", "1") == "0":
        return "MEMTUNE_CPU_KERNELS=0"
    compiler = _compiler()
    try:
        if compiler is None:
            raise RuntimeError("no C compiler found ($CC, cc, gcc)")
        # torch is imported, so its libgomp.so.1 is loaded: the library's OpenMP resolves to it.
        library = ctypes.CDLL(str(_build(compiler)))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        reason = f"{type(error).__name__}: {detail.strip().splitlines()[0] if detail else ''}"
        log.warning("memtune: CPU step kernels unavailable (%s); using inductor's", reason)
        return reason
    for name, argtypes in _SIGNATURES.items():
        for suffix in VARIANTS:
            function = getattr(library, name + suffix)
            function.argtypes, function.restype = argtypes, None
    return library


_switched_off = 0  # depth of disabled() blocks


@contextmanager
def disabled() -> Iterator[None]:
    """The kernels switched off inside the block, so the compiled path runs inductor's graphs
    on CPU as well (tests and ``bench/optimizer_step.py`` hold the two side by side)."""
    global _switched_off
    _switched_off += 1
    try:
        yield
    finally:
        _switched_off -= 1


def kernels_unavailable() -> str | None:
    """Why the CPU kernels cannot run in this process, or ``None`` when they can."""
    if _switched_off:
        return "switched off by cpu_kernels.disabled()"
    library = _library()
    return library if isinstance(library, str) else None


def supports(*groups: Sequence[Tensor]) -> bool:
    """Whether the kernels can step these tensors: all on the CPU, contiguous, one dtype of
    float32 or float64, and the library built."""
    if kernels_unavailable() is not None:
        return False
    dtype = None
    for group in groups:  # a plain loop: this runs every step, on every tensor
        for t in group:
            if dtype is None:
                dtype = t.dtype
                if dtype not in SUFFIX:
                    return False
            if t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
                return False
    return dtype is not None


def _function(name: str, like: Tensor) -> ctypes._CFuncPtr:
    library = _library()
    assert not isinstance(library, str), library
    return getattr(library, name + SUFFIX[like.dtype])


def _pointers(tensors: Sequence[Tensor | None]) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[0 if t is None else t.data_ptr() for t in tensors])


def _numel(tensors: Sequence[Tensor]) -> ctypes.Array:
    return (ctypes.c_int64 * len(tensors))(*[t.numel() for t in tensors])


def _doubles(values: Sequence[float]) -> ctypes.Array:
    return (ctypes.c_double * len(values))(*values)


def am_sgd_dots(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    buffers: Sequence[Tensor],
    weight_decay: float,
) -> list[list[float]]:
    """[<g, g>, <g, d>, <d, d>] per tensor, g = grad + wd x (coupled L2)."""
    out = (ctypes.c_double * (3 * len(params)))()
    _function("am_sgd_dots", params[0])(
        len(params), _pointers(params), _pointers(grads), _pointers(buffers), _numel(params),
        weight_decay, int(weight_decay != 0), out, torch.get_num_threads(),
    )  # fmt: skip
    return [list(out[3 * i : 3 * i + 3]) for i in range(len(params))]


def am_adamw_sums(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    *,
    bias_corrections1: Sequence[float],
    bias_corrections2_sqrt: Sequence[float],
    gap_scales: Sequence[float],
    beta2: float,
    eps: float,
    lam: float,
    weight_decay: float,
    coupling: str,
) -> list[tuple[float, float]]:
    """(N, Dn) per tensor, the numerator and denominator of its beta (AMAdamW)."""
    out = (ctypes.c_double * (2 * len(params)))()
    _function("am_adamw_sums", params[0])(
        len(params), *map(_pointers, (params, grads, exp_avgs, exp_avg_sqs)), _numel(params),
        *map(_doubles, (bias_corrections1, bias_corrections2_sqrt, gap_scales)),
        beta2, eps, lam, weight_decay, int(coupling == "paper"), int(weight_decay != 0), out,
        torch.get_num_threads(),
    )  # fmt: skip
    return [(out[2 * i], out[2 * i + 1]) for i in range(len(params))]


def am_adamw_update(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    *,
    bias_corrections1: Sequence[float],
    bias_corrections2_sqrt: Sequence[float],
    betas: Sequence[float],
    lr: float,
    beta2: float,
    eps: float,
    lam: float,
    weight_decay: float,
    coupling: str,
) -> None:
    """AMAdamW's update of v, d and x, each tensor with its own beta."""
    _function("am_adamw_update", params[0])(
        len(params), *map(_pointers, (params, grads, exp_avgs, exp_avg_sqs)), _numel(params),
        *map(_doubles, (bias_corrections1, bias_corrections2_sqrt, betas)),
        lr, beta2, eps, lam, weight_decay, int(coupling == "paper"), int(weight_decay != 0),
        torch.get_num_threads(),
    )  # fmt: skip


def adam_buffer_step(
    optimizer: str,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    slots: Sequence[Tensor | None],
    sums: Sequence[Tensor | None],
    *,
    step_sizes: Sequence[float],
    bias_corrections2_sqrt: Sequence[float],
    count_before: float,
    replace: bool,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """One Adam+CM (``optimizer="adam_cm"``) or Adam+CG (``"adam_cg"``) step of tensors that
    share one slot decision; ``slots`` are the rows the decision picked, ``None`` without a
    buffer (``topc=0``)."""
    _function(f"{optimizer}_step", params[0])(
        len(params), *map(_pointers, (params, grads, exp_avgs, exp_avg_sqs, slots, sums)),
        _numel(params), _doubles(step_sizes), _doubles(bias_corrections2_sqrt),
        1 / max(count_before, 1.0), int(replace), lr, beta1, beta2, eps, weight_decay,
        int(weight_decay != 0), torch.get_num_threads(),
    )  # fmt: skip


def sum_squares(tensors: Sequence[Tensor]) -> list[float]:
    """The sum of squares of each tensor."""
    out = (ctypes.c_double * len(tensors))()
    _function("sum_squares", tensors[0])(
        len(tensors), _pointers(tensors), _numel(tensors), out, torch.get_num_threads()
    )
    return list(out)
