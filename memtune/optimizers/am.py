"""Adaptive memory momentum (Topollai & Choromanska, arXiv 2510.04988): the names of the module
that held both algorithms, which now live in :mod:`memtune.optimizers.am_sgd` and
:mod:`memtune.optimizers.am_adamw` (kept for code and registries that name this one)."""

from memtune.optimizers.am_adamw import AMAdamW, am_adamw
from memtune.optimizers.am_sgd import AMSGD, am_sgd

__all__ = ["AMSGD", "AMAdamW", "am_adamw", "am_sgd"]
