"""memtune: does this memory-based optimizer beat my tuned baseline, on my task, by how much,
at what cost, and how sure are we?

One namespace, four layers whose imports point one way:
``memtune.service`` -> ``memtune.tuning`` -> ``memtune.studies`` -> ``memtune.optimizers``.
Importing this package imports nothing heavy (no torch, no Ray).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memtune")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    # ``memtune.run(spec, task=build)``: imported on first use (it brings Ray and torch).
    if name == "run":
        from memtune.tuning.api import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
