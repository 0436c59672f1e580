"""The optimizer registry: one frozen spec per name, read by studies, workers, the API and tests.

A spec says where the optimizer's class lives (imported only when one is built, so reading the
registry needs no torch), what its defaults and arguments are, which of its hyperparameters a
study searches and over what range (a define-by-run sampler of an ``optuna.Trial``), which
torch baseline it reduces to and with which settings, and what a step costs. The registry is
the only place that turns a name into a class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from memtune.optimizers import options as opts
from memtune.registry import PluginError, Registry, UnknownNameError, resolve

if TYPE_CHECKING:  # neither is imported to read the registry
    import optuna
    from torch.optim import Optimizer

__all__ = [
    "OPTIMIZERS",
    "ArgumentError",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "OptimizerSpec",
    "PluginError",
    "Reduction",
    "Registry",
    "UnknownNameError",
    "build_optimizer",
    "get_optimizer",
]


class ArgumentError(ValueError):
    """An optimizer argument that its options model refuses; ``argument`` names it."""

    def __init__(self, argument: str, message: str) -> None:
        self.argument, self.message = argument, message
        super().__init__(f"{argument}: {message}" if argument else message)


# --------------------------------------------------------------------------------------------
# Search spaces: declarative ranges, sampled define-by-run
# --------------------------------------------------------------------------------------------


# Whether a range's edge could be moved: "hard" where the value cannot go beyond it (momentum's
# 0.99 below 1, a warmup fraction's 0), "soft" where the range is a choice (a learning rate, a
# weight decay). A search whose best value sits at a soft edge may have missed its optimum
# outside the range; the verdict will not call an arm better or worse on such searches.
Edge = Literal["hard", "soft"]
SOFT: tuple[Edge, Edge] = ("soft", "soft")


class _Range:
    """What a numeric range knows of its edges (FloatParam and IntParam)."""

    name: str
    low: float
    high: float
    log: bool
    edges: tuple[Edge, Edge]

    def position(self, value: float) -> float:
        """Where ``value`` lies in the range, 0 at ``low`` and 1 at ``high`` (log scale where
        the range is)."""
        if self.log:
            return math.log(value / self.low) / math.log(self.high / self.low)
        return (value - self.low) / (self.high - self.low)

    def describe(self) -> str:
        """``lr [0.001, 1] log (soft/soft)``: the range and the kind of each edge."""
        scale = " log" if self.log else ""
        return f"{self.name} [{self.low:g}, {self.high:g}]{scale} ({self.edges[0]}/{self.edges[1]})"

    def soft_edge(self, value: float, within: float = 0.05) -> str | None:
        """ "lower" or "upper" when ``value`` lies within ``within`` of a soft edge (as a
        fraction of the range, log scale where the range is), else None."""
        position = self.position(value)
        if position <= within and self.edges[0] == "soft":
            return "lower"
        if position >= 1 - within and self.edges[1] == "soft":
            return "upper"
        return None


@dataclass(frozen=True)
class FloatParam(_Range):
    name: str
    low: float
    high: float
    log: bool = False
    edges: tuple[Edge, Edge] = SOFT  # (low, high)

    def sample(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntParam(_Range):
    name: str
    low: int
    high: int
    log: bool = False
    edges: tuple[Edge, Edge] = SOFT  # (low, high)

    def sample(self, trial: optuna.Trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Any, ...]

    def sample(self, trial: optuna.Trial) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))

    def describe(self) -> str:
        return f"{self.name} {list(self.choices)}"


SearchParam = FloatParam | IntParam | CategoricalParam


@dataclass(frozen=True)
class Reduction:
    """With ``settings`` this optimizer is exactly ``baseline`` built with ``baseline_settings``."""

    baseline: str
    settings: Mapping[str, Any]
    baseline_settings: Mapping[str, Any] = field(default_factory=dict)


def _constant(slots: float) -> Callable[[Mapping[str, Any]], float]:
    return lambda config: slots


_NO_STATE = _constant(0)


def _first_error(error: ValidationError, options: type[BaseModel]) -> ArgumentError:
    first = error.errors()[0]
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"not an argument; known: {', '.join(options.model_fields)}"
    return ArgumentError(".".join(map(str, first["loc"])), message)


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the rest of memtune needs to know about one optimizer."""

    name: str
    target: str  # "module:Class", imported when an optimizer is built
    options: type[BaseModel]  # the arguments it accepts, checked without torch
    summary: str
    defaults: Mapping[str, Any]
    search_space: tuple[SearchParam, ...]
    reduces_to: Reduction | None = None
    supports_foreach: bool = False
    needs_closure: bool = False
    passes_per_step: int = 1
    # Optimizer-state tensors the size of the parameters, as a function of the config ...
    state_slots: Callable[[Mapping[str, Any]], float] = _NO_STATE
    # ... and those that live only during a step (SAM's copy of the weights).
    transient_slots: float = 0.0
    wraps_base: bool = False  # SAM: its ``base`` argument names another registry entry
    origin: str = "memtune"  # the distribution that registered it (set by the registry)
    supports_fused: bool = False  # torch's fused kernels (the fastest path of a baseline)
    source: str = "torch.optim"

    @property
    def cls(self) -> type[Optimizer]:
        return resolve(self.target)

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {**self.defaults, **overrides}

    def check(self, arguments: Mapping[str, Any]) -> None:
        """Checks ``arguments`` (names and ranges) without torch; :class:`ArgumentError` names
        the first bad one. The class's own checks run when the optimizer is built."""
        try:
            checked = self.options.model_validate(dict(arguments))
        except ValidationError as error:
            raise _first_error(error, self.options) from None
        if not self.wraps_base:
            return
        base = _base_of(checked.base)
        base.check({k: v for k, v in arguments.items() if k not in self.options.model_fields})

    def build(self, params: Iterable[Any], **overrides: Any) -> Optimizer:
        config = self.config(**overrides)
        if self.wraps_base:  # the base's class and defaults, under this entry's overrides
            base = _base_of(config.pop("base"))
            config = {**base.defaults, **config, "base": base.cls}
        return self.cls(params, **config)

    def space(self, fixed: Mapping[str, Any] | None = None) -> tuple[SearchParam, ...]:
        """What a study searches, each range at this optimizer's own scale. SAM searches the
        learning-rate range of its base (``fixed["base"]``, else its default base)."""
        if not self.wraps_base:
            return self.search_space
        base = OPTIMIZERS.get((fixed or {}).get("base", self.defaults["base"]))
        base_lr = next(p for p in base.search_space if p.name == "lr")
        return tuple(base_lr if p.name == "lr" else p for p in self.search_space)

    def state_bytes_per_param(
        self, config: Mapping[str, Any] | None = None, element_size: int = 4
    ) -> float:
        """Bytes of optimizer state per parameter between steps."""
        return self.state_slots(self.config(**(config or {}))) * element_size


