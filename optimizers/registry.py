"""The optimizer registry: one frozen spec per name, read by studies, workers, the API and tests.

A spec says how to build the optimizer, what its defaults are, which of its hyperparameters a
study searches and over what range (a define-by-run sampler of an ``optuna.Trial``), which
torch baseline it reduces to and with which settings, and what a step costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import torch
from torch.optim import Optimizer

from optimizers.am import AMSGD, AMAdamW
from optimizers.critical import AdamCG, AdamCM
from optimizers.sam import SAM

if TYPE_CHECKING:  # the optimizers package needs only a duck-typed trial, never Optuna itself
    import optuna

__all__ = [
    "OPTIMIZERS",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "OptimizerSpec",
    "Reduction",
    "Registry",
    "UnknownNameError",
    "build_optimizer",
    "get_optimizer",
]


class UnknownNameError(ValueError):
    """A name that is not in a registry; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")


class _Named(Protocol):
    name: str


T = TypeVar("T", bound=_Named)


class Registry(Generic[T]):
    """Name -> spec, in registration order. Tasks use the same class in ``studies``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, item: T) -> T:
        if item.name in self._items:
            raise ValueError(f"{self.kind} {item.name!r} is registered already")
        self._items[item.name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)


# --------------------------------------------------------------------------------------------
# Search spaces: declarative ranges, sampled define-by-run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False

    def sample(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False

    def sample(self, trial: optuna.Trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Any, ...]

    def sample(self, trial: optuna.Trial) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))


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


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the rest of memtune needs to know about one optimizer."""

    name: str
    cls: type[Optimizer]
    summary: str
    defaults: Mapping[str, Any]
    search_space: tuple[SearchParam, ...]
    reduces_to: Reduction | None = None
    supports_foreach: bool = False
    needs_closure: bool = False
    passes_per_step: int = 1
    # Optimizer-state tensors the size of the parameters, as a function of the config.
    state_slots: Callable[[Mapping[str, Any]], float] = _NO_STATE
    source: str = "torch.optim"
    is_adaptive_memory: bool = False

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {**self.defaults, **overrides}

    def build(self, params: Iterable[Any], **overrides: Any) -> Optimizer:
        return self.cls(params, **self.config(**overrides))

    def sample(
        self,
        trial: optuna.Trial,
        *,
        fixed: Mapping[str, Any] | None = None,
        space: Iterable[SearchParam] | None = None,
    ) -> dict[str, Any]:
        """Define-by-run: samples the searched values (``space`` overrides ranges by name),
        skipping those ``fixed`` pins; returns only what was sampled and pinned."""
        fixed = dict(fixed or {})
        overrides = {param.name: param for param in space or ()}
        unknown = set(overrides) - {param.name for param in self.search_space}
        if unknown:
            raise ValueError(f"{self.name} searches no {', '.join(sorted(unknown))}")
        sampled = {
            param.name: overrides.get(param.name, param).sample(trial)
            for param in self.search_space
            if param.name not in fixed
        }
        return {**sampled, **fixed}

    def state_bytes_per_param(
        self, config: Mapping[str, Any] | None = None, element_size: int = 4
    ) -> float:
        return self.state_slots(self.config(**(config or {}))) * element_size

    def with_defaults(self, **defaults: Any) -> OptimizerSpec:
        return replace(self, defaults=MappingProxyType({**self.defaults, **defaults}))


LR_SGD = FloatParam("lr", 1e-3, 1.0, log=True)
# AM-SGD's momentum is an EMA (dampened, like SGD(momentum=b, dampening=b)): the same step
# length needs about 1 / (1 - beta) = 10x the learning rate of torch's undampened momentum.
LR_EMA_MOMENTUM = FloatParam("lr", 1e-2, 10.0, log=True)
LR_ADAM = FloatParam("lr", 1e-4, 1e-1, log=True)
WEIGHT_DECAY = FloatParam("weight_decay", 1e-6, 1e-1, log=True)
LAM = FloatParam("lam", 1e-2, 1.0, log=True)
TOPC = IntParam("topc", 1, 20)
DECAY = FloatParam("decay", 0.5, 0.99)

OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")

