"""The former name of :mod:`memtune.tuning` (Ray Tune: trainables, the runner), kept as an alias.

``memtune.workers.<module>`` is ``memtune.tuning.<module>``, the same module object, imported
only when asked for. Code written against the old name keeps working, and so do pickles that
name it: Tune pickles a study's searcher, scheduler, callbacks and trainable by module path
into its experiment, so a study in flight during an upgrade resumes from what the old version
wrote. The word "worker" now means the service's queue daemon (:mod:`memtune.service.worker`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_OLD, _NEW = __name__, "memtune.tuning"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``memtune.workers.X`` as ``memtune.tuning.X``, the very module."""

    def find_spec(self, fullname: str, path: object, target: object = None):
        if not fullname.startswith(_OLD + "."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(_NEW + spec.name.removeprefix(_OLD))
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its own name. The import system has just set the module's
        # __spec__ to the alias's: give it back its own.
        module.__spec__ = self._specs.pop(_OLD + module.__name__.removeprefix(_NEW))


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Alias())
