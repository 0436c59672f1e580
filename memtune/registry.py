"""One registry class for every kind of thing memtune looks up by name: optimizers
(:mod:`memtune.optimizers.registry`) and tasks (:mod:`memtune.studies.tasks`).

A registry holds frozen specs, each with a ``name`` and an ``origin``; it fills itself on first
use from a Python entry-point group, so that plugins and memtune's own entries register the
same way, and it imports nothing heavy: a spec names its class or builder as
``"module:attribute"``, and :func:`resolve` imports it only when one is built.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["PluginError", "Registry", "UnknownNameError", "resolve"]


class UnknownNameError(ValueError):
    """A name that is not in a registry; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")


class _Named(Protocol):
    name: str


T = TypeVar("T", bound=_Named)


@dataclass(frozen=True)
class PluginError:
    """An entry point that could not be loaded: shown, never raised, so that one broken
    plugin cannot take the service down."""

    group: str
    name: str
    origin: str
    message: str

    def __str__(self) -> str:
        return f"{self.group} plugin {self.name!r} from {self.origin}: {self.message}"


class Registry(Generic[T]):
    """Name -> spec, in registration order.

    With ``group``, the registry fills itself on first use from that Python entry-point group:
    each entry point names a function (torch-free to import) returning the specs it registers,
    memtune's own built-ins included. An entry point that fails to load, or registers a name
    twice, is recorded in :attr:`errors` and skipped. ``builtin`` is called directly when
    memtune itself is not installed (a bare checkout), so its own specs are always there.
    """

    def __init__(
        self, kind: str, group: str | None = None, builtin: Callable[[], Iterable[T]] | None = None
    ) -> None:
        self.kind, self.group, self._builtin = kind, group, builtin
        self._items: dict[str, T] = {}
        self.errors: list[PluginError] = []
        self._loaded = group is None
        self._lock = threading.RLock()

    def register(self, item: T) -> T:
        with self._lock:
            if item.name in self._items:
                raise ValueError(f"{self.kind} {item.name!r} is registered already")
            self._items[item.name] = item
        return item

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # before loading: a plugin may read the registry
            from importlib.metadata import entry_points

            found = list(entry_points(group=self.group))
            if self._builtin and not any(ep.value == _target_of(self._builtin) for ep in found):
                self._add(self._builtin(), "memtune", "builtin")
            for ep in found:
                origin = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
                try:
                    items = list(ep.load()())
                except Exception as error:  # a broken plugin: an error line, not a crash
                    message = f"{type(error).__name__}: {error}"
                    self.errors.append(PluginError(self.group or "", ep.name, origin, message))
                    continue
                self._add(items, origin, ep.name)

    def _add(self, items: Iterable[T], origin: str, entry: str) -> None:
        for item in items:
            try:
                self.register(replace(item, origin=origin))  # type: ignore[type-var]
            except (ValueError, TypeError) as error:
                self.errors.append(PluginError(self.group or "", entry, origin, str(error)))

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        self._load()
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        self._load()
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        self._load()
        return len(self._items)


def _target_of(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def resolve(target: str) -> Any:
    """``"package.module:attribute"`` -> the attribute, imported now."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
