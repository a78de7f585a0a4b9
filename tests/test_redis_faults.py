"""A RateLimiter on a real Redis that we kill, pause and restart.

Each on_store_error mode must do what it promises, emit StoreFellBack, let no other
exception reach the caller, never hang, and go back to Redis once it answers again. The
store's breaker runs on a FakeClock moved by hand, so "after the breaker's open time" is a
step of the test, not a sleep; the Redis calls themselves run in real time (they are I/O).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder
from .servers import RedisServer

MODES = ["fail_open", "fail_closed", "local"]


def async_client(server: RedisServer) -> Any:
    from redis.asyncio.retry import Retry

    # No client-side retries: the limiter's own breaker decides what to do on failure.
    return redis.asyncio.Redis.from_url(
        server.url, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


def sync_client(server: RedisServer) -> Any:
    from redis.retry import Retry

    return redis.Redis.from_url(
        server.url, socket_timeout=0.2, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


def make_limiter(store: bt.RedisStore, mode: str, breaker_clock: FakeClock) -> bt.RateLimiter:
    breaker = bt.CircuitBreaker(
        consecutive_failures=1,
        open_for=1.0,
        record_on=(bt.StoreError, bt.TimeoutError),
        clock=breaker_clock,
    )
    return bt.RateLimiter(
        rate=1,
        per=100,
        burst=2,
        store=store,
        name=f"faults-{mode}",
        on_store_error=mode,  # type: ignore[arg-type]
        store_timeout=0.2,
        store_breaker=breaker,
    )


def check_fallback(mode: str, decisions: list[bt.Decision]) -> None:
    """What each mode promises while the store is unreachable."""
    if mode == "fail_open":
        assert all(d.allowed and d.source == "fail_open" for d in decisions)
    elif mode == "fail_closed":
        assert all(not d.allowed and d.source == "fail_closed" for d in decisions)
        assert all(d.retry_after > 0 for d in decisions)
    else:  # local: an in-process bucket with the same limits (burst 2)
        assert [d.allowed for d in decisions] == [True, True, False]
        assert all(d.source == "local" for d in decisions)


async def within(seconds: float, awaitable: Any) -> Any:
    """Nothing may hang: every step must finish in a few seconds."""
    return await asyncio.wait_for(awaitable, seconds)


@pytest.mark.parametrize("mode", MODES)
async def test_redis_killed_then_restarted(
    mode: str, redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """Kill -9 mid-traffic: the mode decides; restarted: back to Redis."""
    server = redis_factory()
    client = async_client(server)
    clock = FakeClock(autojump=False)
    rl = make_limiter(bt.RedisStore(client), mode, clock)
    try:
        first = await within(5, rl.try_acquire("k"))
        assert first.source == "store"
        server.kill()
        decisions = [await within(5, rl.try_acquire("k")) for _ in range(3)]
        check_fallback(mode, decisions)
        fell_back = recorder.of(events.StoreFellBack)
        assert len(fell_back) == 3
        assert {e.mode for e in fell_back} == {mode}  # type: ignore[attr-defined]
        assert rl.stats().fell_back == 3

        server.start()
        clock.advance(1.0)  # the store breaker's open time is over: next call probes
        for _ in range(3):  # a connection broken by the kill may fail once more
            decision = await within(5, rl.try_acquire("fresh"))
            if decision.source == "store":
                break
            clock.advance(10.0)
        assert decision.source == "store"
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", MODES)
async def test_redis_paused_times_out_and_skips(
    mode: str, redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """A paused Redis (SIGSTOP) costs one store_timeout, then the breaker skips it."""
    server = redis_factory()
    client = async_client(server)
    clock = FakeClock(autojump=False)
    rl = make_limiter(bt.RedisStore(client), mode, clock)
    try:
        assert (await within(5, rl.try_acquire("k"))).source == "store"
        server.pause()
        decisions = [await within(5, rl.try_acquire("k")) for _ in range(3)]
        check_fallback(mode, decisions)
        errors = [e.error for e in recorder.of(events.StoreFellBack)]  # type: ignore[attr-defined]
        assert isinstance(errors[0], bt.TimeoutError)  # the first call waited store_timeout
        assert all(isinstance(e, bt.CircuitOpenError) for e in errors[1:])  # then skipped
        server.resume()
        clock.advance(1.0)
        for _ in range(3):
            decision = await within(5, rl.try_acquire("other"))
            if decision.source == "store":
                break
            clock.advance(10.0)
        assert decision.source == "store"
    finally:
        server.resume()
        await client.aclose()


@pytest.mark.parametrize("mode", MODES)
def test_sync_redis_paused_and_killed(
    mode: str, redis_factory: Callable[[], RedisServer], recorder: Recorder
) -> None:
    """The sync path falls back on socket timeouts and refused connections alike."""
    server = redis_factory()
    client = sync_client(server)
    clock = FakeClock(autojump=False)
    rl = make_limiter(bt.RedisStore(client), mode, clock)
    try:
        assert rl.try_acquire_sync("k").source == "store"
        server.pause()
        check_fallback(mode, [rl.try_acquire_sync("k") for _ in range(3)])
        server.resume()
        server.kill()
        clock.advance(1.0)
        fallback = rl.try_acquire_sync("k2")
        assert fallback.source == mode
        server.start()
        clock.advance(10.0)
        for _ in range(3):
            decision = rl.try_acquire_sync("k3")
            if decision.source == "store":
                break
            clock.advance(100.0)
        assert decision.source == "store"
    finally:
        server.resume()
        client.close()


async def test_policy_form_fails_open_not_crashing(
    redis_factory: Callable[[], RedisServer],
) -> None:
    """As a pipeline policy on a dead Redis (fail_open) calls go through; none crash."""
    server = redis_factory()
    client = async_client(server)
    rl = make_limiter(bt.RedisStore(client), "fail_open", FakeClock(autojump=False))
    server.kill()

    async def work() -> str:
        return "done"

    try:
        results = [await within(5, rl.call(work)) for _ in range(5)]
        assert results == ["done"] * 5
    finally:
        await client.aclose()


async def test_policy_form_fails_closed_with_rate_limited_error(
    redis_factory: Callable[[], RedisServer],
) -> None:
    """fail_closed as a policy: RateLimitedError with a retry_after, nothing else."""
    server = redis_factory()
    client = async_client(server)
    rl = make_limiter(bt.RedisStore(client), "fail_closed", FakeClock(autojump=False))
    server.kill()

    async def work() -> str:
        return "never"

    try:
        with pytest.raises(bt.RateLimitedError) as info:
            await within(5, rl.call(work))
        assert info.value.retry_after is not None
        assert info.value.retry_after > 0
    finally:
        await client.aclose()


async def test_garbage_in_redis_falls_back(redis_server: RedisServer, recorder: Recorder) -> None:
    """A key holding the wrong type of value is a store error the mode handles."""
    client = async_client(redis_server)
    rl = make_limiter(bt.RedisStore(client, prefix="garbage:"), "fail_open", FakeClock())
    try:
        await client.hset("garbage:rl:faults-fail_open:k", "x", "y")
        decision = await within(5, rl.try_acquire("k"))
        assert decision.source == "fail_open"
        (event,) = recorder.of(events.StoreFellBack)
        assert isinstance(event.error, bt.StoreError)  # type: ignore[attr-defined]
    finally:
        await client.aclose()
