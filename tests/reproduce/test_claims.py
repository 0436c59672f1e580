"""The claims' studies: budgets that can reach significance after Holm, their own seeds, the
settings each claim names, fair references."""

from __future__ import annotations

import pytest

from memtune.optimizers import OPTIMIZERS
from memtune.reproduce.claims import (
    CLAIM1_CHECKS,
    CLAIM1_SECONDARY,
    MODES,
    OVERHEAD_PAIRS,
    bench_workloads,
    build_claims,
    estimate_seconds,
)
from memtune.studies import stats
from memtune.studies.tasks import get_task

MEMORY_OPTIMIZERS = {"am_sgd", "am_adamw", "adam_cm"}


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_every_claims_budget_can_reach_significance_after_holm(mode):
    for claim in build_claims(mode):
        k = len(claim.checks)
        for spec in claim.studies:
            pooled = next((c.pooled for c in claim.checks if spec.name in c.pooled), ())
            if spec.searches_per_arm > 1:
                floor = stats.min_attainable_rank_sum_p(spec.searches_per_arm, k)
            else:  # a sweep's check pairs every lr's seeds
                floor = stats.min_attainable_p(len(spec.seeds) * max(len(pooled), 1), k)
            tested = any(spec.name in (c.study, *c.pooled) for c in claim.checks)
            assert floor < stats.ALPHA or not tested, (spec.name, floor)


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_optimizer_claims_search_with_a_search_to_spare_and_test_what_the_paper_says(mode):
    claims = {c.number: c for c in build_claims(mode)}
    for number in (1, 6):
        k = len(claims[number].checks)
        for spec in claims[number].studies:
            if spec.searches_per_arm > 1:  # one search lost must not put p < 0.05 out of reach
                assert stats.min_attainable_rank_sum_p(spec.searches_per_arm - 1, k) < stats.ALPHA
        assert all(c.source == "searches" for c in claims[number].checks)
    # 4 tasks x (AM-SGD, AM-AdamW) x (momentum 0.9: superior, momentum searched: non-inferior)
    assert len(claims[1].checks) == 16 and len(claims[1].secondary) == 8
    hypotheses = {(c.reference, c.hypothesis) for c in claims[1].checks}
    assert hypotheses == {
        ("sgd_m0.9", "superior"), ("adamw_b0.9", "superior"),
        ("sgd", "non_inferior"), ("adamw", "non_inferior"),
    }  # fmt: skip
    assert all(c.margin > 0 for c in claims[1].checks if c.hypothesis == "non_inferior")
    assert {c.arm for c in claims[1].secondary} == {"am_adamw_si"}  # not the paper's coupling


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_study_searches_with_its_own_seed_and_reruns_on_seeds_no_search_saw(mode):
    specs = [s for c in build_claims(mode) for s in c.studies]
    assert len({s.search_seed for s in specs}) == len(specs)  # c1-quadratic != c1-logreg
    searched = [s for s in specs if s.searches_per_arm > 1]
    reruns = [set(s.seeds) for s in searched]
    assert all(not a & b for i, a in enumerate(reruns) for b in reruns[i + 1 :])
    for spec in specs:
        assert not set(spec.seeds) & set(spec.search_seeds), spec.name


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_check_names_its_claims_studies_and_both_arms(mode):
    for claim in build_claims(mode):
        studies = {spec.name: spec for spec in claim.studies}
        for check in (*claim.checks, *claim.secondary):
            assert check.arm in MEMORY_OPTIMIZERS | {"am_adamw_si", "am_adamw_nowarmup"}
            if check.source == "bench":
                workload = check.study.removeprefix("bench-")
                assert workload in bench_workloads(MODES[mode])
                assert OVERHEAD_PAIRS[check.arm] == check.reference
                continue
            for name in check.pooled or (check.study,):
                labels = {arm.label for arm in studies[name].arms}
                assert {check.arm, check.reference} <= labels, (name, check.label)
        for spec in claim.studies:  # fair: every arm the same budget
            assert len({len(spec.searches(arm)) for arm in spec.arms}) == 1


