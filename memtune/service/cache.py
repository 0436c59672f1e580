"""A few seconds of memory for serialized responses, so that reading what did not change
costs neither queries nor serialization.

An entry lives ``ttl`` seconds: 1 s for what can still change (a running study, a list), 10 s
for what has ended (a finished study, its trials, its verdict). Writes through this process
(submit, cancel, extend) clear it; a write through another process (a worker's progress, a
second API process) shows within the entry's ttl.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["ResponseCache"]


class ResponseCache:
    def __init__(self, max_entries: int = 4096) -> None:
        self._items: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, key: Hashable, compute: Callable[[], tuple[bytes, float]]) -> bytes:
        """The cached bytes for ``key``, or ``compute()``'s (bytes, ttl seconds), kept."""
        now = time.monotonic()
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] > now:
                self._items.move_to_end(key)
                return found[1]
        body, ttl = compute()  # outside the lock: a slow read blocks no other key
        with self._lock:
            self._items[key] = (now + ttl, body)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return body

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
