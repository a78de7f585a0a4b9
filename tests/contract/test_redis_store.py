"""What only the Redis store does: keys, expiry, scripts, errors."""

from __future__ import annotations

import uuid

import pytest
import redis
import redis.asyncio

import buttress as bt
from buttress.ratelimit import RateSpec
from buttress.stores.redis._replies import gcra_decision

from ..servers import RedisServer

SPEC = RateSpec(interval=0.5, burst=2)


async def test_keys_are_prefixed_and_expire(redis_server: RedisServer) -> None:
    """The bucket key carries the prefix and expires when the bucket is full again."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        store = bt.RedisStore(client, prefix="px:")
        k = f"k-{uuid.uuid4().hex}"
        await store.acquire(k, SPEC, 1, 0.0, 0.0)
        ttl = await client.pttl(f"px:{k}")
        assert 0 < ttl <= 502
    finally:
        await client.aclose()


async def test_limiter_keys_live_under_the_prefix(redis_server: RedisServer) -> None:
    """A limiter's keys are prefix + rl:<name>:<key>, long keys hashed."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        prefix = f"t{uuid.uuid4().hex[:8]}:"
        rl = bt.RateLimiter(rate=1, burst=1, store=bt.RedisStore(client, prefix=prefix), name="api")
        await rl.try_acquire("alice")
        await rl.try_acquire("y" * 500)
        keys = {k.decode() for k in await client.keys(prefix + "*")}
        assert f"{prefix}rl:api:alice" in keys
        (hashed,) = keys - {f"{prefix}rl:api:alice"}
        assert hashed.startswith(f"{prefix}rl:api:#")
        assert len(hashed) < 100
    finally:
        await client.aclose()


async def test_survives_script_flush(redis_server: RedisServer) -> None:
    """After SCRIPT FLUSH (or a restart) the script is loaded again transparently."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        store = bt.RedisStore(client)
        await client.script_flush()
        assert (await store.acquire(f"k-{uuid.uuid4().hex}", SPEC, 1, 0.0, 0.0)).allowed
        await client.script_flush()
        many = await store.acquire_many([(f"k-{uuid.uuid4().hex}", 1)] * 2, SPEC, 0.0)
        assert [d.allowed for d in many] == [True, True]
    finally:
        await client.aclose()


def test_sync_survives_script_flush(redis_server: RedisServer) -> None:
    """The generated sync store reloads scripts too."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        store = bt.RedisStore(client)
        client.script_flush()
        assert store.acquire_sync(f"k-{uuid.uuid4().hex}", SPEC, 1, 0.0, 0.0).allowed
    finally:
        client.close()


async def test_wrong_type_is_a_store_error(redis_server: RedisServer) -> None:
    """A key holding something else (WRONGTYPE) is a StoreError, not a crash."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        store = bt.RedisStore(client, prefix="")
        k = f"k-{uuid.uuid4().hex}"
        await client.hset(k, "a", "b")
        with pytest.raises(bt.StoreError, match="Redis failed"):
            await store.acquire(k, SPEC, 1, 0.0, 0.0)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "reply",
    [None, b"OK", [1, 2, 3], [1, 0, 0, 0, b"x"], [2, 0, 0, 0, 0], [1, -1, 0, 0, 0], [True] * 5],
)
def test_garbage_replies_are_store_errors(reply: object) -> None:
    """Any reply of the wrong shape is a StoreError naming it."""
    with pytest.raises(bt.StoreError, match="unexpected reply"):
        gcra_decision(reply, SPEC)


def test_wrong_client_kind_says_what_to_do(redis_server: RedisServer) -> None:
    """Calling the sync API on an async store (and back) is a clear TypeError."""
    store = bt.RedisStore(redis.asyncio.Redis.from_url(redis_server.url))
    with pytest.raises(TypeError, match=r"wraps a redis\.asyncio client"):
        store.acquire_sync("k", SPEC, 1, 0.0, 0.0)


async def test_sync_store_refuses_async_calls(redis_server: RedisServer) -> None:
    """The other way round."""
    store = bt.RedisStore(redis.Redis.from_url(redis_server.url))
    with pytest.raises(TypeError, match=r"wraps a sync redis\.Redis client"):
        await store.acquire("k", SPEC, 1, 0.0, 0.0)


def test_bad_client_and_prefix() -> None:
    """Only redis-py clients and str prefixes are accepted."""
    with pytest.raises(bt.ConfigError, match=r"client must be a redis\.Redis or redis\.asyncio"):
        bt.RedisStore(object())
    with pytest.raises(bt.ConfigError, match="prefix must be a str"):
        bt.RedisStore(redis.Redis(), prefix=5)  # type: ignore[arg-type]


def test_generated_sync_code_is_up_to_date() -> None:
    """_sync.py is exactly what scripts/unasync.py derives from _async.py."""
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
