"""RateLimiter on the MemoryStore: exact GCRA behaviour in virtual time."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder


def limiter(clock: FakeClock, **kwargs: Any) -> bt.RateLimiter:
    kwargs.setdefault("rate", 10)
    kwargs.setdefault("per", 1.0)
    return bt.RateLimiter(clock=clock, **kwargs)


def test_burst_then_one_per_interval(clock: FakeClock) -> None:
    """A full bucket admits `burst` at once, then one per interval."""
    rl = limiter(clock, rate=10, burst=3)
    assert [rl.try_acquire_sync("k").allowed for _ in range(4)] == [True, True, True, False]
    clock.advance(0.1)
    assert rl.try_acquire_sync("k").allowed
    assert not rl.try_acquire_sync("k").allowed


def test_decision_fields(clock: FakeClock) -> None:
    """remaining, retry_after and reset_after are exact."""
    rl = limiter(clock, rate=10, burst=3)
    first = rl.try_acquire_sync("k")
    assert first == bt.Decision(True, 3, 2, 0.0, pytest.approx(0.1))
    rl.try_acquire_sync("k")
    third = rl.try_acquire_sync("k")
    assert (third.remaining, third.reset_after) == (0, pytest.approx(0.3))
    refused = rl.try_acquire_sync("k")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)
    assert refused.reset_after == pytest.approx(0.3)
    assert refused.source == "store"


def test_retry_after_is_when_it_fits(clock: FakeClock) -> None:
    """Waiting exactly retry_after makes the same request pass."""
    rl = limiter(clock, rate=4, burst=2)
    rl.try_acquire_sync("k", cost=2)
    refused = rl.try_acquire_sync("k", cost=2)
    clock.advance(refused.retry_after - 1e-6)
    assert not rl.try_acquire_sync("k", cost=2).allowed
    clock.advance(2e-6)
    assert rl.try_acquire_sync("k", cost=2).allowed


def test_keys_are_independent(clock: FakeClock) -> None:
    """Each key has its own bucket."""
    rl = limiter(clock, burst=1)
    assert rl.try_acquire_sync("alice").allowed
    assert rl.try_acquire_sync("bob").allowed
    assert not rl.try_acquire_sync("alice").allowed


def test_long_keys_are_hashed_not_confused(clock: FakeClock) -> None:
    """Keys over 100 characters are hashed: distinct keys stay distinct."""
    rl = limiter(clock, burst=1)
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert rl.try_acquire_sync(a).allowed
    assert rl.try_acquire_sync(b).allowed
    assert not rl.try_acquire_sync(a).allowed
    assert max(len(k) for b in rl.store._namespaces.values() for k in b._tats) < 100  # type: ignore[attr-defined]


def test_limiters_sharing_a_store_are_separate(clock: FakeClock) -> None:
    """Two limiters on one MemoryStore do not share buckets (names namespace the keys)."""
    store = bt.MemoryStore()
    a = limiter(clock, burst=1, store=store, name="a")
    b = limiter(clock, burst=1, store=store, name="b")
    assert a.try_acquire_sync("k").allowed
    assert b.try_acquire_sync("k").allowed


async def test_async_matches_sync(clock: FakeClock) -> None:
    """The async API makes the same decisions."""
    rl = limiter(clock, burst=2)
    assert [(await rl.try_acquire("k")).allowed for _ in range(3)] == [True, True, False]


# -- waiting -----------------------------------------------------------------------------------


async def test_acquire_waits_for_its_reserved_slot(clock: FakeClock) -> None:
    """acquire reserves the next slot and sleeps until it, exactly."""
    rl = limiter(clock, rate=10, burst=1)
    await rl.acquire("k")
    decision = await rl.acquire("k", max_wait=1.0)
    assert decision.wait == pytest.approx(0.1)
    assert clock.monotonic() == pytest.approx(0.1)


async def test_waiters_are_served_in_order(clock: FakeClock) -> None:
    """Concurrent waiters get consecutive slots, in arrival order."""
    rl = limiter(clock, rate=10, burst=1, max_wait=5.0)
    done: list[tuple[int, float]] = []

    async def worker(i: int) -> None:
        await rl.acquire("k")
        done.append((i, round(clock.monotonic(), 6)))

    await asyncio.gather(*(worker(i) for i in range(5)))
    assert done == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]


async def test_acquire_refuses_beyond_its_wait(clock: FakeClock) -> None:
    """A slot further away than max_wait is refused at once with retry_after."""
    rl = limiter(clock, rate=1, burst=1)
    await rl.acquire("k")
    with pytest.raises(bt.RateLimitedError) as info:
        await rl.acquire("k", max_wait=0.5)
    assert info.value.retry_after == pytest.approx(1.0)
    assert clock.monotonic() == 0.0


async def test_acquire_wait_clamps_to_deadline(clock: FakeClock) -> None:
    """The wait never outlives the enclosing deadline."""
    rl = limiter(clock, rate=1, burst=1, max_wait=10.0)
    await rl.acquire("k")
    with bt.deadline(0.5, clock=clock), pytest.raises(bt.RateLimitedError):
        await rl.acquire("k")
    async with bt.deadline(2.0, clock=clock):
        await rl.acquire("k")
    assert clock.monotonic() == pytest.approx(1.0)


def test_acquire_sync_waits(clock: FakeClock) -> None:
    """The sync acquire sleeps on the clock too."""
    rl = limiter(clock, rate=2, burst=1)
    rl.acquire_sync("k")
    rl.acquire_sync("k", max_wait=1.0)
    assert clock.monotonic() == pytest.approx(0.5)


# -- as a policy -------------------------------------------------------------------------------


async def test_policy_rejects_with_rate_limited_error(clock: FakeClock, recorder: Recorder) -> None:
    """As a policy it raises RateLimitedError(retry_after) and emits CallRejected."""
    rl = limiter(clock, rate=1, burst=1, name="partner")

    async def call() -> str:
        return "ok"

    assert await rl.call(call) == "ok"
    with pytest.raises(bt.RateLimitedError, match="rate limit 'partner' exceeded") as info:
        await rl.call(call)
    assert info.value.retry_after == pytest.approx(1.0)
    assert info.value.policy == "partner"
    assert recorder.of(events.CallRejected) == [
        events.CallRejected("partner", "ratelimit", pytest.approx(1.0))
    ]


def test_policy_key_function(clock: FakeClock) -> None:
    """key= may be a function of the call's arguments."""
    rl = limiter(clock, burst=1, key=lambda user, **_: user)

    @rl
    def action(user: str, *, amount: int = 1) -> int:
        return amount

    assert action("alice") == 1
    assert action("bob", amount=2) == 2
    with pytest.raises(bt.RateLimitedError):
        action("alice")


