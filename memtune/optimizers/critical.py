"""Adam with a priority buffer (critical momenta, critical gradients): the names of the module
that held both, which now live in :mod:`memtune.optimizers.adam_cm`,
:mod:`memtune.optimizers.adam_cg` and their buffer, :mod:`memtune.optimizers._priority_buffer`
(kept for code and registries that name this one)."""

from memtune.optimizers.adam_cg import AdamCG, adam_cg
from memtune.optimizers.adam_cm import AdamCM, adam_cm

__all__ = ["AdamCG", "AdamCM", "adam_cg", "adam_cm"]
