"""Median optimizer-step time and state memory of every registered optimizer, side by side.

Each optimizer is timed on the same model and gradients as the fastest torch path of its
baseline (the faster of for-loop and foreach on this device; fused too on CUDA), interleaved
round by round so that machine noise hits all of them alike, and printed as a ratio.

    python bench/optimizer_step.py                 # MLP of ~5.8M parameters on CPU
    python bench/optimizer_step.py --device cuda --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from memtune.optimizers import OPTIMIZERS

# (name, registry overrides, baseline name, target ratio) for the rows with a target
TARGETS = {
    "am_sgd": ("sgd", 1.3),
    "am_adamw": ("adamw", 1.2),
    "adam_cm": ("adamw", 1.6),
}


@dataclass
class Case:
    label: str
    make: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    needs_closure: bool = False
    times: list[float] | None = None
    state_bytes: int = 0


def build_model(width: int, device: str) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )
    model = model.to(device)
    inputs = torch.randn(128, 784, device=device)
    labels = torch.randint(0, 10, (128,), device=device)
    return model, lambda: nn.functional.cross_entropy(model(inputs), labels)


def torch_paths(name: str, device: str) -> list[tuple[str, dict]]:
    paths = [("forloop", {"foreach": False}), ("foreach", {"foreach": True})]
    if device == "cuda" and name in ("adam", "adamw", "sgd"):
        paths.append(("fused", {"fused": True}))
    return paths


def cases(device: str) -> list[Case]:
    found = []
    for spec in OPTIMIZERS:
        variants: list[tuple[str, dict]] = [("default", {})]
        if spec.name in ("sgd", "adam", "adamw"):
            variants = torch_paths(spec.name, device)
        elif spec.supports_foreach:
            variants = [("forloop", {"foreach": False}), ("foreach", {"foreach": True})]
        if spec.name == "adam_cm":
            variants += [(f"{path}-topc20", {**kw, "topc": 20}) for path, kw in list(variants)]
        for label, overrides in variants:
            found.append(
                Case(
                    f"{spec.name}[{label}]",
                    lambda params, spec=spec, overrides=overrides: spec.build(params, **overrides),
                    needs_closure=spec.needs_closure,
                )
            )
    return found


def measure(case: Case, model: nn.Module, loss_fn, steps: int, device: str, warmup: int) -> float:
    """Seconds per step, median of ``steps`` (gradients computed once, outside the timing).

    ``warmup`` steps first: a buffer of C snapshots is only written (and its zero pages only
    faulted in) over its first C steps; the steady state is what a long run pays.
    """
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = case.make(list(model.parameters()))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    closure()
    for _ in range(warmup):
        optimizer.step(closure) if case.needs_closure else optimizer.step()
    samples = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.step(closure) if case.needs_closure else optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    case.state_bytes = sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    model.load_state_dict(snapshot)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--width", type=int, default=2048, help="hidden width of the MLP (2048: ~5.8M params)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds over all optimizers"
    )
    parser.add_argument("--steps", type=int, default=6, help="timed steps per optimizer and round")
    parser.add_argument(
        "--warmup", type=int, default=21, help="untimed steps first (> the largest topc)"
    )
    args = parser.parse_args()

    model, loss_fn = build_model(args.width, args.device)
    n_params = sum(p.numel() for p in model.parameters())
    all_cases = cases(args.device)
    for case in all_cases:
        case.times = []
    for _ in range(args.rounds):
        for case in all_cases:
            case.times.append(measure(case, model, loss_fn, args.steps, args.device, args.warmup))

    median = {case.label: statistics.median(case.times) for case in all_cases}
    state = {case.label: case.state_bytes for case in all_cases}

    def fastest(name: str) -> tuple[str, float]:
        labels = [label for label in median if label.startswith(f"{name}[")]
        best = min(labels, key=median.__getitem__)
        return best, median[best]

    print(
        f"device {args.device}, {n_params / 1e6:.2f}M parameters, "
        f"threads {torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps; "
        "SAM rows include its 2 forward/backward passes"
    )
    header = ("optimizer", "step ms", "state MB", "vs baseline (fastest path)", "ratio")
    print(
        f"{header[0]:28s} {header[1]:>8s} {header[2]:>9s}  {header[3]:34s} {header[4]:>6s}  target"
    )
    for case in all_cases:
        name = case.label.split("[")[0]
        spec = OPTIMIZERS.get(name)
        baseline = TARGETS.get(name, (spec.reduces_to.baseline if spec.reduces_to else None, None))
        line = (
            f"{case.label:28s} {median[case.label] * 1e3:8.2f} {state[case.label] / 2**20:9.1f}  "
        )
        if baseline[0] and not case.label.startswith(f"{baseline[0]}["):
            base_label, base_time = fastest(baseline[0])
            ratio = median[case.label] / base_time
            target = baseline[1]
            if "topc20" in case.label:
                reference = case.label.replace("-topc20", "")
                ratio, base_label, target = median[case.label] / median[reference], reference, 1.1
            verdict = (
                "" if target is None else f"<= {target}  {'ok' if ratio <= target else 'MISSED'}"
            )
            line += f"{base_label:34s} {ratio:6.2f}  {verdict}"
        print(line)
    print(
        "state bytes per parameter: "
        + ", ".join(
            f"{label} {state[label] / n_params:.1f}"
            for label in median
            if "forloop" in label or "default" in label
        )
    )


if __name__ == "__main__":
    main()
