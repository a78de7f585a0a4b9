"""The RateLimiter behaves the same on every store (memory, Redis async, Redis sync)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio

import buttress as bt
from buttress.testing import FakeClock

from ..servers import RedisServer


class Limiters:
    """Builds limiters on one kind of store and calls them with the matching API."""

    def __init__(self, kind: str, server: RedisServer) -> None:
        self.kind = kind
        self.clients: list[Any] = []
        self.server = server

    def make(self, **kwargs: Any) -> bt.RateLimiter:
        kwargs.setdefault("name", f"c-{uuid.uuid4().hex[:8]}")
        if self.kind == "memory":
            return bt.RateLimiter(clock=FakeClock(), **kwargs)
        if self.kind == "redis-async":
            client: Any = redis.asyncio.Redis.from_url(self.server.url)
        else:
            client = redis.Redis.from_url(self.server.url, socket_timeout=2)
        self.clients.append(client)
        return bt.RateLimiter(store=bt.RedisStore(client), **kwargs)

    async def try_acquire(self, rl: bt.RateLimiter, key: str, cost: int = 1) -> bt.Decision:
        if self.kind == "redis-sync":
            return rl.try_acquire_sync(key, cost)
        return await rl.try_acquire(key, cost)

    async def call(self, rl: bt.RateLimiter, value: str) -> str:
        if self.kind == "redis-sync":
            return rl.call_sync(lambda: value)

        async def work() -> str:
            return value

        return await rl.call(work)

    async def close(self) -> None:
        for client in self.clients:
            if self.kind == "redis-async":
                await client.aclose()
            else:
                client.close()


@pytest.fixture(params=["memory", "redis-async", "redis-sync"])
async def limiters(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Limiters]:
    """Each test runs on each store."""
    made = Limiters(request.param, redis_server)
    try:
        yield made
    finally:
        await made.close()


async def test_burst_and_refusal(limiters: Limiters) -> None:
    """burst at once, then refusals that say when to come back."""
    rl = limiters.make(rate=1, per=100, burst=2)
    decisions = [await limiters.try_acquire(rl, "k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[2].retry_after == pytest.approx(100, abs=0.05)
    assert all(d.source == "store" for d in decisions)
    assert rl.stats().refused == 1


async def test_policy_form_raises_rate_limited(limiters: Limiters) -> None:
    """As a policy: the call runs, then RateLimitedError with retry_after."""
    rl = limiters.make(rate=1, per=100, burst=1)
    assert await limiters.call(rl, "ran") == "ran"
    with pytest.raises(bt.RateLimitedError) as info:
        await limiters.call(rl, "never")
    assert info.value.retry_after == pytest.approx(100, abs=0.05)


async def test_cost_and_keys(limiters: Limiters) -> None:
    """Costs add up per key; keys stay apart; a cost above burst is a ConfigError."""
    rl = limiters.make(rate=1, per=100, burst=3)
    assert (await limiters.try_acquire(rl, "a", 3)).allowed
    assert not (await limiters.try_acquire(rl, "a", 1)).allowed
    assert (await limiters.try_acquire(rl, "b", 2)).remaining == 1
    with pytest.raises(bt.ConfigError, match="cost must be an int in"):
        await limiters.try_acquire(rl, "a", 4)


async def test_two_limiters_same_name_share_the_limit(limiters: Limiters) -> None:
    """Two limiters with one name on one store are one limit, whichever the store."""
    first = limiters.make(rate=1, per=100, burst=1, name="shared-name-" + limiters.kind)
    if limiters.kind == "memory":
        second = bt.RateLimiter(
            rate=1, per=100, burst=1, store=first.store, name=first.name, clock=first.clock
        )
    else:
        second = limiters.make(rate=1, per=100, burst=1, name=first.name)
    key = f"k-{uuid.uuid4().hex}"
    assert (await limiters.try_acquire(first, key)).allowed
    assert not (await limiters.try_acquire(second, key)).allowed
