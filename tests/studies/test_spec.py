"""Study specs: what validates, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtune.studies.spec import SpecError, load_spec, parse_spec

EXAMPLES = sorted(Path(__file__).parents[2].joinpath("memtune", "examples").glob("*.yaml"))


def _spec(**changes):
    base = {
        "task": "digits_mlp",
        "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
    }
    return {**base, **changes}


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 9 and any(p.stem == "demo" for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_study_validates(path):
    spec = load_spec(path)
    assert spec.task_spec.name == spec.task and spec.arms


def test_the_gpu_check_study_asks_half_a_gpu_per_trial():
    """bench/gpu_check.sh runs it on a GPU machine: it must stay a valid spec that puts two
    trials on one device."""
    spec = load_spec(Path(__file__).parents[2] / "bench" / "gpu_study.yaml")
    assert spec.resources.gpu == 0.5 and spec.baseline_arm.optimizer == "adamw"


def test_total_trials_counts_search_and_seed_runs_of_every_arm():
    spec = parse_spec(_spec(budget={"trials_per_arm": 3}, seeds=[5, 6]))
    assert spec.total_trials == 10  # 2 arms x (3 searched + 2 seed re-runs)


def test_defaults_come_from_the_task():
    spec = parse_spec(_spec())
    assert (spec.resolved_metric, spec.resolved_mode) == ("val_accuracy", "max")
    assert spec.baseline_arm.optimizer == "sgd"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"task": "mnist"}, "task", "known: ackley, char_lm, digits_mlp"),
        ({"arms": [{"optimizer": "adamx"}]}, "arms.0.optimizer", "known: adam, adam_cg, adam_cm"),
        ({"arms": []}, "arms", "at least 1"),
        ({"seeds": []}, "seeds", "at least 1"),
        ({"seeds": [1, 1]}, "seeds", "distinct"),
        ({"budget": {"trials_per_arm": 0}}, "budget.trials_per_arm", "greater than or equal to 1"),
        ({"resources": {"gpu": -1}}, "resources.gpu", "greater than or equal to 0"),
        ({"scheduler": "hyperband"}, "scheduler", "'fifo' or 'asha'"),
        ({"metric": "bleu"}, "metric", "digits_mlp reports"),
        ({"task_options": {"widht": 3}}, "task_options", "widht"),
        (
            {"arms": [{"optimizer": "sgd", "fixed": {"lr": -1}}]},
            "arms.0.fixed.lr",
            "greater than or equal to 0",
        ),
        (
            {"arms": [{"optimizer": "sgd", "fixed": {"lrr": 0.1}}]},
            "arms.0.fixed.lrr",
            "not an argument; known: lr, momentum",
        ),
        (
            {"arms": [{"optimizer": "am_adamw", "fixed": {"coupling": "loose"}}]},
            "arms.0.fixed.coupling",
            "'paper' or 'scale_invariant'",
        ),
        (
            {"arms": [{"optimizer": "sam", "fixed": {"base": "adamx"}}]},
            "arms.0.fixed.base",
            "known: adam",
        ),
        (
            {"arms": [{"optimizer": "sam", "fixed": {"base": "adamw", "momentum": 0.9}}]},
            "arms.0.fixed.momentum",
            "not an argument",
        ),
        (
            {"arms": [{"optimizer": "sgd", "space": {"rho": {}}}]},
            "arms.0.space.rho",
            "searches no 'rho'",
        ),
        (
            {"arms": [{"optimizer": "sgd", "space": {"lr": {"low": 1, "high": 0.1}}}]},
            "arms.0.space.lr",
            "below",
        ),
        ({"arms": [{"optimizer": "sgd"}, {"optimizer": "sgd"}]}, "arms", "distinct"),
        (
            {
                "arms": [
                    {"optimizer": "sgd", "baseline": True},
                    {"optimizer": "adam", "baseline": True},
                ]
            },
            "arms",
            "one arm",
        ),
        ({"colour": "blue"}, "colour", "Extra inputs"),
        ({"schedule": {"warmup_fraction": 1.5}}, "schedule.warmup_fraction", "[0, 1)"),
        ({"schedule": {"kind": "step"}}, "schedule.kind", "'cosine'"),
        (
            {"arms": [{"optimizer": "sgd", "fixed": {"warmup_fraction": 2}}]},
            "arms.0.fixed.warmup_fraction",
            "[0, 1)",
        ),
    ],
)
def test_bad_spec_error_names_the_field_and_the_reason(changes, field, message):
    with pytest.raises(SpecError) as error:
        parse_spec(_spec(**changes))
    assert error.value.field == field
    assert message in error.value.message


def test_spec_loads_from_json_and_yaml(tmp_path):
    (tmp_path / "s.json").write_text('{"task": "quadratic", "arms": [{"optimizer": "am_sgd"}]}')
    (tmp_path / "s.yaml").write_text("task: quadratic\narms:\n  - optimizer: am_sgd\n")
    assert load_spec(tmp_path / "s.json") == load_spec(tmp_path / "s.yaml")


def test_range_override_narrows_the_searched_range():
    spec = parse_spec(
        _spec(arms=[{"optimizer": "am_sgd", "space": {"lr": {"low": 0.1, "high": 0.5}}}])
    )
    (lr, _) = spec.arms[0].searched()
    assert (lr.low, lr.high, lr.log) == (0.1, 0.5, True)


def test_default_seeds_can_reach_significance_and_never_include_the_search_seed():
    one = parse_spec(_spec())
    assert one.seeds == [1, 2, 3, 4, 5, 6] and one.search_seeds == [0]
    three = parse_spec(
        _spec(arms=[*_spec()["arms"], {"optimizer": "adam"}, {"optimizer": "adamw"}])
    )
    assert len(three.seeds) == 7 and not three.warnings
    repeated = parse_spec(_spec(search_seed=5, budget={"repeats": 3}))
    assert repeated.search_seeds == [5, 6, 7] and repeated.seeds[0] == 8


def test_seeds_shared_with_the_search_are_refused_naming_seeds():
    with pytest.raises(SpecError) as error:
        parse_spec(_spec(seeds=[0, 1, 2, 3, 4, 5, 6]))
    assert error.value.field == "seeds" and "never saw" in error.value.message


def test_too_few_seeds_are_accepted_with_a_power_warning():
    spec = parse_spec(_spec(seeds=[1, 2, 3]))
    (warning,) = spec.warnings
    assert warning.startswith("seeds:") and "at least 6 seeds" in warning


def test_headline_is_the_test_twin_of_the_selection_metric():
    assert parse_spec(_spec()).headline_metric == "test_accuracy"
    function = parse_spec({"task": "quadratic", "arms": [{"optimizer": "sgd"}]})
    assert function.headline_metric == "value" and "no held-out data" in function.warnings[0]


def test_selecting_on_the_test_split_is_refused():
    with pytest.raises(SpecError) as error:
        parse_spec(_spec(metric="test_accuracy"))
    assert error.value.field == "metric" and "validation" in error.value.message


def test_each_arm_searches_lr_at_its_own_scale():
    spec = parse_spec(
        _spec(
            arms=[
                {"optimizer": "sgd", "baseline": True},
                {"optimizer": "am_sgd"},
                {"optimizer": "sam", "name": "sam_adamw", "fixed": {"base": "adamw"}},
            ]
        )
    )
    lr = {arm.label: next(p for p in arm.searched() if p.name == "lr") for arm in spec.arms}
    assert (lr["sgd"].low, lr["sgd"].high) == (1e-3, 1.0)
    assert (lr["am_sgd"].low, lr["am_sgd"].high) == (1e-2, 10.0)  # an EMA: about 10x
    assert (lr["sam_adamw"].low, lr["sam_adamw"].high) == (1e-4, 1e-1)  # its base's range


def test_equal_gradient_evaluations_halve_sams_epochs():
    spec = parse_spec(
        _spec(
            arms=[{"optimizer": "sgd", "baseline": True}, {"optimizer": "sam"}],
            budget={"epochs": 6, "equalize": "gradient_evaluations"},
        )
    )
    assert [spec.arm_epochs(arm) for arm in spec.arms] == [6, 3]


def test_adams_beta1_is_searched_only_when_an_arm_names_it_in_its_space():
    spec = parse_spec(
        {
            "task": "digits_mlp",
            "arms": [
                {"optimizer": "adamw", "baseline": True},
                {"optimizer": "adamw", "name": "tuned", "space": {"beta1": {"low": 0.5}}},
            ],
        }
    )
    plain, tuned = ([p.name for p in spec.searched(arm)] for arm in spec.arms)
    assert "beta1" not in plain and "beta1" in tuned
    beta1 = next(p for p in spec.searched(spec.arms[1]) if p.name == "beta1")
    assert (beta1.low, beta1.high) == (0.5, 0.99)
    with pytest.raises(SpecError) as refused:  # SGD has no betas: its momentum is its own
        parse_spec({"task": "digits_mlp", "arms": [{"optimizer": "sgd", "space": {"beta1": {}}}]})
    assert refused.value.field.startswith("arms.0.space.beta1")
