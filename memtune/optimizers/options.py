"""The arguments each optimizer accepts, as torch-free pydantic models.

The API and the study spec check an arm's pinned values against these without importing torch
(a 422 that names the argument); the optimizer classes keep torch's own argument checks, which
the worker runs when it builds the optimizer. Bounds here mirror those checks.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AMAdamWOptions",
    "AMSGDOptions",
    "AdamCGOptions",
    "AdamCMOptions",
    "AdamOptions",
    "Beta",
    "NonNegative",
    "OptimizerOptions",
    "SAMOptions",
    "SGDOptions",
]

NonNegative = Annotated[float, Field(ge=0.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
# The step implementation of a memory optimizer (memtune.optimizers.compiled); None = default.
Impl = Literal["compiled", "foreach", "forloop"] | None


class OptimizerOptions(BaseModel):
    """Arguments are checked by name and range; an unknown name is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: NonNegative = Field(1e-3, description="learning rate")


class SGDOptions(OptimizerOptions):
    momentum: NonNegative = 0.0
    dampening: float = 0.0
    weight_decay: NonNegative = 0.0
    nesterov: bool = False
    foreach: bool | None = None
    fused: bool | None = None


class AdamOptions(OptimizerOptions):
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: NonNegative = 1e-8
    weight_decay: NonNegative = 0.0
    amsgrad: bool = False
    foreach: bool | None = None
    fused: bool | None = None


class AMSGDOptions(OptimizerOptions):
    lam: NonNegative = Field(0.1, description="weight of the pull toward the heavy-ball step")
    beta_max: Beta = 0.9
    weight_decay: NonNegative = 0.0
    granularity: Literal["group", "tensor"] = "group"
    fixed_beta: Beta | None = None
    impl: Impl = Field(None, description="compiled, foreach or forloop (default: by size)")
    foreach: bool | None = None


class AMAdamWOptions(OptimizerOptions):
    betas: tuple[Beta, Beta] = (0.89, 0.999)
    eps: NonNegative = 1e-8
    lam: NonNegative = 0.1
    weight_decay: NonNegative = 1e-2
    coupling: Literal["paper", "scale_invariant"] = "paper"
    fixed_beta: Beta | None = None
    impl: Impl = Field(None, description="compiled, foreach or forloop (default: by size)")
    foreach: bool | None = None


class AdamCMOptions(OptimizerOptions):
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: NonNegative = 1e-8
    weight_decay: NonNegative = 0.0
    topc: int = Field(5, ge=0, strict=True, description="buffer size C")
    decay: float = Field(0.7, ge=0.0, le=1.0, description="priority decay per step")
    synced: bool = True
    impl: Impl = Field(None, description="compiled, foreach or forloop (default: by size)")
    foreach: bool | None = None


class AdamCGOptions(AdamCMOptions):
    topc: int = Field(10, ge=0, strict=True, description="buffer size C")


class SAMOptions(BaseModel):
    """SAM's own arguments; every other argument belongs to the base optimizer."""

    model_config = ConfigDict(extra="allow", frozen=True)

    base: str = Field("sgd", description="the registry name of the base optimizer")
    rho: NonNegative = Field(0.05, description="radius of the ascent step")
