"""Learning-rate schedules: the same LambdaLR for every arm, never a zero lr inside a run, and
adaptive memory reading the scheduled lr."""

from __future__ import annotations

import math

import pytest
import torch

from memtune.optimizers import AMSGD
from memtune.studies.spec import parse_spec
from memtune.tuning.training import TrialTraining, lr_multiplier


def test_cosine_with_warmup_rises_linearly_then_decays_to_the_floor():
    f = lr_multiplier("cosine", total_steps=100, warmup_fraction=0.1, floor=0.1)
    assert [f(t) for t in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == 1.0 and f(10) == 1.0
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert 0.1 < f(99) < 0.11


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear"])
def test_no_step_of_a_run_has_a_zero_learning_rate(kind):
    f = lr_multiplier(kind, total_steps=50, warmup_fraction=0.2, floor=0.0)
    assert all(f(t) > 0 for t in range(50))


def test_linear_decay_falls_evenly_after_warmup():
    f = lr_multiplier("linear", total_steps=10)
    assert [f(t) for t in range(0, 10, 5)] == pytest.approx([1.0, 0.5])


def test_am_sgd_skips_a_step_at_lr_zero_without_dividing_by_it():
    """At eta = 0 AM's beta would divide by 0: the step is defined as no move and no change of
    memory, and the next step's eta_prev / eta uses the last nonzero lr."""
    x = torch.nn.Parameter(torch.ones(3))
    optimizer = AMSGD([x], lr=0.1)
    x.grad = torch.tensor([1.0, -1.0, 0.5])
    optimizer.step()
    before = (x.detach().clone(), optimizer.state[x]["momentum_buffer"].clone())
    optimizer.param_groups[0]["lr"] = 0.0
    x.grad = torch.tensor([2.0, 1.0, -1.0])
    optimizer.step()
    assert torch.equal(x.detach(), before[0])
    assert torch.equal(optimizer.state[x]["momentum_buffer"], before[1])
    assert float(optimizer.state[x]["prev_lr"]) == 0.1
    optimizer.param_groups[0]["lr"] = 0.05
    optimizer.step()
    assert torch.isfinite(x.detach()).all() and not torch.equal(x.detach(), before[0])


def test_a_trial_steps_its_schedule_and_am_sees_the_scheduled_lr():
    training = TrialTraining(
        task="digits_mlp",
        task_options=None,
        optimizer="am_sgd",
        hyperparameters={"lr": 0.3, "warmup_fraction": 0.25},
        seed=1,
        smoke=True,
        epochs=2,
        schedule={"kind": "cosine", "floor": 0.0},
    )
    lrs = []
    training.optimizer.register_step_post_hook(
        lambda optimizer, args, kwargs: lrs.append(float(optimizer.state[p]["prev_lr"]))
    )
    p = next(training.task.model.parameters())
    for _ in range(2):
        assert not training.run_epoch().diverged
    assert len(lrs) == 16  # 2 epochs of 8 batches
    assert lrs[:4] == pytest.approx([0.075, 0.15, 0.225, 0.3])  # the warmup: 4 of 16 steps
    assert max(lrs) == pytest.approx(0.3) and 0 < lrs[-1] < 0.01
    assert all(math.isfinite(v) for v in lrs)


def test_the_default_schedule_is_cosine_with_a_searched_warmup_and_arms_may_pin_it():
    spec = parse_spec(
        {
            "task": "digits_mlp",
            "arms": [
                {"optimizer": "sgd", "baseline": True},
                {"optimizer": "adamw", "fixed": {"warmup_fraction": 0.0}},
            ],
        }
    )
    assert spec.schedule.kind == "cosine"
    searched = {arm.label: [p.name for p in spec.searched(arm)] for arm in spec.arms}
    assert "warmup_fraction" in searched["sgd"] and "warmup_fraction" not in searched["adamw"]
    assert spec.warmup_fraction(spec.arms[1]) == 0.0 and spec.warmup_fraction(spec.arms[0]) is None
    fixed = parse_spec({"task": "quadratic", "arms": [{"optimizer": "sgd"}],
                        "schedule": {"kind": "constant", "warmup_fraction": 0.1}})  # fmt: skip
    assert [p.name for p in spec.searched(fixed.arms[0])] == ["lr", "momentum", "warmup_fraction"]
    assert [p.name for p in fixed.searched(fixed.arms[0])] == ["lr", "momentum"]
