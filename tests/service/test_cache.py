"""The response cache: one read per key at a time, a short grace for expired entries, and
clear() winning over a read that began before it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from memtune.service.cache import ResponseCache


class SlowRead:
    """compute() for the cache: counts its calls and blocks until released."""

    def __init__(self, body: bytes = b"v1", ttl: float = 60.0) -> None:
        self.calls, self.body, self.ttl = 0, body, ttl
        self.release = threading.Event()

    def __call__(self) -> tuple[bytes, float]:
        self.calls += 1
        assert self.release.wait(5)
        return self.body, self.ttl


def test_concurrent_misses_share_one_read():
    async def scenario():
        cache, read = ResponseCache(), SlowRead()
        waiting = [asyncio.create_task(cache.get("k", read)) for _ in range(20)]
        await asyncio.sleep(0.05)
        read.release.set()
        return read.calls, await asyncio.gather(*waiting)

    calls, bodies = asyncio.run(scenario())
    assert calls == 1 and bodies == [b"v1"] * 20


def test_expired_entry_is_answered_within_grace_while_one_refresh_runs():
    async def scenario():
        cache = ResponseCache(grace_s=5.0)
        first = SlowRead(b"old", ttl=0.01)
        first.release.set()
        await cache.get("k", first)
        await asyncio.sleep(0.05)  # expired, within grace
        refresh = SlowRead(b"new")
        answers = [await cache.get("k", refresh) for _ in range(5)]
        refresh.release.set()
        await asyncio.sleep(0.1)
        return answers, refresh.calls, await cache.get("k", SlowRead(b"unused"))

    answers, calls, after = asyncio.run(scenario())
    assert answers == [b"old"] * 5 and calls == 1 and after == b"new"


def test_past_grace_the_read_is_waited_for():
    async def scenario():
        cache = ResponseCache(grace_s=0.0)
        first = SlowRead(b"old", ttl=0.01)
        first.release.set()
        await cache.get("k", first)
        await asyncio.sleep(0.05)
        fresh = SlowRead(b"new")
        fresh.release.set()
        return await cache.get("k", fresh)

    assert asyncio.run(scenario()) == b"new"


def test_a_read_begun_before_clear_is_not_kept():
    async def scenario():
        cache, read = ResponseCache(), SlowRead(b"before the write")
        pending = asyncio.create_task(cache.get("k", read))
        await asyncio.sleep(0.05)
        cache.clear()  # a write happened while the read ran
        read.release.set()
        assert await pending == b"before the write"  # its own waiter still gets an answer
        after = SlowRead(b"after the write")
        after.release.set()
        return await cache.get("k", after)

    assert asyncio.run(scenario()) == b"after the write"


def test_an_error_reaches_the_waiter_and_is_not_kept():
    def failing() -> tuple[bytes, float]:
        time.sleep(0.01)
        raise LookupError("no such study")

    async def scenario():
        cache = ResponseCache()
        with pytest.raises(LookupError):
            await cache.get("k", failing)
        ok = SlowRead(b"later")
        ok.release.set()
        return await cache.get("k", ok)

    assert asyncio.run(scenario()) == b"later"