def _base_of(name: str) -> OptimizerSpec:
    base = OPTIMIZERS.get(name)
    if base.needs_closure:
        raise ArgumentError("base", f"{name!r}: SAM cannot wrap an optimizer that needs a closure")
    return base


LR_SGD = FloatParam("lr", 1e-3, 1.0, log=True)
# AM-SGD's momentum is an EMA (dampened, like SGD(momentum=b, dampening=b)): the same step
# length needs about 1 / (1 - beta) = 10x the learning rate of torch's undampened momentum.
LR_EMA_MOMENTUM = FloatParam("lr", 1e-2, 10.0, log=True)
LR_ADAM = FloatParam("lr", 1e-4, 1e-1, log=True)
WEIGHT_DECAY = FloatParam("weight_decay", 1e-6, 1e-1, log=True)
LAM = FloatParam("lam", 1e-2, 1.0, log=True)
# AM-AdamW's lambda term is 1 + lambda * P with P ~ sqrt(v) under the paper's coupling: on a
# stiff problem P reaches tens, so only a lambda near 1e-4 leaves its memory free to move (the
# figures on the reproduction's quadratic are in docs/benchmarks.md).
LAM_ADAMW = FloatParam("lam", 1e-4, 1.0, log=True)
TOPC = IntParam("topc", 1, 20, edges=("hard", "soft"))  # at least one critical momentum
DECAY = FloatParam("decay", 0.5, 0.99, edges=("soft", "hard"))  # a decay below 1
MOMENTUM = FloatParam("momentum", 0.0, 0.99, edges=("hard", "hard"))


def _buffer_slots(config: Mapping[str, Any]) -> float:
    """m, v, the C snapshots and their running sum; m and v alone without a buffer."""
    return 3.0 + config["topc"] if config["topc"] else 2.0


def _sam_state_slots(config: Mapping[str, Any]) -> float:
    """The base's state (SAM keeps none of its own between steps)."""
    base = OPTIMIZERS.get(config["base"])
    base_config = {k: v for k, v in config.items() if k not in ("base", "rho")}
    return base.state_slots(base.config(**base_config))


