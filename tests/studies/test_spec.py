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


def test_total_trials_counts_search_and_seed_runs_of_every_search():
    spec = parse_spec(_spec(budget={"trials_per_search": 3, "searches": 4}, seeds=[5, 6]))
    assert spec.total_trials == 40  # 2 arms x 4 searches x (3 searched + 2 seed re-runs)


def test_the_defaults_are_six_searches_of_three_trials_each_re_run_on_two_seeds():
    spec = parse_spec(_spec())
    assert (spec.searches_per_arm, spec.budget.trials_per_search, spec.seeds) == (6, 3, [1, 2])
    assert spec.total_trials == 2 * 6 * (3 + 2) and not spec.warnings
    many = parse_spec(_spec(arms=[{"optimizer": "sgd", "baseline": True}] + [
        {"optimizer": "adam", "name": f"adam{i}"} for i in range(24)]))  # fmt: skip
    assert many.searches_per_arm == 7  # Holm over 24 comparisons needs a seventh search


def test_the_old_budget_names_still_read():
    spec = parse_spec(_spec(budget={"trials_per_arm": 8, "repeats": 1}))
    assert spec.budget.trials_per_search == 8 and spec.searches_per_arm == 1


def test_every_search_has_its_own_seed_stable_under_extension():
    spec = parse_spec(_spec())
    seeds = {s.seed for arm in spec.arms for s in spec.searches(arm)}
    assert len(seeds) == 12 and min(seeds) >= 2**30  # above every re-run seed
    assert all(s.sampler_seed == s.seed for s in spec.searches(spec.arms[0]))
    grown = parse_spec(
        _spec(arms=[*_spec()["arms"], {"optimizer": "adam"}], budget={"searches": 8})
    )
    assert grown.searches(grown.arms[1])[:6] == spec.searches(spec.arms[1])
    other = parse_spec(_spec(search_seed=1))
    assert not seeds & {s.seed for arm in other.arms for s in other.searches(arm)}


def test_two_arms_of_one_optimizer_search_with_different_seeds():
    spec = parse_spec(_spec(arms=[
        {"optimizer": "adamw", "name": "first", "baseline": True},
        {"optimizer": "adamw", "name": "second"}]))  # fmt: skip
    first, second = (spec.searches(arm) for arm in spec.arms)
    assert not {s.seed for s in first} & {s.seed for s in second}


def test_a_spec_of_schema_two_keeps_its_search_seeds():
    """Stored before each search had its own seed: search r of every arm trained on
    search_seed + r, so a resumed old study runs what it ran."""
    spec = parse_spec(_spec(schema_version=2, budget={"repeats": 2}, search_seed=5))
    (a0, a1), (b0, b1) = (spec.searches(arm) for arm in spec.arms)
    assert (a0.seed, a1.seed, b0.seed) == (5, 6, 5) and b1.sampler_seed == 6001
    assert spec.seeds[0] == 7 and a1.rerun_seeds == b0.rerun_seeds == tuple(spec.seeds)


def test_searches_set_aside_keep_their_seeds_and_are_counted_in_the_plan():
    spec = parse_spec(_spec(arms=[{"optimizer": "sgd", "baseline": True},
                                  {"optimizer": "am_sgd", "set_aside": 6}]))  # fmt: skip
    searches = spec.searches(spec.arms[1])
    assert len(searches) == 12 and [s.set_aside for s in searches] == [True] * 6 + [False] * 6
    assert spec.total_trials == 18 * 5


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
        (
            {"budget": {"trials_per_search": 0}},
            "budget.trials_per_search",
            "greater than or equal to 1",
        ),
        ({"budget": {"searches": 0}}, "budget.searches", "greater than or equal to 1"),
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


def test_with_one_search_the_default_seeds_can_reach_significance_over_seeds():
    one = parse_spec(_spec(budget={"searches": 1}))
    assert one.seeds == [1, 2, 3, 4, 5, 6]
    three = parse_spec(
        _spec(
            arms=[*_spec()["arms"], {"optimizer": "adam"}, {"optimizer": "adamw"}],
            budget={"searches": 1},
        )
    )
    assert len(three.seeds) == 7
    assert three.warnings == [w for w in three.warnings if w.startswith("budget.searches: one")]


