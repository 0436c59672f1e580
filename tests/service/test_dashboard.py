"""The dashboard end to end in headless Chromium (Debian's ``chromium``, driven by Playwright),
over a store holding finished studies; and the ``/curves`` aggregates it plots.

Each browser test reads the plots' own data from the page (``element.data``, where plotly
keeps it) and fails on any console error. Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
from pathlib import Path

import pytest

from memtune.service import services
from memtune.service.services import curves
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.studies.records import Phase, StudyStatus, TrialState
from tests.service.conftest import RunningServer
from tests.synthetic_study import ARMS, write_finished_study

CHROMIUM = os.environ.get("MEMTUNE_CHROMIUM") or shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
SEARCHES, TRIALS_PER_SEARCH, EPOCHS = 6, 4, 8
TRIALS_PER_ARM = SEARCHES * TRIALS_PER_SEARCH
SEED_RUNS = SEARCHES * 2  # each search's config on the study's two seeds
ADMIN = services.Caller(owner_id=None, owner="admin")


@pytest.fixture(scope="session")
def finished_store(tmp_path_factory) -> tuple[str, list[int]]:
    """One store with two finished studies, built once per test run."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'finished.db'}"
    db = Database(url)
    ids = [
        write_finished_study(
            db,
            searches=SEARCHES,
            trials_per_search=TRIALS_PER_SEARCH,
            epochs=EPOCHS,
            name=name,
            seed=i,
        )
        for i, name in enumerate(["first", "second"])
    ]
    return url, ids


# -- the aggregates (no browser) --------------------------------------------------------------


def test_curves_are_the_mean_and_interval_of_the_seed_runs(finished_store):
    url, (study_id, _) = finished_store
    db = Database(url)
    curves = services.get_curves(db, caller=ADMIN, study_id=study_id, search_curves=5)
    with db.session() as session:
        repository = Repository(session)
        trials = repository.trials_of(study_id)
        seeds = [t for t in trials if t.arm == "am_sgd" and t.phase == Phase.SEED]
        history = repository.metrics_of([t.id for t in seeds])
        at_epoch_3 = [history[t.id][2].values["val_accuracy"] for t in seeds]
    arm = next(a for a in curves.arms if a.arm == "am_sgd")
    assert arm.seed_runs == len(seeds) == SEED_RUNS and arm.epochs == list(range(1, EPOCHS + 1))
    assert arm.mean[2] == pytest.approx(statistics.fmean(at_epoch_3))
    assert arm.ci_low[2] < arm.mean[2] < arm.ci_high[2]
    assert len(arm.search) == TRIALS_PER_ARM and [p.number for p in arm.search] == list(
        range(1, TRIALS_PER_ARM + 1)
    )
    assert len(arm.search_curves) == 5  # sampled, first and last kept
    assert arm.search_curves[0].trial_id == arm.search[0].trial_id
    assert arm.search_curves[-1].trial_id == arm.search[-1].trial_id
    assert arm.mean_beta is not None and len(arm.mean_beta) == EPOCHS  # an AM arm
    assert next(a for a in curves.arms if a.arm == "sgd").mean_beta is None


def test_curves_of_a_diverged_search_trial_keep_its_worst_value(finished_store):
    url, (study_id, _) = finished_store
    curves = services.get_curves(Database(url), caller=ADMIN, study_id=study_id)
    diverged = [p for a in curves.arms for p in a.search if p.state == TrialState.DIVERGED]
    assert diverged and all(p.final == -math.inf for p in diverged)


def test_curves_answer_404_for_a_study_that_is_not_there(finished_store):
    url, _ = finished_store
    server = RunningServer(url)
    try:
        response = server.client().get("/studies/999/curves")
        assert response.status_code == 404 and "study 999" in response.json()["detail"][0]["msg"]
    finally:
        server.stop()


# -- in the browser ---------------------------------------------------------------------------

browser_test = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)"
)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.console_errors = []
    opened.on("console", lambda m: m.type == "error" and opened.console_errors.append(m.text))
    opened.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    yield opened
    context.close()


