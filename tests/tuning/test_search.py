"""The study searcher without Ray running: budgets per arm, one best config, ties."""

from __future__ import annotations

import math

from ray.tune.search import Searcher

from memtune.studies.records import Phase, TrialPlan
from memtune.tuning.search import ASHA_OPTIONS, StudySearcher, asha_milestones


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


def _optuna_searcher(storage: str, budget: int) -> StudySearcher:
    """One arm searched by Ray's OptunaSearch (TPE, seeded) on an RDB storage, as the runner
    builds it."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from memtune.studies.spec import parse_spec
    from memtune.tuning.runner import _ArmSpace

    spec = parse_spec(
        {"name": "t", "task": "digits_mlp", "arms": [{"optimizer": "sgd", "baseline": True}]}
    )
    search = OptunaSearch(
        space=_ArmSpace(spec.arms[0].searched(spec.schedule), _plan(Phase.SEARCH, 0)),
        metric="val_accuracy",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=2),
        storage=optuna.storages.RDBStorage(storage),
        study_name="t:sgd",
    )
    return StudySearcher(
        {"sgd": search},
        budget=budget,
        seed_runs={"sgd": []},
        epochs={"sgd": 2},
        metric="val_accuracy",
        mode="max",
    )


def _finish(searcher: StudySearcher, trial_id: str) -> dict:
    config = searcher.suggest(trial_id)
    value = -abs(math.log10(config["lr"]) + 1.3)  # best near lr = 0.05
    searcher.on_trial_complete(trial_id, {"val_accuracy": value, "epoch": 2})
    return config


def test_a_restored_searcher_suggests_what_the_uninterrupted_one_did(tmp_path):
    """A trial issued after Tune's last snapshot is asked of Optuna's storage, then lost with
    the driver. The restored searcher issues it anew with the same config and goes on as if
    nothing had happened: the orphan (RUNNING in the storage for ever) is failed, where TPE's
    constant liar would otherwise count it as a bad result and steer the search away."""
    import optuna

    uninterrupted = _optuna_searcher(f"sqlite:///{tmp_path / 'a.db'}", budget=8)
    expected = [_finish(uninterrupted, f"t{i}") for i in range(8)]

    storage = f"sqlite:///{tmp_path / 'b.db'}"
    killed = _optuna_searcher(storage, budget=8)
    for i in range(4):
        _finish(killed, f"t{i}")
    killed.save(str(tmp_path / "snapshot.pkl"))
    lost = killed.suggest("t4")  # asked of the storage, then the driver dies
    assert lost == expected[4]

    restored = _optuna_searcher(storage, budget=8)
    restored.restore(str(tmp_path / "snapshot.pkl"))
    resumed = [_finish(restored, f"r{i}") for i in range(4, 8)]
    assert resumed == expected[4:]
    states = [t.state for t in optuna.load_study(study_name="t:sgd", storage=storage).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the orphan, and only it
    assert states.count(optuna.trial.TrialState.COMPLETE) == 8


def test_a_modelled_trial_waits_for_every_earlier_trial_of_its_search():
    """After its random start-up trials, a search proposes the next config only when all its
    trials so far have ended, so TPE never sees a half-finished history: the search's configs
    do not depend on which trial happened to finish first."""
    searcher = StudySearcher(
        {"sgd": _Scripted(_plan(Phase.SEARCH, 0), [0.1, 0.2, 0.3, 0.4])},
        budget=4,
        startup=2,
        seed_runs={"sgd": []},
        epochs={"sgd": 2},
        metric="val_accuracy",
        mode="max",
    )
    assert searcher.suggest("a")["lr"] == 0.1 and searcher.suggest("b")["lr"] == 0.2
    assert searcher.suggest("c") is None  # the start-up trials still run
    searcher.on_trial_complete("a", {"val_accuracy": 0.5, "epoch": 2})
    assert searcher.suggest("c") is None  # b still runs
    searcher.on_trial_complete("b", {"val_accuracy": 0.6, "epoch": 2})
    assert searcher.suggest("c")["lr"] == 0.3
    assert searcher.suggest("d") is None  # c is modelled on a and b; d waits for c too


def test_a_pinned_arm_reruns_its_one_config_on_its_seeds_even_when_the_search_trial_diverged():
    """An arm that searches nothing has no config to select: a sweep must see its setting
    diverge (or not) on every seed, not lose the seeds because the search trial diverged."""

    def searcher(pinned: set[str]) -> StudySearcher:
        return StudySearcher(
            {"sgd": _Scripted(_plan(Phase.SEARCH, 0), [3.0])},
            budget=1,
            seed_runs={"sgd": [_plan(Phase.SEED, 1), _plan(Phase.SEED, 2)]},
            epochs={"sgd": 2},
            metric="val_accuracy",
            mode="max",
            pinned=pinned,
        )

    searched, pinned = searcher(set()), searcher({"sgd"})
    for s in (searched, pinned):
        s.suggest("a")
        s.on_trial_complete("a", {"val_accuracy": math.nan, "epoch": 1})  # diverged
    assert searched.best["sgd"] is None and searched.suggest("s") == Searcher.FINISHED
    assert pinned.best["sgd"] == {"lr": 3.0}
    reruns = [pinned.suggest(f"s{i}")["run"] for i in range(2)]
    assert [r.seed for r in reruns] == [1, 2] and all(r.hparams == {"lr": 3.0} for r in reruns)


def test_a_searcher_snapshot_that_names_the_old_package_restores_and_goes_on(tmp_path):
    """memtune.tuning was memtune.workers. Tune pickles a study's searcher (with its search
    spaces) by module path, so an experiment snapshotted by the old version names
    ``memtune.workers.*``; after an upgrade that study still resumes, to the same configs."""
    import pickle

    from memtune.tuning.runner import _ArmSpace

    uninterrupted = _optuna_searcher(f"sqlite:///{tmp_path / 'a.db'}", budget=8)
    expected = [_finish(uninterrupted, f"t{i}") for i in range(8)]

    storage = f"sqlite:///{tmp_path / 'b.db'}"
    before = _optuna_searcher(storage, budget=8)
    for i in range(4):
        _finish(before, f"t{i}")
    # What the old version wrote: the same pickle with the old package's name in it (protocol
    # 0 writes each class as "module\nname", so the rename is a replacement of text).
    written = pickle.dumps(before.__dict__, protocol=0)
    assert b"memtune.tuning.runner\n_ArmSpace" in written
    old = written.replace(b"memtune.tuning.", b"memtune.workers.")
    assert b"memtune.tuning." not in old
    (tmp_path / "old-snapshot.pkl").write_bytes(old)

    restored = _optuna_searcher(storage, budget=8)
    restored.restore(str(tmp_path / "old-snapshot.pkl"))
    space = restored.searchers["sgd"]._space
    assert type(space) is _ArmSpace  # the class of memtune.tuning, not a copy
    assert [_finish(restored, f"r{i}") for i in range(4, 8)] == expected[4:]


def test_the_old_package_name_is_the_new_modules_and_imports_nothing_heavy():
    import subprocess
    import sys

    script = (
        "import sys, memtune.workers\n"
        "assert 'torch' not in sys.modules and 'ray' not in sys.modules\n"
        "import memtune.workers.sinks as old, memtune.tuning.sinks as new\n"
        "from memtune.workers.search import StudySearcher\n"
        "import memtune.tuning.search as search\n"
        "assert old is new and StudySearcher is search.StudySearcher\n"
        "assert old.__spec__.name == 'memtune.tuning.sinks'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_callbacks_an_old_experiment_pickled_in_the_runner_still_load():
    """The runner's Tune callbacks moved to memtune.tuning.callbacks; an experiment pickled
    before names them memtune.workers.runner._Recorder and _CancelStopper."""
    import pickle

    from memtune.tuning.callbacks import _CancelStopper, _Recorder

    for cls in (_Recorder, _CancelStopper):
        callback = cls.__new__(cls)
        callback.__setstate__({"key": "/runs/study-1/study"})
        written = pickle.dumps(callback, protocol=0)
        old = written.replace(
            f"memtune.tuning.callbacks\n{cls.__name__}".encode(),
            f"memtune.workers.runner\n{cls.__name__}".encode(),
        )
        assert old != written
        loaded = pickle.loads(old)
        assert type(loaded) is cls and loaded.key == "/runs/study-1/study"
