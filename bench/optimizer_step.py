"""Optimizer step time, step memory and compile time of every registered optimizer, side by side.

Every implementation of every optimizer (torch's fused / for-loop / foreach for the baselines;
for-loop / foreach / compiled for the memory optimizers) steps the same MLP with the same
gradients (a bank of random gradients copied in before each step, outside the timing). Rounds
are interleaved so that machine noise hits all of them alike. Each memory optimizer's fastest
implementation is divided by the fastest torch path of its baseline (the minimum over fused,
for-loop and foreach): that ratio, against the memory-traffic limit of its algorithm, is the
figure of merit.

Also printed: the extra memory of one step (peak during ``step()`` minus before: CUDA's
allocator on a GPU, the process's peak resident set on CPU) and the compile time of the
compiled implementations, cold (an empty inductor cache, a fresh process) and warm (the same
cache, a fresh process: what the second trial of a study on this machine pays).

    python bench/optimizer_step.py                     # MLP of ~5.8M parameters on CPU
    python bench/optimizer_step.py --device cuda --width 8192 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from memtune.optimizers import OPTIMIZERS, cpu_kernels

TORCH_PATHS = {
    "fused": {"fused": True},
    "forloop": {"foreach": False},
    "foreach": {"foreach": True},
}
MEMORY_PATHS = {
    "forloop": {"impl": "forloop"},
    "foreach": {"impl": "foreach"},
    "compiled": {"impl": "compiled"},  # on CPU: memtune.optimizers.cpu_kernels
    "inductor": {"impl": "compiled"},  # on CPU: the same with those kernels off
}
# Full-size arrays one step reads plus writes (float32 or bf16 elements each), the model the
# goals come from; the buffer optimizers' priority (a gradient norm) reads g once more, and a
# replaced slot costs a read and a write of the slot and of the running sum.
TRAFFIC = {
    "sgd": 5,
    "adam": 7,
    "adamw": 7,
    "am_sgd": 7,
    "am_adamw": 11,
    "adam_cm": 12,
    "adam_cg": 12,
}
# memory optimizer -> (its baseline, the memory-traffic limit of the ratio)
GOALS = {
    "am_sgd": ("sgd", 1.4),
    "am_adamw": ("adamw", 1.6),
    "adam_cm": ("adamw", 1.6),
    "adam_cg": ("adam", 1.6),
}
BASELINE_OPTIONS = {"sgd": {"momentum": 0.9}}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Case:
    name: str
    path: str
    make: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    needs_closure: bool = False
    kernels_off: bool = False  # the inductor path on CPU
    times: list[float] = field(default_factory=list)
    state_bytes: int = 0
    step_extra_bytes: int = 0

    @property
    def label(self) -> str:
        return f"{self.name}[{self.path}]"


def build_model(width: int, device: str, dtype: torch.dtype) -> tuple[nn.Module, Callable]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    ).to(device=device, dtype=dtype)
    inputs = torch.randn(128, 784, device=device, dtype=dtype)
    labels = torch.randint(0, 10, (128,), device=device)
    return model, lambda: nn.functional.cross_entropy(model(inputs), labels)


def cases(device: str, only: set[str] | None = None) -> list[Case]:
    """Every registered optimizer's paths; with ``only``, those memory optimizers and their
    baselines."""
    keep = None if only is None else only | {GOALS[name][0] for name in only if name in GOALS}
    found = []
    for spec in OPTIMIZERS:
        if keep is not None and spec.name not in keep:
            continue
        if spec.supports_fused:
            paths = dict(TORCH_PATHS)
        elif spec.name in GOALS:
            paths = dict(MEMORY_PATHS)
            if device != "cuda":
                paths.pop("foreach")  # on CPU always slower than the for-loop (measured)
            else:
                paths.pop("inductor")  # the CPU kernels are CPU only: compiled is inductor
        else:
            paths = {"default": {}}
        options = BASELINE_OPTIONS.get(spec.name, {})
        for path, overrides in paths.items():
            found.append(
                Case(
                    spec.name,
                    path,
                    lambda params, spec=spec, kw={**options, **overrides}: spec.build(params, **kw),
                    needs_closure=spec.needs_closure,
                    kernels_off=path == "inductor",
                )
            )
    if only is not None and "adam_cm" not in only:
        return found
    try:  # the official Adam+CM, only where a user has it installed
        from cmoptimizer import Adam_CM  # type: ignore[import-not-found]

        found.append(Case("adam_cm_official", "default", lambda params: Adam_CM(params, topC=5)))
    except ImportError:
        print("official Adam_CM (chandar-lab/CMOptimizer) not importable: its row is skipped")
    return found


def _resident_bytes(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name):
                return int(line.split()[1]) * 1024
    return 0


def _step_extra_bytes(step: Callable[[], object], device: str) -> int:
    """Peak memory during one step minus the memory before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with open("/proc/self/clear_refs", "w") as clear:  # resets the peak resident set (VmHWM)
        clear.write("5")
    before = _resident_bytes("VmRSS")
    step()
    return max(0, _resident_bytes("VmHWM") - before)


def measure(
    case: Case, model: nn.Module, loss_fn, grads, steps: int, warmup: int, device: str
) -> float:
    """Median seconds of ``steps`` steps after ``warmup`` untimed ones (a buffer of C snapshots
    is written, and its pages faulted in, over its first C steps: the steady state counts)."""
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    optimizer = case.make(params)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    def step(index: int) -> None:
        if not case.needs_closure:
            for p, g in zip(params, grads[index % len(grads)], strict=True):
                p.grad = g.clone() if p.grad is None else p.grad.copy_(g)
        if device == "cuda":
            torch.cuda.synchronize()

    def run() -> None:
        with cpu_kernels.disabled() if case.kernels_off else contextlib.nullcontext():
            optimizer.step(closure) if case.needs_closure else optimizer.step()

    for i in range(warmup):
        step(i)
        run()
    samples = []
    for i in range(steps):
        step(i)
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    step(0)
    case.step_extra_bytes = max(case.step_extra_bytes, _step_extra_bytes(run, device))
    case.state_bytes = sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    model.load_state_dict(snapshot)
    return statistics.median(samples)