@pytest.fixture
def served(finished_store):
    url, ids = finished_store
    server = RunningServer(url)
    yield server, ids
    server.stop()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _traces(page, element_id: str) -> list[dict]:
    return page.evaluate(
        f"""() => document.getElementById({element_id!r}).data.map(t => ({{
            name: t.name, meta: t.meta || null, n: (t.x || []).length, type: t.type || 'scatter',
            dash: (t.line || {{}}).dash || null, dimensions: (t.dimensions || []).length }}))"""
    )


@pytest.mark.slow
def test_study_page_shows_the_verdict_and_plots_the_right_data(served, page):
    server, (study_id, _) = served
    scripts: list[str] = []
    page.on("request", lambda r: r.resource_type == "script" and scripts.append(r.url))
    reads: list[str] = []
    page.on("request", lambda r: "/trials?" in r.url and reads.append(r.url.split("?")[1]))
    page.goto(server.base + "/")
    page.click(f"a[href='/view/studies/{study_id}']")
    page.wait_for_selector("#verdict-table")
    page.wait_for_function("document.getElementById('tuning').data !== undefined")
    _shot(page, "study")
    # Above the fold the small build of plotly.js draws everything; the full one waits.
    assert any(u.endswith("/static/plotly-basic.min.js") for u in scripts)
    assert not any(u.endswith("/static/plotly.min.js") for u in scripts)

    verdict = server.client().get(f"/studies/{study_id}/verdict").json()
    rows = page.locator("#verdict-table tbody tr")
    assert rows.count() == len(ARMS)
    assert [rows.nth(i).get_attribute("data-arm") for i in range(rows.count())] == [
        a["arm"] for a in verdict["arms"]
    ]
    labels = page.locator("#verdict-table tbody td[class^=label-]").all_inner_texts()
    assert labels == [c["outcome"] for c in verdict["comparisons"]]
    assert page.inner_text("#budget").startswith("Budget: 6 independent searches of 4 trials")
    statements = page.locator("#statements li").all_inner_texts()
    assert statements and all("4-trial searches" in s for s in statements)

    # every search's score, beside its arm's interval: the points the verdict's test reads
    scores = _traces(page, "scores")
    points = {t["name"]: t["n"] for t in scores if t["meta"] == "search"}
    diverged = {t["name"].split()[0]: t["n"] for t in scores if t["meta"] == "diverged"}
    for arm in verdict["arms"]:
        finite = [s for s in arm["searches"] if s["score"] not in ("-inf", None)]
        name = f"{arm['arm']} (baseline)" if arm["baseline"] else arm["arm"]
        assert points[name] == len(finite)
        assert points[name] + diverged.get(arm["arm"], 0) == SEARCHES
    xs = page.evaluate(
        "document.getElementById('scores').data.filter(t => t.meta === 'search').map(t => t.x)"
    )
    expected = [
        sorted(float(s["score"]) for s in a["searches"] if s["score"] not in ("-inf", None))
        for a in reversed(verdict["arms"])  # drawn bottom-up: the baseline on top
    ]
    assert [sorted(x) for x in xs] == [pytest.approx(e) for e in expected]
    assert sum(t["meta"] == "interval" for t in scores) == len(ARMS)

    curves = _traces(page, "curves")
    means = [t for t in curves if t["meta"] == "mean"]
    assert [t["name"].split(" ")[0] for t in means] == ["sgd", "am_sgd", "adam_cm"]
    assert all(t["n"] == EPOCHS for t in means)
    assert "(baseline)" in means[0]["name"] and means[0]["dash"] == "dash"
    assert all("(baseline)" not in t["name"] for t in means[1:])
    search = [t for t in curves if t["meta"] == "search"]  # an arm's sampled trials: one trace
    assert len(search) == len(ARMS)
    api_curves = server.client().get(f"/studies/{study_id}/curves").json()
    assert [t["n"] for t in search] == [  # every sampled trial's epochs, a null after each
        sum(len(c["values"]) + 1 for c in arm["search_curves"]) for arm in api_curves["arms"]
    ]
    assert all(len(arm["search_curves"]) == TRIALS_PER_ARM for arm in api_curves["arms"])
    assert sum(t["meta"] == "band" for t in curves) == len(ARMS)

    tuning = _traces(page, "tuning")
    assert len(tuning) == len(ARMS) and all(t["n"] == TRIALS_PER_ARM for t in tuning)

    page.locator("#search").scroll_into_view_if_needed()  # drawn when it comes into view
    page.wait_for_selector("#search[data-drawn]")
    _shot(page, "study")
    assert any(u.endswith("/static/plotly.min.js") for u in scripts)  # parcoords: full build
    for arm in api_curves["arms"]:
        diverged = sum(p["state"] == "diverged" for p in arm["search"])
        lr = {t["meta"] or "final": t["n"] for t in _traces(page, f"lr-{arm['arm']}")}
        assert lr == {"final": TRIALS_PER_ARM - diverged, "diverged": diverged}
        history = _traces(page, f"history-{arm['arm']}")
        assert [t["n"] for t in history] == [TRIALS_PER_ARM, TRIALS_PER_ARM]
        coords = _traces(page, f"coords-{arm['arm']}")
        searched = 2 if arm["arm"] == "adam_cm" else 1  # lr (+ topc), then the metric
        assert coords[0]["type"] == "parcoords" and coords[0]["dimensions"] == searched + 1
    memory = _traces(page, "memory")
    assert [t["name"] for t in memory] == ["am_sgd: mean beta", "adam_cm: final vs buffer size C"]

    total = len(ARMS) * (TRIALS_PER_ARM + SEED_RUNS)  # more than a page: the table pages
    assert page.locator("#trials tr").count() == 50
    assert page.inner_text("#trials-shown") == f"trials 1–50 of {total}"
    assert page.locator("#trials-prev").is_disabled()
    assert reads == ["limit=50"]  # the first look read the one page it shows
    page.click("#trials-next")  # reads every trial now
    shown = "document.getElementById('trials-shown').textContent"
    last = min(100, total)
    page.wait_for_function(f"{shown} === 'trials 51–{last} of {total}'")
    assert page.locator("#trials tr").count() == last - 50
    assert page.locator("#trials-next").is_disabled() == (total <= 100)
    page.click("th.sortable[data-key=final_metric]")  # a sort goes back to its first page
    page.wait_for_function(f"{shown} === 'trials 1–50 of {total}'")
    finals = page.locator("#trials tr td:nth-child(6)").all_inner_texts()
    numbers = [float(v) for v in finals if v not in ("–", "−∞")]
    assert numbers == sorted(numbers) and finals[0] == "−∞"  # diverged first, ascending
    page.locator("#trials tr").first.click()
    page.wait_for_function("document.getElementById('trial-plot')?.data !== undefined")
    assert _traces(page, "trial-plot")[0]["n"] >= 1
    page.locator("input[name=x-axis][value=time]").check()
    page.wait_for_timeout(200)
    assert page.evaluate("document.getElementById('curves').layout.xaxis.title.text") == (
        "training time (s)"
    )
    assert page.console_errors == []


