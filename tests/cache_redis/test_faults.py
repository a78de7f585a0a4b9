"""Redis killed, paused and restarted under RedisCache and TieredCache.

Each on_store_error mode must do what it promises, emit StoreFellBack, never hang, and
go back to Redis once it answers again. The store breakers run on a FakeClock moved by
hand ("after the breaker's open time" is a step of the test, not a sleep); Redis I/O and
the subscriber's reconnection run in real time, bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import buttress as bt
from buttress import events
from buttress.cache import NearCacheFlushed, RedisCache, TieredCache
from buttress.testing import FakeClock

from ..conftest import Recorder
from ..servers import RedisServer
from .helpers import async_client, fresh_name, sync_client
from .test_tiered import eventually


def breaker(clock: FakeClock) -> bt.CircuitBreaker:
    return bt.CircuitBreaker(
        consecutive_failures=1,
        open_for=1.0,
        record_on=(bt.StoreError, bt.TimeoutError),
        clock=clock,
    )


class Loader:
    """Counts loads; returns ``f"{key}-{n}"``."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, key: str) -> Callable[[], Any]:
        async def load() -> str:
            self.calls += 1
            await asyncio.sleep(0.01)
            return f"{key}-{self.calls}"

        return load


async def test_tiered_local_mode_survives_redis_death_and_recovers(
    redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """Redis killed: near hits keep coming, misses are loaded once per key and kept
    locally, StoreFellBack fires; Redis back: resubscribed, local tier flushed
    (NearCacheFlushed), values go to Redis again."""
    server = redis_factory()
    clock = FakeClock()
    cache = TieredCache(
        async_client(server), name=fresh_name(), store_breaker=breaker(clock), store_timeout=0.2
    )
    loader = Loader()
    try:
        assert await cache.start()
        assert await cache.get_or_load("a", loader("a")) == "a-1"
        server.kill()
        await eventually(lambda: not cache.subscribed)

        assert await cache.get("a") == "a-1"  # near hit while Redis is dead
        results = await asyncio.wait_for(
            asyncio.gather(*(cache.get_or_load("b", loader("b")) for _ in range(50))), 5
        )
        assert results == ["b-2"] * 50  # one load for 50 concurrent misses
        assert await cache.get_or_load("b", loader("b")) == "b-2"  # kept locally
        assert loader.calls == 2
        fell = recorder.of(events.StoreFellBack)
        assert fell
        assert all(e.mode == "local" for e in fell)  # type: ignore[attr-defined]
        with pytest.raises(bt.StoreError):
            await cache.delete("a")  # an invalidation that cannot happen is an error
        assert cache.local.get("a") is None  # ... after dropping the local copy

        server.start()
        clock.advance(2.0)  # past the store breaker's open time
        await eventually(lambda: cache.subscribed, seconds=6)
        assert recorder.of(NearCacheFlushed)
        assert cache.local.get("b") is None  # flushed: it may have been stale
        other = RedisCache(async_client(server), name=cache.name)
        for _ in range(3):  # a connection broken by the kill may fail once more
            value = await cache.get_or_load("b", loader("b"))
            if await other.get("b") == value:
                break
            cache.local.clear()
            clock.advance(10.0)
        assert await other.get("b") == value
    finally:
        await cache.aclose()


async def test_tiered_fail_open_does_not_trust_the_local_tier(
    redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """fail_open: while invalidations cannot be received the local tier is bypassed and
    the loader answers (once per flight)."""
    server = redis_factory()
    clock = FakeClock()
    cache = TieredCache(
        async_client(server),
        name=fresh_name(),
        on_store_error="fail_open",
        store_breaker=breaker(clock),
        store_timeout=0.2,
    )
    loader = Loader()
    try:
        assert await cache.start()
        assert await cache.get_or_load("a", loader("a")) == "a-1"
        server.kill()
        await eventually(lambda: not cache.subscribed)
        assert await cache.get("a", "none") == "none"
        assert await cache.get_or_load("a", loader("a")) == "a-2"
        assert await cache.get_or_load("a", loader("a")) == "a-3"
        assert all(e.mode == "fail_open" for e in recorder.of(events.StoreFellBack))  # type: ignore[attr-defined]
    finally:
        await cache.aclose()


async def test_tiered_fail_closed_raises(
    redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """fail_closed: a Redis failure is a StoreError for the caller, with the event."""
    server = redis_factory()
    cache = TieredCache(
        async_client(server),
        name=fresh_name(),
        on_store_error="fail_closed",
        store_breaker=breaker(FakeClock()),
        store_timeout=0.2,
    )
    try:
        await cache.start()
        server.kill()
        with pytest.raises(bt.StoreError):
            await cache.get_or_load("a", Loader()("a"))
        with pytest.raises(bt.StoreError):
            await cache.get("a")
        assert recorder.of(events.StoreFellBack)
    finally:
        await cache.aclose()


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_redis_cache_modes_when_redis_dies(
    redis_factory: Callable[[], RedisServer], recorder: Recorder, mode: str
) -> None:
    """RedisCache: fail_open reads miss and loads run; fail_closed raises; both recover."""
    server = redis_factory()
    clock = FakeClock()
    cache = RedisCache(
        async_client(server),
        name=fresh_name(),
        on_store_error=mode,  # type: ignore[arg-type]
        store_breaker=breaker(clock),
        store_timeout=0.2,
    )
    loader = Loader()
    await cache.set("k", "v")
    server.kill()
    if mode == "fail_open":
        assert await cache.get("k", "d") == "d"
        assert await cache.get_or_load("k", loader("k")) == "k-1"
        await cache.set("k", "ignored")
    else:
        with pytest.raises(bt.StoreError):
            await cache.get("k")
        with pytest.raises(bt.StoreError):
            await cache.get_or_load("k", loader("k"))
    with pytest.raises(bt.StoreError):
        await cache.delete("k")
    assert recorder.of(events.StoreFellBack)
    server.start()
    for _ in range(3):  # a connection broken by the kill may fail once more
        clock.advance(10.0)
        try:
            await cache.set("k", "back")
            if await cache.get("k") == "back":
                break
        except bt.StoreError:
            pass
    assert await cache.get("k") == "back"


def test_sync_redis_cache_falls_back_and_recovers(
    redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """The sync twin follows the same policy (bounded by the client's socket_timeout)."""
    server = redis_factory()
    clock = FakeClock()
    cache = RedisCache(sync_client(server), name=fresh_name(), store_breaker=breaker(clock))
    cache.set_sync("k", "v")
    server.kill()
    assert cache.get_sync("k", "d") == "d"
    assert cache.get_or_load_sync("k", lambda: "loaded") == "loaded"
    assert len(recorder.of(events.StoreFellBack)) == 2
    server.start()
    for _ in range(3):
        clock.advance(10.0)
        cache.set_sync("k", "back")
        if cache.get_sync("k") == "back":
            break
    assert cache.get_sync("k") == "back"


async def test_a_paused_redis_costs_at_most_the_store_timeout(
    redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """A hung Redis (SIGSTOP) is cut off by store_timeout, then skipped by the breaker."""
    server = redis_factory()
    clock = FakeClock()
    cache = RedisCache(
        async_client(server), name=fresh_name(), store_breaker=breaker(clock), store_timeout=0.1
    )
    await cache.set("k", "v")
    server.pause()
    try:
        assert await asyncio.wait_for(cache.get("k", "d"), 2) == "d"
        assert await asyncio.wait_for(cache.get("k", "d"), 2) == "d"  # breaker open: no wait
        errors = [e.error for e in recorder.of(events.StoreFellBack)]  # type: ignore[attr-defined]
        assert isinstance(errors[0], bt.TimeoutError)
        assert isinstance(errors[1], bt.CircuitOpenError)
    finally:
        server.resume()


async def test_redis_killed_during_a_stampede(
    redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """Redis dies while the lease holder loads: every caller still gets a value (the
    holder returns what it loaded; the waiters fall back to their own, one per
    instance), and nothing hangs."""
    server = redis_factory()
    clock = FakeClock()
    caches = [
        TieredCache(
            async_client(server), name="mid", store_breaker=breaker(clock), store_timeout=0.2
        )
        for _ in range(3)
    ]
    calls = 0
    loading = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        loading.set()
        await asyncio.sleep(0.2)
        return "v"

    try:
        for cache in caches:
            assert await cache.start()
        gathered = asyncio.gather(*(caches[i % 3].get_or_load("k", load) for i in range(300)))
        await loading.wait()
        server.kill()
        results = await asyncio.wait_for(gathered, 10)
        assert results == ["v"] * 300
        assert 1 <= calls <= 3  # at most one load per instance
        assert recorder.of(events.StoreFellBack)
    finally:
        for cache in caches:
            await cache.aclose()