@pytest.mark.parametrize("mode", list(MODES))
def test_the_fixed_arms_of_claims_four_and_five_pin_every_setting_the_report_names(mode):
    """Claims 4 and 5 run no search: their one trial per seed must train the papers' settings,
    not a random draw of whatever the lr left free (Adam+CM ran topc 11, decay 0.85 when only
    lr was pinned)."""
    expected = {
        "adam": {},
        "adam_cm": {"topc": 5, "decay": 0.7},
        "adam_cg": {"topc": 10, "decay": 0.7},
        "sam": {"base": "adam", "rho": 0.05},
    }
    for claim in build_claims(mode):
        if claim.number not in (4, 5):
            continue
        for spec in claim.studies:
            for arm in spec.arms:
                assert spec.searched(arm) == [], (spec.name, arm.label)  # nothing left to draw
                lr = arm.fixed["lr"]
                assert arm.fixed == {"lr": lr, **expected[arm.optimizer]}, (spec.name, arm.label)
            assert spec.searches_per_arm == 1  # configs compared over random starts


def test_am_adamw_searches_lambda_down_to_1e_4_in_both_couplings_am_sgd_keeps_its_range():
    lam = {p.name: p for p in OPTIMIZERS.get("am_adamw").space()}["lam"]
    assert (lam.low, lam.high, lam.log) == (1e-4, 1.0, True)
    assert {p.name: p for p in OPTIMIZERS.get("am_sgd").space()}["lam"].low == 1e-2
    claim = build_claims("quick")[0]
    study = next(s for s in claim.studies if s.name == "c1-quadratic-am_adamw")
    arms = {arm.label: arm for arm in study.arms}
    assert arms["am_adamw_si"].fixed == {"coupling": "scale_invariant"}
    assert "coupling" not in arms["am_adamw"].fixed  # the paper's, the default
    for label in ("am_adamw", "am_adamw_si"):
        searched = {p.name: p for p in study.searched(arms[label])}
        assert searched["lam"].low == 1e-4
    assert set(CLAIM1_CHECKS) == {"am_sgd", "am_adamw"} and set(CLAIM1_SECONDARY) == {"am_adamw_si"}


def test_the_lr_sweep_pins_lambda_at_its_default_and_varies_the_learning_rate_alone():
    claim = build_claims("quick")[0]
    sweep = claim.sweeps[0]
    specs = {s.name: s for s in claim.studies}
    for arm in sweep.arms:
        lrs = sweep.lrs[arm]
        registry = {p.name: p for p in OPTIMIZERS.get(arm.split("_m")[0].split("_b")[0]).space()}
        assert lrs[0] == pytest.approx(registry["lr"].low, rel=0.01)
        assert lrs[-1] == pytest.approx(registry["lr"].high, rel=0.01)
        fixed = [
            next(a for a in specs[name].arms if a.label == arm).fixed for name in sweep.studies
        ]
        assert [f["lr"] for f in fixed] == list(lrs)
        rest = [{k: v for k, v in f.items() if k != "lr"} for f in fixed]
        assert all(r == rest[0] for r in rest)  # only the lr moves
        if arm.startswith("am_"):
            assert rest[0]["lam"] == OPTIMIZERS.get(arm).defaults["lam"]
    assert all(not specs[n].searched(a) for n in sweep.studies for a in specs[n].arms)


def test_claim_three_runs_a_few_thousand_steps_up_to_a_learning_rate_of_ten():
    claim = build_claims("quick")[2]
    (check,) = claim.checks
    assert (check.reference, check.source, check.threshold) == (
        "adamw_nowarmup",
        "stability",
        103.0,
    )
    assert check.pooled == claim.sweeps[0].studies
    spec = claim.studies[0]
    task = get_task(spec.task).create(spec.task_options, seed=0, device="cpu")
    steps = sum(1 for _ in task.batches(0)) * spec.budget.epochs
    assert 2000 <= steps <= 5000
    assert max(MODES["quick"].warmup_lrs) >= 10.0
    warmups = {a.label: a.fixed["warmup_fraction"] for a in spec.arms}
    assert warmups == {"am_adamw_nowarmup": 0.0, "adamw_nowarmup": 0.0, "adamw_warmup": 0.1}
    assert spec.schedule.kind == "constant"


def test_the_runtime_estimate_is_printed_for_quick_and_full_and_full_is_far_longer():
    quick = estimate_seconds(build_claims("quick"), MODES["quick"])
    full = estimate_seconds(build_claims("full"), MODES["full"])
    assert 0 < quick < 3600 and full > 10 * quick