OPTIMIZERS.register(
    OptimizerSpec(
        name="sgd",
        cls=torch.optim.SGD,
        summary="SGD with heavy-ball momentum (torch.optim.SGD); nesterov is a flag",
        defaults=MappingProxyType({"lr": 0.05, "momentum": 0.9}),
        search_space=(LR_SGD, FloatParam("momentum", 0.0, 0.99)),
        supports_foreach=True,
        state_slots=lambda c: 1.0 if c.get("momentum", 0) else 0.0,
    )
)
OPTIMIZERS.register(
    OptimizerSpec(
        name="adam",
        cls=torch.optim.Adam,
        summary="Adam (torch.optim.Adam)",
        defaults=MappingProxyType({"lr": 1e-3}),
        search_space=(LR_ADAM,),
        supports_foreach=True,
        state_slots=_constant(2),
    )
)
OPTIMIZERS.register(
    OptimizerSpec(
        name="adamw",
        cls=torch.optim.AdamW,
        summary="AdamW, decoupled weight decay (torch.optim.AdamW)",
        defaults=MappingProxyType({"lr": 1e-3, "weight_decay": 1e-2}),
        search_space=(LR_ADAM, WEIGHT_DECAY),
        supports_foreach=True,
        state_slots=_constant(2),
    )
)
OPTIMIZERS.register(
    OptimizerSpec(
        name="am_sgd",
        cls=AMSGD,
        summary="SGD with adaptive memory momentum (Topollai & Choromanska, arXiv 2510.04988)",
        defaults=MappingProxyType({"lr": 0.05, "lam": 0.1, "beta_max": 0.9}),
        search_space=(LR_SGD, LAM),
        reduces_to=Reduction(
            "sgd", {"lam": 0.0, "fixed_beta": 0.9}, {"momentum": 0.9, "dampening": 0.9}
        ),
        supports_foreach=True,
        state_slots=_constant(1),
        source="arXiv 2510.04988",
        is_adaptive_memory=True,
    )
)
OPTIMIZERS.register(
    OptimizerSpec(
        name="am_adamw",
        cls=AMAdamW,
        summary="AdamW with adaptive memory momentum, one beta per tensor (arXiv 2510.04988)",
        defaults=MappingProxyType({"lr": 1e-3, "lam": 0.1, "weight_decay": 1e-2}),
        search_space=(LR_ADAM, LAM, WEIGHT_DECAY),
        reduces_to=Reduction(
            "adamw", {"lam": 0.0, "fixed_beta": 0.9, "betas": (0.9, 0.999)}, {"betas": (0.9, 0.999)}
        ),
        supports_foreach=True,
        state_slots=_constant(2),
        source="arXiv 2510.04988",
        is_adaptive_memory=True,
    )
)
OPTIMIZERS.register(
    OptimizerSpec(
        name="adam_cm",
        cls=AdamCM,
        summary="Adam with critical momenta (Malviya et al., TMLR 2024)",
        defaults=MappingProxyType({"lr": 1e-3, "topc": 5, "decay": 0.7}),
        search_space=(LR_ADAM, TOPC, DECAY),
        supports_foreach=True,
        # m, v, the C snapshots and their running sum
        state_slots=lambda c: 3.0 + c["topc"] if c["topc"] else 2.0,
        source="TMLR 2024, chandar-lab/CMOptimizer",
    )
)
OPTIMIZERS.register(
    OptimizerSpec(
        name="adam_cg",
        cls=AdamCG,
        summary="Adam with critical gradients (McRae et al., ICLR 2022)",
        defaults=MappingProxyType({"lr": 1e-3, "topc": 10, "decay": 0.7}),
        search_space=(LR_ADAM, TOPC, DECAY),
        reduces_to=Reduction("adam", {"topc": 0}),
        state_slots=lambda c: 3.0 + c["topc"] if c["topc"] else 2.0,
        source="ICLR 2022",
    )
)
OPTIMIZERS.register(
    OptimizerSpec(
        name="sam",
        cls=SAM,
        summary="Sharpness-aware minimization over SGD with momentum (Foret et al., 2020)",
        defaults=MappingProxyType({"base": "sgd", "rho": 0.05}),
        search_space=(LR_SGD, FloatParam("rho", 1e-2, 0.5, log=True)),
        reduces_to=Reduction("sgd", {"rho": 0.0}),
        needs_closure=True,
        passes_per_step=2,
        state_slots=lambda c: _sam_state_slots(c),
        source="arXiv 2010.01412",
    )
)


def _sam_state_slots(config: Mapping[str, Any]) -> float:
    """The base's state, and the copy of the weights that SAM holds during a step."""
    base = OPTIMIZERS.get(config["base"])
    base_config = {k: v for k, v in config.items() if k not in ("base", "rho")}
    return base.state_slots(base.config(**base_config)) + 1.0


def get_optimizer(name: str) -> OptimizerSpec:
    """The spec registered under ``name``; :class:`UnknownNameError` lists the known names."""
    return OPTIMIZERS.get(name)


def build_optimizer(name: str, params: Iterable[Any], **overrides: Any) -> Optimizer:
    """``name``'s optimizer over ``params`` with its registry defaults and ``overrides``."""
    return OPTIMIZERS.get(name).build(params, **overrides)
