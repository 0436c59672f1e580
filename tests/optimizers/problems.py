"""Small deterministic problems the optimizer tests train on (memtune's contract module's)."""

from memtune.optimizers.contract import make_closure, regression_problem, train

__all__ = ["make_closure", "regression_problem", "train"]