def first_step(name: str, width: int, device: str, dtype: str, inductor: bool) -> dict:
    """Seconds of the first compiled step (compiling included) and of a later one."""
    model, _ = build_model(width, device, DTYPES[dtype])
    params = list(model.parameters())
    optimizer = OPTIMIZERS.get(name).build(params, impl="compiled")
    times = []
    with cpu_kernels.disabled() if inductor else contextlib.nullcontext():
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p)
            start = time.perf_counter()
            optimizer.step()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return {"first": times[0], "later": times[-1], "impl": optimizer.last_impl}


def compile_times(args: argparse.Namespace) -> None:
    """Cold: empty caches (inductor's and the CPU kernels'), a fresh process; warm: the same
    caches, a fresh process (what a study's later trials on this machine pay)."""
    backends = ["compiled"] + (["inductor"] if args.device == "cpu" else [])
    print("\ncompile time of the compiled implementations (first step minus a later one, s):")
    print(
        f"{'optimizer':12s} "
        + " ".join(f"{b + ' ' + w:>15s}" for b in backends for w in ("cold", "warm"))
    )
    for name in [name for name in GOALS if args.only is None or name in args.only.split(",")]:
        cells, fallbacks = [], []
        for backend in backends:
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "XDG_CACHE_HOME": cache}
                results = []
                for _ in ("cold", "warm"):
                    out = subprocess.run(
                        [sys.executable, __file__, "--first-step", name, "--width", str(args.width),
                         "--device", args.device, "--dtype", args.dtype]
                        + (["--inductor"] if backend == "inductor" else []),
                        env=env, capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            cells += [r["first"] - r["later"] for r in results]
            if results[0]["impl"] != "compiled":
                fallbacks.append(backend)
        print(
            f"{name:12s} "
            + " ".join(f"{cell:15.2f}" for cell in cells)
            + (f"  ({', '.join(fallbacks)} fell back to eager)" if fallbacks else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--width", type=int, default=2048, help="hidden width (2048: ~5.8M params)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all cases")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per case and round")
    parser.add_argument("--warmup", type=int, default=25, help="untimed steps first (> topc)")
    parser.add_argument("--no-compile-times", action="store_true", help="skip cold/warm compiles")
    parser.add_argument(
        "--compile-times-only", action="store_true", help="only the cold/warm compiles"
    )
    parser.add_argument(
        "--only", metavar="NAMES", help="comma-separated optimizers (their baselines are added)"
    )
    parser.add_argument("--first-step", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--inductor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_step:
        print(
            json.dumps(
                first_step(args.first_step, args.width, args.device, args.dtype, args.inductor)
            )
        )
        return
    if args.compile_times_only:
        compile_times(args)
        return

    model, loss_fn = build_model(args.width, args.device, DTYPES[args.dtype])
    n_params = sum(p.numel() for p in model.parameters())
    grads = [[torch.randn_like(p) for p in model.parameters()] for _ in range(4)]
    only = set(args.only.split(",")) if args.only else None
    all_cases = cases(args.device, only)
    for _ in range(args.rounds):
        for case in all_cases:
            case.times.append(
                measure(case, model, loss_fn, grads, args.steps, args.warmup, args.device)
            )
    median = {case.label: statistics.median(case.times) for case in all_cases}

    def fastest(name: str) -> Case:
        return min((c for c in all_cases if c.name == name), key=lambda c: median[c.label])

    print(
        f"device {args.device} ({args.dtype}), {n_params / 1e6:.2f}M parameters, "
        f"threads {torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps after "
        f"{args.warmup} warm; SAM rows include its second forward/backward pass"
    )
    element = torch.empty((), dtype=DTYPES[args.dtype]).element_size()
    print(
        "GB/s: the arrays the step must move (TRAFFIC: "
        + ", ".join(f"{name} {n}" for name, n in TRAFFIC.items())
        + ") x parameters x element size, per second: how fast each path moves them"
    )
    print(
        f"{'optimizer':26s} {'ms':>7s} {'GB/s':>6s} {'state MB':>9s} {'step +MB':>9s}  {'fastest torch path of the baseline':34s} {'ratio':>6s}  goal"
    )
    for case in all_cases:
        moved = TRAFFIC.get(case.name)
        rate = f"{moved * n_params * element / median[case.label] / 1e9:6.1f}" if moved else " " * 6
        line = (
            f"{case.label:26s} {median[case.label] * 1e3:7.2f} {rate} {case.state_bytes / 2**20:9.1f} "
            f"{case.step_extra_bytes / 2**20:9.1f}  "
        )
        if case.name in GOALS:
            base_name, goal = GOALS[case.name]
            base = fastest(base_name)
            ratio = median[case.label] / median[base.label]
            best = fastest(case.name) is case
            line += f"{base.label + f' {median[base.label] * 1e3:.2f} ms':34s} {ratio:6.2f}  "
            if best:
                line += f"<= {goal}  {'met' if ratio <= goal else 'MISSED'} (fastest path)"
        elif case.name == "adam_cm_official":
            ours = median[fastest("adam_cm").label]
            line += f"{'ours / official':34s} {ours / median[case.label]:6.2f}  <= 0.67"
        print(line)
    if not args.no_compile_times:
        compile_times(args)


if __name__ == "__main__":
    main()
