"""torch.optim optimizers with memory: adaptive memory momentum, critical momenta, and the
baselines they are compared with, behind one registry.

The registry (names, defaults, search spaces, argument checks) imports no torch; the optimizer
classes and their functional cores are imported on first use, so the API and the study spec
can read the registry without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memtune.optimizers.registry import (
    OPTIMIZERS,
    ArgumentError,
    CategoricalParam,
    FloatParam,
    IntParam,
    OptimizerSpec,
    Reduction,
    Registry,
    UnknownNameError,
    build_optimizer,
    get_optimizer,
)

if TYPE_CHECKING:
    from memtune.optimizers.adam_cg import AdamCG, adam_cg
    from memtune.optimizers.adam_cm import AdamCM, adam_cm
    from memtune.optimizers.am_adamw import AMAdamW, am_adamw
    from memtune.optimizers.am_sgd import AMSGD, am_sgd
    from memtune.optimizers.sam import SAM

_LAZY = {
    "AMSGD": "memtune.optimizers.am_sgd",
    "AMAdamW": "memtune.optimizers.am_adamw",
    "am_adamw": "memtune.optimizers.am_adamw",
    "am_sgd": "memtune.optimizers.am_sgd",
    "AdamCG": "memtune.optimizers.adam_cg",
    "AdamCM": "memtune.optimizers.adam_cm",
    "adam_cg": "memtune.optimizers.adam_cg",
    "adam_cm": "memtune.optimizers.adam_cm",
    "SAM": "memtune.optimizers.sam",
}

__all__ = [
    "AMSGD",
    "OPTIMIZERS",
    "SAM",
    "AMAdamW",
    "AdamCG",
    "AdamCM",
    "ArgumentError",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "OptimizerSpec",
    "Reduction",
    "Registry",
    "UnknownNameError",
    "adam_cg",
    "adam_cm",
    "am_adamw",
    "am_sgd",
    "build_optimizer",
    "get_optimizer",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
