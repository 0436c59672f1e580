"""The study searcher without Ray running: budgets per arm, one best config, ties."""

from __future__ import annotations

from ray.tune.search import Searcher

from memtune.studies.records import Phase, TrialPlan
from memtune.workers.search import ASHA_OPTIONS, StudySearcher, asha_milestones


class _Scripted(Searcher):
    """Suggests the given learning rates in order."""

    def __init__(self, plan: TrialPlan, lrs: list[float]) -> None:
        super().__init__(metric="val_accuracy", mode="max")
        self.plan, self.lrs = plan, list(lrs)

    def suggest(self, trial_id: str):
        return {"run": self.plan, "lr": self.lrs.pop(0)} if self.lrs else None

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        pass


def _plan(phase: Phase, seed: int) -> TrialPlan:
    return TrialPlan(
        task="digits_mlp",
        task_options={},
        smoke=True,
        optimizer="sgd",
        fixed={},
        epochs=2,
        seed=seed,
        arm="sgd",
        phase=phase,
        metric="val_accuracy",
        mode="max",
    )


def _searcher(lrs: list[float]) -> StudySearcher:
    return StudySearcher(
        {"sgd": _Scripted(_plan(Phase.SEARCH, 0), lrs)},
        budget=len(lrs),
        seed_runs={"sgd": [_plan(Phase.SEED, 1), _plan(Phase.SEED, 2)]},
        epochs={"sgd": 2},
        metric="val_accuracy",
        mode="max",
    )


def test_a_tie_between_search_trials_is_broken_by_the_earliest_and_that_config_rerun():
    searcher = _searcher([0.1, 0.2, 0.3])
    for trial in ("a", "b", "c"):
        searcher.suggest(trial)
    # c and b tie at the best value and finish before a; b was issued first.
    searcher.on_trial_complete("c", {"val_accuracy": 0.9, "epoch": 2})
    searcher.on_trial_complete("b", {"val_accuracy": 0.9, "epoch": 2})
    searcher.on_trial_complete("a", {"val_accuracy": 0.5, "epoch": 2})
    assert searcher.best["sgd"] == {"lr": 0.2}
    reruns = [searcher.suggest(f"s{i}")["run"] for i in range(2)]
    assert [r.seed for r in reruns] == [1, 2] and all(r.hparams == {"lr": 0.2} for r in reruns)
    assert searcher.suggest("done") == Searcher.FINISHED


def test_a_trial_stopped_before_its_last_epoch_cannot_be_the_best():
    searcher = _searcher([0.1, 0.2])
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", {"val_accuracy": 0.99, "epoch": 1})  # ASHA stopped it
    searcher.on_trial_complete("b", {"val_accuracy": 0.8, "epoch": 2})
    assert searcher.best["sgd"] == {"lr": 0.2}


def test_asha_milestones_are_the_rungs_ray_computes():
    """The trials report these epochs at once; Ray's own bracket must decide at the same ones."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    for max_t in range(1, 300):
        bracket = _Bracket(
            min_t=ASHA_OPTIONS["grace_period"],
            max_t=max_t,
            reduction_factor=ASHA_OPTIONS["reduction_factor"],
            s=0,
        )
        assert sorted(milestone for milestone, _ in bracket._rungs) == list(
            asha_milestones(max_t)
        ), max_t
