"""The wheel is one namespace, carries its data, and runs outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.environments import ROOT, fresh_venv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("memtune-*.whl")
    return built


def test_wheel_installs_only_the_memtune_namespace_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"memtune"}
    for data in (
        "memtune/examples/demo.yaml",
        "memtune/examples/my_task.py",  # the README's example task from code
        "memtune/examples/my_task.yaml",
        "memtune/service/store/migrations/env.py",
        "memtune/service/store/migrations/script.py.mako",
        "memtune/service/store/migrations/versions/0001_studies_trials_metrics.py",
        "memtune/optimizers/cpu_kernels.c",
    ):
        assert data in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_wheel_runs_from_a_fresh_venv_outside_the_checkout(wheel, tmp_path):
    python = fresh_venv(tmp_path, wheel)
    fresh = python.parent.parent
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'wheel.db'}",
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            args, cwd=outside, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    where = run(
        str(python),
        "-c",
        "import memtune, memtune.service.cli as cli; "
        "print(memtune.__file__); assert cli.DEMO_SPEC.is_file(), cli.DEMO_SPEC",
    )
    assert where.strip().startswith(str(fresh))
    usage = run(str(python), "-m", "memtune", "--help")
    assert usage.startswith("usage: memtune") and all(c in usage for c in ("serve", "demo", "run"))
    assert "digits_mlp" in run(str(fresh / "bin" / "memtune"), "list", "tasks")
    # Alembic's migrations come from the wheel too.
    assert run(str(fresh / "bin" / "memtune"), "apikey", "create", "--owner", "w").startswith("mt_")
    # And the CPU step kernels build from the wheel's source, into an empty cache.
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    built = run(
        str(python),
        "-c",
        "from memtune.optimizers import cpu_kernels as k; "
        "assert k.kernels_unavailable() is None, k.kernels_unavailable(); print(k.SOURCE)",
    )
    assert built.strip().startswith(str(fresh)) and any((tmp_path / "cache").rglob("*.so"))