@pytest.mark.slow
def test_a_bad_spec_shows_each_message_next_to_its_field(served, page):
    server, _ = served
    page.goto(server.base + "/")
    page.wait_for_selector("input.arm")
    page.fill("#f-epochs", "0")
    for box in page.locator("input.arm").all():
        box.uncheck()
    page.click("#new-study button[type=submit]")
    page.wait_for_selector(".field-error")
    _shot(page, "bad-spec")
    next_to_epochs = page.locator("[data-loc='budget.epochs'] + .field-error").inner_text()
    next_to_arms = page.locator("[data-loc='arms'] + .field-error").inner_text()
    assert "greater than or equal to 1" in next_to_epochs
    assert "at least 1" in next_to_arms
    assert page.console_errors == [] or all("422" in e for e in page.console_errors)


@pytest.mark.slow
def test_a_good_spec_from_the_form_is_queued(served, page):
    server, _ = served
    page.goto(server.base + "/")
    page.wait_for_selector("input.arm")
    page.fill("#f-name", "from-the-form")
    page.click("#new-study button[type=submit]")
    page.wait_for_selector("#f-result a")
    study_id = int(page.locator("#f-result a").inner_text().split()[-1])
    study = server.client().get(f"/studies/{study_id}").json()
    assert study["name"] == "from-the-form" and study["status"] == "queued"
    assert [a["arm"] for a in study["progress"]] == ["sgd", "am_sgd"]
    assert next(a for a in study["progress"] if a["arm"] == "sgd")["baseline"]
    assert page.console_errors == []