def builtin_optimizers() -> list[OptimizerSpec]:
    """memtune's own optimizers: the ``builtin`` entry point of ``memtune.optimizers``."""
    return [
        OptimizerSpec(
            name="sgd",
            supports_fused=True,
            target="torch.optim:SGD",
            options=opts.SGDOptions,
            summary="SGD with heavy-ball momentum (torch.optim.SGD); nesterov is a flag",
            defaults=MappingProxyType({"lr": 0.05, "momentum": 0.9}),
            search_space=(LR_SGD, MOMENTUM),
            supports_foreach=True,
            state_slots=lambda c: 1.0 if c.get("momentum", 0) else 0.0,
        ),
        OptimizerSpec(
            name="adam",
            supports_fused=True,
            target="torch.optim:Adam",
            options=opts.AdamOptions,
            summary="Adam (torch.optim.Adam)",
            defaults=MappingProxyType({"lr": 1e-3}),
            search_space=(LR_ADAM,),
            supports_foreach=True,
            state_slots=_constant(2),
        ),
        OptimizerSpec(
            name="adamw",
            supports_fused=True,
            target="torch.optim:AdamW",
            options=opts.AdamOptions,
            summary="AdamW, decoupled weight decay (torch.optim.AdamW)",
            defaults=MappingProxyType({"lr": 1e-3, "weight_decay": 1e-2}),
            search_space=(LR_ADAM, WEIGHT_DECAY),
            supports_foreach=True,
            state_slots=_constant(2),
        ),
        OptimizerSpec(
            name="am_sgd",
            target="memtune.optimizers.am_sgd:AMSGD",
            options=opts.AMSGDOptions,
            summary="SGD with adaptive memory momentum (Topollai & Choromanska, arXiv 2510.04988)",
            defaults=MappingProxyType({"lr": 0.05, "lam": 0.1, "beta_max": 0.9}),
            search_space=(LR_EMA_MOMENTUM, LAM),
            reduces_to=Reduction(
                "sgd", {"lam": 0.0, "fixed_beta": 0.9}, {"momentum": 0.9, "dampening": 0.9}
            ),
            supports_foreach=True,
            state_slots=_constant(1),
            source="arXiv 2510.04988",
        ),
        OptimizerSpec(
            name="am_adamw",
            target="memtune.optimizers.am_adamw:AMAdamW",
            options=opts.AMAdamWOptions,
            summary="AdamW with adaptive memory momentum, one beta per tensor (arXiv 2510.04988)",
            defaults=MappingProxyType({"lr": 1e-3, "lam": 0.1, "weight_decay": 1e-2}),
            search_space=(LR_ADAM, LAM_ADAMW, WEIGHT_DECAY),
            reduces_to=Reduction(
                "adamw",
                {"lam": 0.0, "fixed_beta": 0.9, "betas": (0.9, 0.999)},
                {"betas": (0.9, 0.999)},
            ),
            supports_foreach=True,
            state_slots=_constant(2),
            source="arXiv 2510.04988",
        ),
        OptimizerSpec(
            name="adam_cm",
            target="memtune.optimizers.adam_cm:AdamCM",
            options=opts.AdamCMOptions,
            summary="Adam with critical momenta (Malviya et al., TMLR 2024)",
            defaults=MappingProxyType({"lr": 1e-3, "topc": 5, "decay": 0.7}),
            search_space=(LR_ADAM, TOPC, DECAY),
            supports_foreach=True,
            state_slots=_buffer_slots,
            source="TMLR 2024, chandar-lab/CMOptimizer",
        ),
        OptimizerSpec(
            name="adam_cg",
            target="memtune.optimizers.adam_cg:AdamCG",
            options=opts.AdamCGOptions,
            summary="Adam with critical gradients (McRae et al., ICLR 2022)",
            defaults=MappingProxyType({"lr": 1e-3, "topc": 10, "decay": 0.7}),
            search_space=(LR_ADAM, TOPC, DECAY),
            reduces_to=Reduction("adam", {"topc": 0}),
            supports_foreach=True,
            state_slots=_buffer_slots,
            source="ICLR 2022",
        ),
        OptimizerSpec(
            name="sam",
            target="memtune.optimizers.sam:SAM",
            options=opts.SAMOptions,
            summary="Sharpness-aware minimization over SGD with momentum (Foret et al., 2020)",
            defaults=MappingProxyType({"base": "sgd", "rho": 0.05}),
            search_space=(LR_SGD, FloatParam("rho", 1e-2, 0.5, log=True)),
            reduces_to=Reduction("sgd", {"rho": 0.0}),
            needs_closure=True,
            passes_per_step=2,
            state_slots=_sam_state_slots,
            transient_slots=1.0,
            wraps_base=True,
            source="arXiv 2010.01412",
        ),
    ]


OPTIMIZERS: Registry[OptimizerSpec] = Registry(
    "optimizer", group="memtune.optimizers", builtin=builtin_optimizers
)


def get_optimizer(name: str) -> OptimizerSpec:
    """The spec registered under ``name``; :class:`UnknownNameError` lists the known names."""
    return OPTIMIZERS.get(name)


def build_optimizer(name: str, params: Iterable[Any], **overrides: Any) -> Optimizer:
    """``name``'s optimizer over ``params`` with its registry defaults and ``overrides``."""
    return OPTIMIZERS.get(name).build(params, **overrides)
