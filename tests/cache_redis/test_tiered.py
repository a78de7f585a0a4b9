"""TieredCache: near hits, invalidation across instances, stampedes, the local tier."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import buttress as bt
from buttress.cache import Cache, LocalTier, RedisCache, TieredCache
from buttress.testing import FakeClock

from ..servers import RedisServer
from .helpers import async_client, fresh_name

Factory = Callable[..., TieredCache]


@pytest.fixture
async def tiered(redis_server: RedisServer) -> AsyncIterator[Factory]:
    """Build started TieredCaches (each on its own client, like separate processes)."""
    made: list[TieredCache] = []

    def make(name: str, **kwargs: Any) -> TieredCache:
        cache = TieredCache(async_client(redis_server), name=name, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


async def eventually(check: Callable[[], Any], seconds: float = 3.0) -> None:
    """Wait (real time, bounded) until ``check()`` is true: pub/sub delivery is async."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not check():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_near_hit_after_first_read(tiered: Factory) -> None:
    """The first get reads Redis, the second is answered by the local tier (a bt.Cache
    by default)."""
    cache = tiered(fresh_name())
    assert isinstance(cache.local, Cache)
    assert await cache.start()
    await cache.set("k", {"v": 1})
    assert await cache.get("k") == {"v": 1}
    assert cache.stats().near_hits == 1
    assert await cache.get("missing", "d") == "d"


async def test_invalidation_reaches_another_instance(tiered: Factory) -> None:
    """A set or delete in one instance removes the key from another's local tier."""
    name = fresh_name()
    a, b = tiered(name), tiered(name)
    assert await a.start()
    assert await b.start()
    await a.set("k", "v1")
    await eventually(lambda: b.stats().invalidations == 1)
    assert await b.get("k") == "v1"
    assert b.local.get("k") == "v1"
    await a.set("k", "v2")
    await eventually(lambda: b.local.get("k") is None)
    assert await b.get("k") == "v2"
    await a.delete("k")
    await eventually(lambda: b.local.get("k") is None)
    assert await b.get("k") is None
    assert b.stats().invalidations == 3


async def test_plain_redis_cache_writes_invalidate_tiered(
    tiered: Factory, redis_server: RedisServer
) -> None:
    """A RedisCache on the same name announces its writes too."""
    name = fresh_name()
    cache = tiered(name)
    assert await cache.start()
    writer = RedisCache(async_client(redis_server), name=name)
    await writer.set("k", 1)
    await eventually(lambda: cache.stats().invalidations == 1)
    assert await cache.get("k") == 1
    assert cache.local.get("k") == 1
    await writer.set("k", 2)
    await eventually(lambda: cache.local.get("k") is None)
    assert await cache.get("k") == 2


async def test_clear_empties_every_instance(tiered: Factory) -> None:
    """clear() in one instance empties Redis and the other instances' local tiers."""
    name = fresh_name()
    a, b = tiered(name), tiered(name)
    assert await a.start()
    assert await b.start()
    await a.set("k", 1)
    await eventually(lambda: b.stats().invalidations == 1)
    assert await b.get("k") == 1
    assert b.local.get("k") == 1
    await a.clear()
    await eventually(lambda: b.local.get("k") is None)
    assert await b.get("k") is None


async def test_stampede_of_1000_misses_loads_once(tiered: Factory) -> None:
    """1000 concurrent misses spread over 4 instances run the loader exactly once."""
    name = fresh_name()
    caches = [tiered(name) for _ in range(4)]
    for cache in caches:
        assert await cache.start()
    calls = 0

    async def load() -> dict[str, str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)  # a slow database query
        return {"user": "ada"}

    results = await asyncio.gather(
        *(caches[i % 4].get_or_load("user:1", load) for i in range(1000))
    )
    assert calls == 1
    assert all(r == {"user": "ada"} for r in results)
    assert sum(c.remote.stats().lease_waits for c in caches) == 3
    # Everyone now answers from its local tier.
    assert all(c.local.get("user:1") == {"user": "ada"} for c in caches)


