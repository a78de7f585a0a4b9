"""The rate-limit Store contract, run against every store: memory, Redis (async and sync).

Redis keeps time with its own clock (TIME), so these tests use rates slow enough (an
interval of 100 s) that the few milliseconds between steps cannot change any outcome;
the MemoryStore runs on a FakeClock that does not move.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis
import redis.asyncio

import buttress as bt
from buttress.ratelimit import RateSpec
from buttress.testing import FakeClock

from ..servers import RedisServer

SLOW = RateSpec(interval=100.0, burst=3)  # one unit per 100 s, three at once
TOL = 0.05  # seconds of slack for Redis's real clock


class Case:
    """One store under test, driven through the async or the sync protocol methods."""

    def __init__(self, kind: str, server: RedisServer) -> None:
        self.kind = kind
        self.clock = FakeClock()
        self.async_client: Any = None
        self.sync_client: Any = None
        if kind == "memory":
            self.store: Any = bt.MemoryStore()
        elif kind == "redis-async":
            self.async_client = redis.asyncio.Redis.from_url(server.url)
            self.store = bt.RedisStore(self.async_client, prefix="contract:")
        else:
            self.sync_client = redis.Redis.from_url(server.url, socket_timeout=2)
            self.store = bt.RedisStore(self.sync_client, prefix="contract:")

    async def acquire(
        self, key: str, spec: RateSpec = SLOW, cost: int = 1, max_wait: float = 0.0
    ) -> bt.Decision:
        now = self.clock.monotonic()
        if self.kind == "redis-sync":
            return self.store.acquire_sync(key, spec, cost, max_wait, now)  # type: ignore[no-any-return]
        return await self.store.acquire(key, spec, cost, max_wait, now)  # type: ignore[no-any-return]

    async def acquire_many(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec = SLOW
    ) -> list[bt.Decision]:
        now = self.clock.monotonic()
        if self.kind == "redis-sync":
            return self.store.acquire_many_sync(requests, spec, now)  # type: ignore[no-any-return]
        return await self.store.acquire_many(requests, spec, now)  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.async_client is not None:
            await self.async_client.aclose()
        if self.sync_client is not None:
            self.sync_client.close()


@pytest.fixture(params=["memory", "redis-async", "redis-sync"])
async def case(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Case]:
    """Each contract test runs once per store."""
    c = Case(request.param, redis_server)
    try:
        yield c
    finally:
        await c.close()


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


async def test_burst_then_refuse(case: Case) -> None:
    """`burst` units pass at once; the next is refused with retry_after = one interval."""
    k = key()
    decisions = [await case.acquire(k) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == pytest.approx(100.0, abs=TOL)
    assert decisions[2].reset_after == pytest.approx(300.0, abs=TOL)
    assert all(d.limit == 3 and d.wait == 0.0 for d in decisions)


async def test_cost(case: Case) -> None:
    """A request takes `cost` units; a refused one tells when its whole cost fits."""
    k = key()
    assert (await case.acquire(k, cost=2)).remaining == 1
    refused = await case.acquire(k, cost=2)
    assert not refused.allowed
    assert refused.remaining == 1
    assert refused.retry_after == pytest.approx(100.0, abs=TOL)
    assert (await case.acquire(k, cost=1)).allowed


async def test_keys_are_independent(case: Case) -> None:
    """Buckets never mix."""
    a, b = key(), key()
    for _ in range(3):
        await case.acquire(a)
    assert not (await case.acquire(a)).allowed
    assert (await case.acquire(b)).allowed


async def test_reservation(case: Case) -> None:
    """With max_wait the next slot is reserved and the wait is reported, not slept."""
    k = key()
    for _ in range(3):
        await case.acquire(k)
    reserved = await case.acquire(k, max_wait=150.0)
    assert reserved.allowed
    assert reserved.wait == pytest.approx(100.0, abs=TOL)
    too_far = await case.acquire(k, max_wait=150.0)  # the slot after is 200 s away
    assert not too_far.allowed
    assert too_far.retry_after == pytest.approx(200.0, abs=TOL)


async def test_refusal_changes_nothing(case: Case) -> None:
    """A refused request leaves the bucket as it was."""
    k = key()
    for _ in range(3):
        await case.acquire(k)
    first = await case.acquire(k)
    second = await case.acquire(k)
    assert first.retry_after == pytest.approx(second.retry_after, abs=TOL)


async def test_acquire_many_matches_one_by_one(case: Case) -> None:
    """A batch decides exactly as the same calls made one after the other."""
    a, b = key(), key()
    decisions = await case.acquire_many([(a, 2), (a, 2), (b, 3), (a, 1), (b, 1)])
    assert [d.allowed for d in decisions] == [True, False, True, True, False]


async def test_fast_rate(case: Case) -> None:
    """Sub-millisecond intervals keep their precision (1000 per second, burst 5)."""
    spec = RateSpec(interval=0.001, burst=5)
    k = key()
    allowed = [(await case.acquire(k, spec)).allowed for _ in range(5)]
    assert allowed == [True] * 5
    refused = await case.acquire(k, spec)
    if not refused.allowed:  # Redis's clock may have moved a millisecond meanwhile
        assert 0.0 < refused.retry_after <= 0.001 + 1e-6