@pytest.mark.slow
def test_compare_page_plots_every_arm_of_every_study_and_the_profile(served, page):
    server, ids = served
    page.goto(server.base + f"/view/compare?ids={ids[0]},{ids[1]}")
    page.wait_for_function("document.getElementById('profile').data !== undefined")
    _shot(page, "compare")
    curves = _traces(page, "compare-curves")
    assert len(curves) == len(ARMS) * 2 and all(t["n"] == EPOCHS for t in curves)
    profile = _traces(page, "profile")
    assert [t["name"] for t in profile] == [a["optimizer"] for a in ARMS]  # arm labels
    assert page.locator("#ratios tbody tr").count() == len(ARMS)
    layout_range = page.evaluate("document.getElementById('profile').layout.xaxis.range")
    assert layout_range == [1, 4]  # tau from 1 to 4
    # each study's ratios are over the profiled arms: its fastest has 1
    for study_id in ids:
        verdict = server.client().get(f"/studies/{study_id}/verdict").json()
        times = [a["time_to_target_s"] for a in verdict["arms"]]
        column = page.locator(f"#ratios thead th:has-text('#{study_id} ')")
        assert column.count() == 1
        finite = [t for t in times if t is not None]
        if finite:
            row = page.locator("#ratios tbody tr").nth(times.index(min(finite)))
            index = ids.index(study_id) + 2  # the arm's name, then one cell per study
            assert row.locator(f"td:nth-child({index})").inner_text() == "1"
    assert page.console_errors == []


@pytest.mark.slow
def test_a_running_study_updates_without_a_reload(finished_store, page, tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    db = Database(url)
    study_id = write_finished_study(db, searches=2, trials_per_search=3, epochs=3)
    with db.session() as session:
        study = Repository(session).find_study(study_id, None)
        study.status, study.verdict = StudyStatus.RUNNING, None
    server = RunningServer(url)
    try:
        page.goto(server.base + f"/view/studies/{study_id}")
        page.wait_for_selector("#trials tr")
        before = page.locator("#trials tr").count()
        with db.session() as session:
            Repository(session).upsert_trial(
                study_id, "late", arm="sgd", phase=Phase.SEARCH, seed=0, config={"lr": 0.1},
                state=TrialState.COMPLETED, final_metric=0.5, best_metric=0.5, epochs_done=3,
            )  # fmt: skip
        page.wait_for_function(
            f"document.querySelectorAll('#trials tr').length === {before + 1}", timeout=15_000
        )
        assert page.locator("#cancel").is_visible()  # running: cancel is offered
        assert page.console_errors == []
    finally:
        server.stop()


@pytest.mark.slow
def test_a_server_with_keys_says_the_key_is_missing_then_works_with_it(finished_store, page):
    url, (study_id, _) = finished_store
    server = RunningServer(url, admin_key="dashboard-admin")
    try:
        page.goto(server.base + "/")
        page.wait_for_function("document.getElementById('notice').textContent.includes('API key')")
        _shot(page, "key-missing")
        page.fill("#api-key", "dashboard-admin")
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector(f"a[href='/view/studies/{study_id}']")
        assert page.inner_text("#notice") == ""
        page.goto(server.base + f"/view/studies/{study_id}")  # kept in the browser
        page.wait_for_selector("#verdict-table")
    finally:
        server.stop()


def test_the_page_interval_is_the_verdicts_t_interval():
    from memtune.studies.stats import mean_interval

    for values in ([0.5], [0.5, 0.5], [0.81, 0.84, 0.8, 0.79, 0.9], [1.0, 2.0, 4.0]):
        expected = mean_interval(values)
        mean, low, high = curves._interval(values)
        assert mean == pytest.approx(expected.mean)
        assert (low, high) == (
            (None, None) if expected.low is None else pytest.approx((expected.low, expected.high))
        )
