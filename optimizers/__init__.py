"""torch.optim optimizers with memory: adaptive memory momentum, critical momenta, and the
baselines they are compared with, behind one registry. Depends on torch only."""

from __future__ import annotations

from optimizers.am import AMSGD, AMAdamW, am_adamw, am_sgd
from optimizers.critical import AdamCG, AdamCM, adam_cm
from optimizers.registry import (
    OPTIMIZERS,
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
from optimizers.sam import SAM

__all__ = [
    "AMSGD",
    "OPTIMIZERS",
    "SAM",
    "AMAdamW",
    "AdamCG",
    "AdamCM",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "OptimizerSpec",
    "Reduction",
    "Registry",
    "UnknownNameError",
    "adam_cm",
    "am_adamw",
    "am_sgd",
    "build_optimizer",
    "get_optimizer",
]