async def test_a_read_racing_an_invalidation_does_not_store_the_old_value(
    tiered: Factory, redis_server: RedisServer
) -> None:
    """If an invalidation of the key arrives while a Redis read is in flight, the read's
    result is returned but not kept locally (it may be the value just replaced); an
    invalidation of another key does not stop it."""
    name = fresh_name()
    cache = tiered(name)
    assert await cache.start()
    writer = RedisCache(async_client(redis_server), name=name)
    await writer.set("k", "old")
    await eventually(lambda: cache.stats().invalidations == 1)
    original = cache._core.get

    async def slow_get(key: str) -> Any:
        value = await original(key)
        await writer.set(key, "new")  # lands while the read is "in flight"
        await eventually(lambda: cache.stats().invalidations == 2)
        return value

    cache._core.get = slow_get  # type: ignore[method-assign]
    assert await cache.get("k") == "old"
    cache._core.get = original  # type: ignore[method-assign]
    assert cache.local.get("k") is None
    assert await cache.get("k") == "new"
    # An invalidation of some other key while reading does not prevent keeping it.
    gen = cache._gen
    cache._on_message(b"iother-process|unrelated")
    assert cache._unchanged(gen, "k")
    assert not cache._unchanged(gen, "unrelated")


async def test_local_tier_expires_on_the_injected_clock(tiered: Factory) -> None:
    """local_ttl runs on ``clock``: after it passes the value is read from Redis again."""
    clock = FakeClock()
    cache = tiered(fresh_name(), local_ttl=10, clock=clock)
    assert await cache.start()
    await cache.set("k", "v")
    assert await cache.get("k") == "v"
    assert cache.stats().near_hits == 1
    clock.advance(11)
    assert cache.local.get("k") is None
    assert await cache.get("k") == "v"
    assert cache.stats().near_hits == 1


async def test_local_ttl_is_capped_by_the_entry_ttl(tiered: Factory) -> None:
    """A local copy never outlives the Redis entry's ttl."""
    clock = FakeClock()
    cache = tiered(fresh_name(), local_ttl=60, clock=clock)
    assert await cache.start()
    await cache.set("k", "v", ttl=5)
    clock.advance(6)
    assert cache.local.get("k") is None


async def test_a_custom_local_tier(tiered: Factory) -> None:
    """Any LocalTier works as the near cache."""

    class DictTier:
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}

        def get(self, key: str, default: Any = None) -> Any:
            return self.data.get(key, default)

        def set(self, key: str, value: Any, ttl: float | None = None) -> None:
            self.data[key] = value

        def delete(self, key: str) -> Any:
            return self.data.pop(key, None)

        def clear(self) -> None:
            self.data.clear()

    tier = DictTier()
    assert isinstance(tier, LocalTier)
    cache = tiered(fresh_name(), local=tier)
    assert await cache.start()
    await cache.set("k", 1)
    assert tier.data == {"k": 1}


async def test_bad_options(redis_server: RedisServer) -> None:
    """TieredCache validates its own options and needs an asyncio client."""
    import redis

    client = async_client(redis_server)
    with pytest.raises(bt.ConfigError, match=r"client must be a redis\.asyncio"):
        TieredCache(redis.Redis(), name="x")
    with pytest.raises(bt.ConfigError, match="on_store_error must be one of"):
        TieredCache(client, name="x", on_store_error="nope")  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="local_ttl must be"):
        TieredCache(client, name="x", local_ttl=0)
    with pytest.raises(bt.ConfigError, match="local_size must be"):
        TieredCache(client, name="x", local_size=0)
    with pytest.raises(bt.ConfigError, match="local must be a LocalTier"):
        TieredCache(client, name="x", local=object())  # type: ignore[arg-type]


def test_constructible_without_an_event_loop(redis_server: RedisServer) -> None:
    """Building a TieredCache needs no running loop (listening starts on first use)."""
    cache = TieredCache(async_client(redis_server), name=fresh_name())
    assert not cache.subscribed


async def test_after_aclose_nothing_is_kept_locally(tiered: Factory) -> None:
    """A closed TieredCache no longer hears invalidations, so it reads Redis every time."""
    cache = tiered(fresh_name())
    assert await cache.start()
    await cache.set("k", "v")
    await cache.aclose()
    assert await cache.get("k") == "v"
    assert cache.local.get("k") is None
    assert await cache.get("k") == "v"
    assert cache.stats().near_hits == 0
