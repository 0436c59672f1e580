"""``memtune reproduce`` end to end at smoke size (each claim's studies, seconds each), and the
report it writes: a section and a line per claim, valid PNG plots, lines that follow the JSON's
numbers, a render that needs no network."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from memtune.reproduce import judge
from memtune.reproduce.claims import build_claims
from memtune.reproduce.document import REPORT_SCHEMA, Report
from memtune.reproduce.judge import LINES
from memtune.reproduce.report import REPORT_JSON, REPORT_MD, render_report
from memtune.service.cli import main
from memtune.studies.verdict import SCHEMA_VERSION

COMMITTED = Path(__file__).resolve().parents[2] / "reports" / "quick"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _reproduce(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memtune", "reproduce", "--quiet", *arguments],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("reproduce")
    done = _reproduce("--smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr[-4000:]
    return out, done.stdout


def _section(markdown: str, number: int) -> str:
    start = markdown.index(f"## Claim {number}:")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end > 0 else None]


@pytest.mark.slow
def test_smoke_reproduction_has_one_section_and_one_line_per_claim(smoke):
    out, stdout = smoke
    markdown = (out / REPORT_MD).read_text()
    for number in range(1, 7):
        section = _section(markdown, number)
        line = re.search(r"\*\*Line: (.+?)\.\*\*", section)
        assert line and line[1] in LINES, number
        assert f"claim {number}: {line[1]} " in stdout
        assert "| check | test | compared |" in section  # the numbers the line follows from
    report = json.loads((out / REPORT_JSON).read_text())
    assert report["mode"] == "smoke" and report["command"] == "memtune reproduce --smoke"
    assert report["versions"]["torch"] and report["devices"] == ["cpu"]
    assert "smoke mode" in markdown and report["generated"] in markdown


@pytest.mark.slow
def test_every_plot_of_the_report_exists_and_is_a_valid_png(smoke):
    import matplotlib.image

    out, _ = smoke
    markdown = (out / REPORT_MD).read_text()
    for number in range(1, 7):  # a forest plot and the claim's own plot
        assert len(re.findall(r"!\[[^\]]*\]\(plots/", _section(markdown, number))) >= 2, number
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert {
        "plots/profile-1.png",
        "plots/claim1-sensitivity.png",
        "plots/claim3-warmup.png",
    } <= set(images)
    for image in images:
        assert not image.startswith(("http:", "https:", "//")), image  # nothing fetched
        data = (out / image).read_bytes()
        assert data.startswith(PNG_SIGNATURE), image
        pixels = matplotlib.image.imread(out / image)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, image


@pytest.mark.slow
def test_a_number_changed_in_the_json_changes_the_line(smoke, tmp_path):
    out = tmp_path / "report"
    shutil.copytree(smoke[0], out)
    report = json.loads((out / REPORT_JSON).read_text())
    claim = next(c for c in report["claims"] if c["number"] == 4)
    for row in claim["checks"]:  # every check a clear, significant gain
        row.update(
            p_value=1e-6,
            direction=1,
            improvement=1.0,
            ci_low=0.5,
            ci_high=1.5,
            pairs=30,
            missing=None,
            errored=[],
            extra={},
        )
    (out / REPORT_JSON).write_text(json.dumps(report))
    render_report(out)
    assert "**Line: reproduced.**" in _section((out / REPORT_MD).read_text(), 4)

    claim["checks"][0].update(direction=-1, improvement=-1.0, ci_low=-1.5, ci_high=-0.5)
    (out / REPORT_JSON).write_text(json.dumps(report))
    render_report(out)
    assert "**Line: mixed.**" in _section((out / REPORT_MD).read_text(), 4)

    claim["checks"][1]["ci_low"] = -0.1  # an interval across 0 cannot support the claim
    claim["checks"][0].update(p_value=0.2)
    (out / REPORT_JSON).write_text(json.dumps(report))
    render_report(out)
    section = _section((out / REPORT_MD).read_text(), 4)
    assert "**Line: mixed.**" in section
    assert f"{len(claim['checks']) - 2} of {len(claim['checks'])} checks supported" in section


@pytest.mark.slow
def test_the_report_renders_with_the_network_cut(smoke, tmp_path, monkeypatch):
    out = tmp_path / "report"
    shutil.copytree(smoke[0], out)
    (out / REPORT_MD).unlink()
    shutil.rmtree(out / "plots")

    def refuse(*args, **kwargs):
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    render_report(out)
    assert (out / REPORT_MD).exists() and (out / "plots" / "profile-1.png").exists()


@pytest.mark.slow
def test_a_second_run_keeps_the_finished_studies(smoke, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(smoke[0], out)
    done = _reproduce("--smoke", "--claims", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "c3-warmup-lr-0: done in an earlier run, kept" in done.stderr
    assert "claim 3: " in done.stdout and "claim 1: " not in done.stdout


def test_bad_claim_numbers_and_a_missing_report_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["reproduce", "--claims", "7"])
    assert exited.value.code == 2
    assert "claims: numbers from 1 to 6" in capsys.readouterr().err
    assert main(["reproduce", "--render-only", "--out", str(tmp_path)]) == 2
    assert "no report.json" in capsys.readouterr().err


@pytest.mark.slow
def test_every_trial_of_claims_four_and_five_ran_the_settings_the_report_names(smoke):
    """The stored config of every trial (search and seed runs alike) is the pinned one."""
    out, _ = smoke
    for claim in build_claims("smoke"):
        if claim.number not in (4, 5):
            continue
        for spec in claim.studies:
            document = json.loads((out / "data" / "studies" / f"{spec.name}.json").read_text())
            fixed = {arm.label: arm.fixed for arm in spec.arms}
            assert document["trials"]
            for trial in document["trials"].values():
                assert trial["config"] == fixed[trial["arm"]], (spec.name, trial["arm"])


@pytest.mark.slow
def test_a_swept_setting_that_diverges_is_counted_on_its_seeds(smoke):
    """lr 10 diverges AM-SGD on the quadratic: its seeds run anyway and count as diverged."""
    out, _ = smoke
    report = Report.model_validate_json((out / REPORT_JSON).read_text())
    sweep = next(s for s in report.claims[0].sweeps if s.name == "c1-quadratic-lr")
    assert sweep.arms["am_sgd"].diverged[-1] == sweep.arms["am_sgd"].runs[-1] == 2


def test_the_committed_report_is_of_this_codes_schemas():
    """Bump JUDGE_SCHEMA (or the verdict's SCHEMA_VERSION) whenever a change alters what a
    report would say, and regenerate the report: this fails until then."""
    report = Report.model_validate_json((COMMITTED / REPORT_JSON).read_text())
    assert report.report_schema == REPORT_SCHEMA
    assert report.verdict_schema == SCHEMA_VERSION
    assert report.judge_schema == judge.JUDGE_SCHEMA
    assert all(s.verdict_schema == SCHEMA_VERSION for s in report.studies.values())
    assert report.mode == "quick" and all(s.status == "completed" for s in report.studies.values())
