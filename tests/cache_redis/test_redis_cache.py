"""RedisCache against a real redis-server: round trips, keys, leases and single flight."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest

import buttress as bt
from buttress.cache import PickleCodec, RedisCache

from ..servers import RedisServer
from .helpers import async_client, fresh_name, sync_client


@pytest.fixture
def acache(redis_server: RedisServer) -> RedisCache:
    return RedisCache(async_client(redis_server), name=fresh_name())


@pytest.fixture
def scache(redis_server: RedisServer) -> RedisCache:
    return RedisCache(sync_client(redis_server), name=fresh_name())


async def test_get_set_delete_round_trip(acache: RedisCache) -> None:
    """A set value comes back with its type; delete removes it; a miss gives the default."""
    assert await acache.get("k") is None
    assert await acache.get("k", "dflt") == "dflt"
    for value in [b"raw", "text", {"a": [1, 2.5, None]}, 7, None]:
        await acache.set("k", value)
        assert await acache.get("k", "dflt") == value
    assert await acache.delete("k") is True
    assert await acache.delete("k") is False
    assert await acache.get("k", "dflt") == "dflt"
    stats = acache.stats()
    assert stats.hits == 5
    assert stats.misses == 3


def test_sync_round_trip(scache: RedisCache) -> None:
    """The generated sync twin does the same on a redis.Redis client."""
    assert scache.get_sync("k") is None
    scache.set_sync("k", {"x": 1}, ttl=30)
    assert scache.get_sync("k") == {"x": 1}
    ttl = scache.ttl_of_sync("k")
    assert ttl is not None
    assert 29 < ttl <= 30
    assert scache.delete_sync("k") is True
    assert scache.ttl_of_sync("k") is None


async def test_ttl_per_cache_and_per_entry(redis_server: RedisServer) -> None:
    """The cache's ttl applies by default, an entry's ttl overrides it; None never expires."""
    cache = RedisCache(async_client(redis_server), name=fresh_name(), ttl=100)
    await cache.set("a", 1)
    await cache.set("b", 1, ttl=5)
    a, b = await cache.ttl_of("a"), await cache.ttl_of("b")
    assert a is not None
    assert 99 < a <= 100
    assert b is not None
    assert 4 < b <= 5
    plain = RedisCache(async_client(redis_server), name=fresh_name())
    await plain.set("c", 1)
    assert await plain.ttl_of("c") == math.inf
    assert await plain.ttl_of("missing") is None


async def test_entries_really_expire(acache: RedisCache) -> None:
    """Redis PX expiry (real time, kept short)."""
    await acache.set("k", "v", ttl=0.05)
    await asyncio.sleep(0.12)
    assert await acache.get("k") is None


async def test_keys_are_namespaced_and_long_keys_hashed(redis_server: RedisServer) -> None:
    """Two names never see each other's entries; a long key is stored under its hash."""
    client = async_client(redis_server)
    one = RedisCache(client, name=fresh_name())
    two = RedisCache(client, name=fresh_name())
    await one.set("k", 1)
    assert await two.get("k") is None
    long_key = "x" * 5000
    await one.set(long_key, "long")
    assert await one.get(long_key) == "long"
    keys = [k.decode() async for k in client.scan_iter(match=f"{one._shared.namespace}*")]
    assert all(len(k) < 120 for k in keys)
    assert any("#" in k for k in keys)


async def test_clear_removes_only_its_namespace(redis_server: RedisServer) -> None:
    """clear() empties this cache's namespace and leaves others alone."""
    client = async_client(redis_server)
    one = RedisCache(client, name=fresh_name())
    two = RedisCache(client, name=fresh_name())
    for i in range(1200):  # more than one SCAN/UNLINK batch
        await one.set(f"k{i}", i)
    await two.set("k", "kept")
    assert await one.clear() == 1200
    assert await one.get("k1") is None
    assert await two.get("k") == "kept"


async def test_bad_arguments_are_refused(redis_server: RedisServer) -> None:
    """Options and keys are validated with messages naming them."""
    client = async_client(redis_server)
    with pytest.raises(bt.ConfigError, match="name must be a non-empty str"):
        RedisCache(client, name="")
    with pytest.raises(bt.ConfigError, match="ttl must be a duration > 0"):
        RedisCache(client, name="x", ttl=0)
    with pytest.raises(bt.ConfigError, match="lease must be"):
        RedisCache(client, name="x", lease=-1)
    with pytest.raises(bt.ConfigError, match="poll_max must be >= poll_min"):
        RedisCache(client, name="x", poll_min=0.5, poll_max=0.1)
    with pytest.raises(bt.ConfigError, match="on_store_error must be one of"):
        RedisCache(client, name="x", on_store_error="local")  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="codec must be a Codec"):
        RedisCache(client, name="x", codec=object())  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="client must be"):
        RedisCache(object(), name="x")
    with pytest.raises(bt.ConfigError, match="decode_responses=False"):
        RedisCache(async_client(redis_server, decode_responses=True), name="x")
    cache = RedisCache(client, name="x")
    with pytest.raises(bt.ConfigError, match="key must be a non-empty str"):
        await cache.get("")
    with pytest.raises(bt.ConfigError, match="key must be a non-empty str"):
        await cache.set(5, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await cache.set("k", {1, 2})


async def test_wrong_api_for_the_client(redis_server: RedisServer) -> None:
    """An async cache refuses sync calls and the other way round, saying what to do."""
    acache = RedisCache(async_client(redis_server), name="x")
    scache = RedisCache(sync_client(redis_server), name="x")
    with pytest.raises(TypeError, match=r"redis\.asyncio client"):
        acache.get_sync("k")
    with pytest.raises(TypeError, match=r"sync redis\.Redis client"):
        await scache.get("k")


async def test_undecodable_entry_is_a_miss(redis_server: RedisServer) -> None:
    """An entry written by another codec is a miss (counted), then overwritten by a load."""
    client = async_client(redis_server)
    name = fresh_name()
    await RedisCache(client, name=name, codec=PickleCodec()).set("k", (1, 2))
    cache = RedisCache(client, name=name)
    assert await cache.get("k", "dflt") == "dflt"
    assert cache.stats().undecodable == 1

    async def load() -> list[int]:
        return [3]

    assert await cache.get_or_load("k", load) == [3]
    assert await cache.get("k") == [3]


async def test_get_or_load_loads_once_and_caches(acache: RedisCache) -> None:
    """A miss runs the loader; the next call is a hit."""
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"v": calls}

    assert await acache.get_or_load("k", load) == {"v": 1}
    assert await acache.get_or_load("k", load) == {"v": 1}
    assert calls == 1
    assert acache.stats().loads == 1