async def test_policy_waits_up_to_max_wait(clock: FakeClock) -> None:
    """With max_wait the policy smooths calls instead of refusing them."""
    rl = limiter(clock, rate=5, burst=1, max_wait=1.0)
    times: list[float] = []

    async def call() -> None:
        times.append(round(clock.monotonic(), 6))

    for _ in range(4):
        await rl.call(call)
    assert times == [0.0, 0.2, 0.4, 0.6]


async def test_retry_honours_rate_limit_hint(clock: FakeClock) -> None:
    """A Retry outside a RateLimiter waits its retry_after, then gets through."""
    rl = limiter(clock, rate=2, burst=1)
    policy = bt.pipeline(bt.Retry(attempts=2, on=bt.RateLimitedError, backoff=0, clock=clock), rl)

    async def call() -> str:
        return "ok"

    await policy.call(call)
    assert await policy.call(call) == "ok"
    assert clock.monotonic() == pytest.approx(0.5)


# -- many at once, invariants, threads ---------------------------------------------------------


def test_acquire_many(clock: FakeClock) -> None:
    """acquire_many decides per key in one call."""
    rl = limiter(clock, burst=2)
    decisions = rl.acquire_many_sync([("a", 1), ("a", 1), ("a", 1), ("b", 2)])
    assert [d.allowed for d in decisions] == [True, True, False, True]