def test_re_run_seeds_stay_below_every_search_seed_and_are_refused_naming_seeds():
    with pytest.raises(SpecError) as error:
        parse_spec(_spec(seeds=[1, 100_000]))
    assert error.value.field == "seeds" and "[0, 100,000)" in error.value.message
    spec = parse_spec(_spec(seeds=[99_999]))
    reruns = {seed for arm in spec.arms for s in spec.searches(arm) for seed in s.rerun_seeds}
    assert max(reruns) < min(spec.search_seeds)
    with pytest.raises(SpecError) as error:  # schema 2: search r trained on search_seed + r
        parse_spec(_spec(schema_version=2, seeds=[0, 1, 2, 3, 4, 5, 6]))
    assert error.value.field == "seeds" and "no search trained with" in error.value.message


def test_search_r_of_every_arm_re_runs_on_the_same_seeds_and_other_searches_on_others():
    spec = parse_spec(_spec(seeds=[7, 8]))
    first, second = (spec.searches(arm) for arm in spec.arms)
    assert [s.rerun_seeds for s in first] == [s.rerun_seeds for s in second]
    assert first[0].rerun_seeds == (7, 8) and first[2].rerun_seeds == (200_007, 200_008)
    assert len({seed for s in first for seed in s.rerun_seeds}) == 12
    assert parse_spec(_spec(search_seed=3)).seeds == [7, 8]  # another study: other seeds


def test_one_search_per_arm_is_accepted_with_a_warning_that_it_compares_configs():
    spec = parse_spec(_spec(budget={"searches": 1}, seeds=[1, 2, 3]))
    configs, seeds = spec.warnings
    assert (
        configs.startswith("budget.searches: one search per arm") and "config vs config" in configs
    )
    assert seeds.startswith("seeds:") and "at least 6 seeds" in seeds


def test_too_few_searches_are_accepted_with_a_power_warning():
    spec = parse_spec(_spec(budget={"searches": 3}))
    (warning,) = spec.warnings
    assert warning.startswith("budget.searches: with 3 searches") and "at least 4" in warning


def test_a_range_override_keeps_the_edges_it_does_not_move():
    spec = parse_spec(
        _spec(
            arms=[
                {
                    "optimizer": "sgd",
                    "baseline": True,
                    "space": {"momentum": {"high": 0.9}, "lr": {"low": 0.01}},
                }
            ]
        )
    )
    params = {p.name: p for p in spec.searched(spec.arms[0])}
    assert params["momentum"].edges == ("hard", "soft")  # 0 is a limit, 0.9 a choice
    assert params["lr"].edges == ("soft", "soft")
    assert params["warmup_fraction"].edges == ("hard", "soft")


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


def test_a_study_that_searches_nothing_defaults_to_one_search_and_says_so():
    pinned = {"kind": "constant", "warmup_fraction": 0.0}
    spec = parse_spec(
        _spec(
            arms=[
                {"optimizer": "sgd", "baseline": True, "fixed": {"lr": 0.1, "momentum": 0.9}},
                {"optimizer": "adam", "fixed": {"lr": 0.01}},
            ],
            schedule=pinned,
        )
    )
    assert spec.searches_per_arm == 1 and len(spec.seeds) == 6  # the seed-level default
    assert spec.warnings[0].startswith("budget.searches: nothing is searched")


def test_an_arm_that_searches_nothing_beside_searched_arms_is_warned_about():
    spec = parse_spec(
        _spec(
            arms=[
                {"optimizer": "sgd", "baseline": True},
                {"optimizer": "adam", "fixed": {"lr": 0.01, "warmup_fraction": 0.0}},
            ]
        )
    )
    assert spec.searches_per_arm == 6
    assert spec.warnings[0].startswith("arms: adam search nothing")


def test_a_yaml_spec_reads_1e_minus_5_as_the_number_it_means(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "task: digits_mlp\narms:\n  - {optimizer: adam, space: {lr: {low: 1e-5, high: 1e-2}}}\n"
    )
    (lr,) = load_spec(path).arms[0].searched()  # without the study's schedule: lr alone
    assert (lr.low, lr.high) == (1e-5, 1e-2)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"smoke": 0}, "smoke"),
        ({"resources": {"gpu": False}}, "resources.gpu"),
        ({"budget": {"epochs": True}}, "budget.epochs"),
        ({"target": "0.9"}, "target"),
    ],
)
def test_a_flag_is_not_a_number_and_a_string_is_not_a_number(change, field):
    with pytest.raises(SpecError) as error:
        parse_spec(_spec(**change))
    assert error.value.field == field