async def test_concurrent_misses_across_caches_load_once(redis_server: RedisServer) -> None:
    """Many tasks on several RedisCache instances (separate clients): one load in all."""
    name = fresh_name()
    caches = [RedisCache(async_client(redis_server), name=name) for _ in range(4)]
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)  # long enough for every instance to find the lease taken
        return "value"

    results = await asyncio.gather(*(caches[i % 4].get_or_load("hot", load) for i in range(400)))
    assert results == ["value"] * 400
    assert calls == 1
    assert sum(c.stats().lease_waits for c in caches) == 3  # one flight per other instance


def test_sync_threads_load_once(redis_server: RedisServer) -> None:
    """Threads with their own sync caches contend through the lease: one load."""
    name = fresh_name()
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def load() -> int:
        nonlocal calls
        with lock:
            calls += 1
        threading.Event().wait(0.05)
        return 42

    results: list[Any] = []

    def worker() -> None:
        cache = RedisCache(sync_client(redis_server), name=name)
        barrier.wait()
        results.append(cache.get_or_load_sync("hot", load))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 8
    assert calls == 1


async def test_loader_error_reaches_callers_and_releases_the_lease(
    acache: RedisCache, redis_server: RedisServer
) -> None:
    """A failing loader's error reaches every waiter of the flight; nothing is cached; the
    lease is gone at once, so the next call loads again without waiting."""

    async def boom() -> int:
        await asyncio.sleep(0.01)
        raise LookupError("db says no")

    results = await asyncio.gather(
        *(acache.get_or_load("k", boom) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    client = async_client(redis_server)
    assert await client.exists(acache._shared.lease_key("k")) == 0

    async def ok() -> int:
        return 1

    assert await acache.get_or_load("k", ok) == 1


async def test_loader_timeout_error_is_not_taken_for_a_store_failure(acache: RedisCache) -> None:
    """A loader raising bt.TimeoutError is not re-run as if Redis had failed."""
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        raise bt.TimeoutError("db timed out")

    with pytest.raises(bt.TimeoutError, match="db timed out"):
        await acache.get_or_load("k", slow)
    assert calls == 1


async def test_lease_of_a_crashed_loader_expires(redis_server: RedisServer) -> None:
    """A lease left by a dead process (never released) expires after its PX; a waiter
    then takes it and loads."""
    client = async_client(redis_server)
    cache = RedisCache(client, name=fresh_name(), lease=5)
    # The "crashed" process: took the lease for 100 ms and died.
    await client.set(cache._shared.lease_key("k"), "dead-token", px=100)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        return "fresh"

    assert await cache.get_or_load("k", load) == "fresh"
    assert calls == 1
    assert cache.stats().lease_waits == 1


async def test_a_write_during_a_load_wins(acache: RedisCache) -> None:
    """A set while a load runs cancels its lease: the load's older value is returned to
    its caller but not stored over the newer one."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def load() -> str:
        started.set()
        await release.wait()
        return "old"

    task = asyncio.create_task(acache.get_or_load("k", load))
    await started.wait()
    await acache.set("k", "new")
    release.set()
    assert await task == "old"
    assert await acache.get("k") == "new"


async def test_waiting_for_another_loader_respects_the_deadline(
    redis_server: RedisServer,
) -> None:
    """A waiter stops at the enclosing deadline with DeadlineExceededError."""
    client = async_client(redis_server)
    cache = RedisCache(client, name=fresh_name(), lease=5)
    await client.set(cache._shared.lease_key("k"), "other-token", px=5000)

    async def load() -> str:
        return "never"

    with pytest.raises(bt.DeadlineExceededError), bt.deadline(0.1):
        await cache.get_or_load("k", load)


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(acache: RedisCache) -> None:
    """Cancelling one of the callers leaves the load running for the others."""
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "v"

    first = asyncio.create_task(acache.get_or_load("k", load))
    second = asyncio.create_task(acache.get_or_load("k", load))
    await asyncio.sleep(0.02)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == "v"


def test_generated_cache_core_is_up_to_date() -> None:
    """_redis_sync.py is exactly what scripts/unasync.py derives from _redis_async.py."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