async def test_acquire_many_async(clock: FakeClock) -> None:
    """The async batch matches the sync one."""
    rl = limiter(clock, burst=1)
    decisions = await rl.acquire_many([("a", 1), ("a", 1)])
    assert [d.allowed for d in decisions] == [True, False]


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 10.0, 250.0]),
    per=st.sampled_from([0.5, 1.0, 60.0]),
    burst=st.integers(min_value=1, max_value=20),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("try"), st.integers(min_value=1, max_value=20)),
            st.tuples(st.just("advance"), st.integers(min_value=0, max_value=200)),
        ),
        max_size=80,
    ),
)
def test_never_more_than_rate_times_window_plus_burst(
    rate: float, per: float, burst: int, ops: list[tuple[str, int]]
) -> None:
    """Over any window W: admitted units <= W * rate / per + burst."""
    clock = FakeClock()
    rl = bt.RateLimiter(rate=rate, per=per, burst=burst, clock=clock)
    step = per / rate / 7  # time moves in fractions of an interval
    admitted: list[tuple[float, int]] = []
    for op, value in ops:
        if op == "advance":
            clock.advance(value * step)
            continue
        cost = min(value, burst)
        if rl.try_acquire_sync("k", cost).allowed:
            admitted.append((clock.monotonic(), cost))
    times = [t for t, _ in admitted]
    for i, start in enumerate(times):
        units = 0
        for end, cost in admitted[i:]:
            units += cost
            window = end - start
            assert units <= window * rate / per + burst + 1e-9


def test_threads_never_exceed_the_burst() -> None:
    """Many threads at one instant: exactly `burst` admitted."""
    clock = FakeClock()
    rl = bt.RateLimiter(rate=1, per=3600, burst=50, clock=clock)
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [rl.try_acquire_sync("k").allowed for _ in range(100)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50


def test_memory_store_forgets_full_buckets(clock: FakeClock) -> None:
    """Idle keys are swept: memory follows the keys active within a period."""
    store = bt.MemoryStore()
    rl = limiter(clock, rate=10, burst=1, store=store)
    for i in range(5000):
        rl.try_acquire_sync(f"user-{i}")
        clock.advance(0.01)
    assert len(store) < 2100  # a sweep ran when the count doubled past 1024


def test_stats(clock: FakeClock) -> None:
    """stats() counts decisions and refusals."""
    rl = limiter(clock, burst=1, name="s")
    rl.try_acquire_sync("k")
    rl.try_acquire_sync("k")
    assert rl.stats() == bt.RateLimiterStats("s", 10.0, 1.0, 1, 2, 1, 0)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, r"rate must be a number in \(0, inf\), got 0"),
        ({"rate": -5}, r"rate must be a number in \(0, inf\), got -5"),
        ({"rate": float("inf")}, "rate must be a number"),
        ({"rate": 1, "per": 0}, "per must be a duration > 0 seconds, got 0"),
        ({"rate": 1, "burst": 0}, "burst must be an int >= 1, got 0"),
        ({"rate": 1, "burst": 2.5}, "burst must be an int >= 1, got 2.5"),
        ({"rate": 1, "store": {}}, "store must be a buttress Store"),
        ({"rate": 1, "key": ""}, "key must be a non-empty str, got ''"),
        ({"rate": 1, "key": 5}, "key must be a non-empty str or a function returning one"),
        ({"rate": 1, "max_wait": -1}, "max_wait must be a duration >= 0 seconds, got -1"),
        ({"rate": 1, "on_store_error": "ignore"}, "on_store_error must be one of"),
        ({"rate": 1, "store_timeout": 0}, "store_timeout must be a duration > 0 seconds"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    """Each bad option names itself, its value and what is allowed."""
    with pytest.raises(bt.ConfigError, match=message):
        bt.RateLimiter(**kwargs)


def test_shared_store_needs_a_name() -> None:
    """A limiter on a shared store must be named, so every process uses the same key."""

    class SharedStore(bt.MemoryStore):
        shared = True

    with pytest.raises(bt.ConfigError, match="name must be set when the store is shared"):
        bt.RateLimiter(rate=1, store=SharedStore())


@pytest.mark.parametrize(
    ("key", "cost", "message"),
    [
        ("", 1, "key must be a non-empty str, got ''"),
        (None, 1, "key must be a non-empty str, got None"),
        ("k", 0, r"cost must be an int in \[1, burst=3\], got 0"),
        ("k", 4, r"cost must be an int in \[1, burst=3\], got 4"),
        ("k", 1.0, r"cost must be an int in \[1, burst=3\], got 1.0"),
        ("k", True, r"cost must be an int in \[1, burst=3\], got True"),
    ],
)
async def test_bad_call_arguments(clock: FakeClock, key: Any, cost: Any, message: str) -> None:
    """A bad key or a cost that could never fit is an error, not a refusal."""
    rl = limiter(clock, burst=3)
    with pytest.raises(bt.ConfigError, match=message):
        rl.try_acquire_sync(key, cost)
    with pytest.raises(bt.ConfigError, match=message):
        await rl.try_acquire(key, cost)
    assert rl.stats().decisions == 0
