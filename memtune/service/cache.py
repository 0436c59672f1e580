"""A few seconds of memory for serialized responses, so that reading what did not change
costs neither queries nor serialization.

An entry lives ``ttl`` seconds: 1 s for what can still change (a running study, a list), 10 s
for what has ended (a finished study, its trials, its verdict). Writes through this process
(submit, cancel, extend) clear it; a write through another process (a worker's progress, a
second API process) shows within the entry's ttl (plus ``grace_s``, below).

Under load an entry expires while many requests want it. Two rules keep that from turning
into a queue of identical reads (measured under ``wrk``: docs/benchmarks.md):

* one read per key at a time: requests that miss while a read for their key is running wait
  for that read instead of starting their own;
* an entry expired less than ``grace_s`` ago is still answered while its one refresh runs.
  A client that polls rarely never sees that: past the grace the read is waited for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from starlette.concurrency import run_in_threadpool

__all__ = ["ResponseCache"]


class ResponseCache:
    def __init__(self, max_entries: int = 4096, grace_s: float = 1.0) -> None:
        self._items: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._reads: dict[Hashable, asyncio.Future[bytes]] = {}
        self._generation = 0  # bumped by clear(): a read that began before it is not kept
        self.max_entries = max_entries
        self.grace_s = grace_s

    async def get(self, key: Hashable, compute: Callable[[], tuple[bytes, float]]) -> bytes:
        """The cached bytes for ``key``, or those of ``compute()`` (bytes, ttl seconds), run
        in the thread pool once for all the requests that want it."""
        now = time.monotonic()
        with self._lock:
            found = self._items.get(key)
        if found is not None and found[0] > now:
            return found[1]
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(run_in_threadpool(self._read, key, compute))
            self._reads[key] = read
            read.add_done_callback(lambda done: self._read_done(key, done))
        if found is not None and found[0] + self.grace_s > now:
            return found[1]
        return await asyncio.shield(read)

    def _read(self, key: Hashable, compute: Callable[[], tuple[bytes, float]]) -> bytes:
        generation = self._generation
        body, ttl = compute()
        with self._lock:
            if generation == self._generation:
                self._items[key] = (time.monotonic() + ttl, body)
                self._items.move_to_end(key)
                while len(self._items) > self.max_entries:
                    self._items.popitem(last=False)
        return body

    def _read_done(self, key: Hashable, done: asyncio.Future[bytes]) -> None:
        if self._reads.get(key) is done:
            del self._reads[key]
        if not done.cancelled():
            done.exception()  # an error reaches whoever awaited; never logged as unretrieved

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._items.clear()
