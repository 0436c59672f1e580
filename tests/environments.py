"""Helpers for tests that run memtune as a user would: a fresh virtual environment, and a
server started in-process by the ``memtune serve`` command."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[1]

# Python source that starts `memtune serve --no-worker` in a thread on a free port and leaves
# an httpx ``client`` on it, for scripts run in a subprocess (whose sys.modules is checked).
SERVE_IN_THREAD = textwrap.dedent(
    """
    import json, socket, sys, threading, time
    import httpx
    from memtune.service import cli

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(
        target=cli.main, args=(["serve", "--no-worker", "--port", str(port)],), daemon=True
    ).start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    for _ in range(200):
        try:
            client.get("/health").raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    """
)


def fresh_venv(home: Path, *install: Path, checkout: bool = False) -> Path:
    """A new venv under ``home`` with ``install`` (wheels or project folders) pip-installed
    without dependencies; the dependencies come from this environment through a path file
    (a path, not a site dir: this environment's editable memtune is not processed), plus the
    checkout itself with ``checkout``. Returns its python."""
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    paths = [sysconfig.get_paths()["purelib"], *([str(ROOT)] if checkout else [])]
    (site / "_memtune_test.pth").write_text("\n".join(paths) + "\n")
    if install:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                *map(str, install),
            ],
            check=True,
            cwd=home,
        )
    return python
