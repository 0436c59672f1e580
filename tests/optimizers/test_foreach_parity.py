"""The for-loop and the multi-tensor (foreach) paths compute the same thing, in float64."""

from __future__ import annotations

import pytest
import torch

from memtune.optimizers import build_optimizer
from memtune.optimizers.contract import regression_problem, train

CASES = [
    ("am_sgd", {}),
    ("am_sgd", {"granularity": "tensor", "weight_decay": 1e-3}),
    ("am_adamw", {"lr": 1e-2}),
    ("am_adamw", {"lr": 1e-2, "coupling": "scale_invariant", "weight_decay": 0.1}),
    ("adam_cm", {"lr": 1e-2}),
    ("adam_cm", {"lr": 1e-2, "synced": False, "topc": 3, "weight_decay": 1e-2}),
    ("adam_cm", {"lr": 1e-2, "topc": 0}),
    ("adam_cg", {"lr": 1e-2}),
    ("adam_cg", {"lr": 1e-2, "synced": False, "topc": 3, "weight_decay": 1e-2}),
    ("adam_cg", {"lr": 1e-2, "topc": 0, "weight_decay": 1e-3}),
]


@pytest.mark.parametrize(
    ("name", "overrides"),
    [pytest.param(n, o, id="-".join([n, *map(str, o.values())])) for n, o in CASES],
)
def test_foreach_matches_forloop_over_params_and_every_state_entry(name, overrides):
    runs = []
    for foreach in (False, True):
        model, loss_fn = regression_problem(dtype=torch.float64)
        optimizer = build_optimizer(name, model.parameters(), foreach=foreach, **overrides)
        train(model, optimizer, loss_fn, 8)
        runs.append((list(model.parameters()), optimizer))
    (params, loop), (foreach_params, multi) = runs
    for p, q in zip(params, foreach_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
        state, foreach_state = loop.state[p], multi.state[q]
        assert state.keys() == foreach_state.keys()
        for key in state:
            torch.testing.assert_close(
                state[key], foreach_state[key], rtol=1e-12, atol=1e-14, msg=key
            )
