"""What the entry points load: torch-free descriptors. The builders they name (``wine.py``,
``lion.py``) import torch, and are imported only where a trial runs."""

from __future__ import annotations

from types import MappingProxyType

from pydantic import Field

from memtune.optimizers import FloatParam, OptimizerSpec
from memtune.optimizers.options import Beta, NonNegative, OptimizerOptions
from memtune.studies.tasks import Options, TaskSpec


class WineOptions(Options):
    batch_size: int = Field(16, ge=1)
    width: int = Field(32, ge=1)


class LionOptions(OptimizerOptions):
    betas: tuple[Beta, Beta] = (0.9, 0.99)
    weight_decay: NonNegative = 0.0


def tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            name="wine_mlp",
            summary="MLP on sklearn's wine data (178 samples, 3 classes)",
            options=WineOptions,
            builder="memtune_example.wine:build",
            metric="val_accuracy",
            metrics={"val_loss": "min", "val_accuracy": "max"},
            data="178 samples: train 60% / val 20% / test 20% (split seed 0)",
            smoke={"width": 16},
        )
    ]


def optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="lion",
            target="memtune_example.lion:Lion",
            options=LionOptions,
            summary="Lion: the sign of an interpolated momentum (Chen et al., 2023)",
            defaults=MappingProxyType({"lr": 3e-3}),
            search_space=(
                FloatParam("lr", 1e-5, 1e-1, log=True),
                FloatParam("weight_decay", 1e-6, 1e-1, log=True),
            ),
            state_slots=lambda config: 1.0,  # one momentum buffer
            source="arXiv 2302.06675",
        )
    ]
