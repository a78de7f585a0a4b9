"""Hedge: extra attempts for slow calls; first success wins; nothing leaks or is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder


class Backend:
    """A fake backend whose n-th call takes durations[n] seconds and may fail."""

    def __init__(self, clock: FakeClock, durations: list[float], failures: set[int] | None = None):
        self.clock = clock
        self.durations = durations
        self.failures = failures or set()
        self.calls = 0
        self.cancelled: list[int] = []
        self.finished: list[int] = []

    async def __call__(self) -> int:
        n = self.calls
        self.calls += 1
        try:
            await self.clock.sleep(self.durations[n])
        except asyncio.CancelledError:
            self.cancelled.append(n)
            raise
        if n in self.failures:
            raise ConnectionError(f"attempt {n} failed")
        self.finished.append(n)
        return n


def hedge(clock: FakeClock, **kwargs: Any) -> bt.Hedge:
    kwargs.setdefault("delay", 0.1)
    kwargs.setdefault("budget", bt.RetryBudget(ratio=1.0, min_per_second=100, clock=clock))
    return bt.Hedge(clock=clock, **kwargs)


async def test_fast_primary_needs_no_hedge(clock: FakeClock) -> None:
    """A primary faster than the delay runs alone."""
    backend = Backend(clock, [0.05])
    policy = hedge(clock)
    assert await policy.call(backend) == 0
    assert backend.calls == 1
    assert policy.stats().hedges == 0
    assert clock.pending_timers == 0 or clock.monotonic() == 0.05


async def test_slow_primary_is_hedged_and_cancelled(clock: FakeClock) -> None:
    """After the delay a hedge starts; it wins; the primary is cancelled."""
    backend = Backend(clock, [5.0, 0.2])
    policy = hedge(clock)
    assert await policy.call(backend) == 1
    assert clock.monotonic() == pytest.approx(0.3)
    assert backend.cancelled == [0]
    stats = policy.stats()
    assert (stats.hedges, stats.hedge_wins) == (1, 1)


async def test_primary_still_wins_if_faster(clock: FakeClock) -> None:
    """If the primary answers first after a hedge started, the hedge is cancelled."""
    backend = Backend(clock, [0.15, 1.0])
    policy = hedge(clock)
    assert await policy.call(backend) == 0
    await asyncio.sleep(0)
    assert backend.cancelled == [1]
    assert policy.stats().hedge_wins == 0


async def test_primary_failure_hedges_at_once(clock: FakeClock) -> None:
    """A handled failure of the primary starts the next attempt without waiting."""
    backend = Backend(clock, [0.01, 0.02], failures={0})
    policy = hedge(clock, delay=10)
    assert await policy.call(backend) == 1
    assert clock.monotonic() == pytest.approx(0.03)


async def test_all_fail_raises_first_with_the_others(clock: FakeClock) -> None:
    """When every attempt fails, the primary's error is raised carrying the others."""
    backend = Backend(clock, [0.5, 0.01, 0.01], failures={0, 1, 2})
    policy = hedge(clock, max_extra=2)
    with pytest.raises(ConnectionError, match="attempt 0 failed") as info:
        await policy.call(backend)
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 2
    assert "attempt 1 failed" in notes[0]
    context = info.value.__context__
    assert isinstance(context, BaseExceptionGroup)
    assert len(context.exceptions) == 2


async def test_unhandled_primary_error_is_raised_at_once(clock: FakeClock) -> None:
    """An error outside `on` ends the call; running hedges are cancelled."""

    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await clock.sleep(0.2)
            raise ValueError("bug")
        await clock.sleep(5)

    policy = hedge(clock, on=ConnectionError)
    with pytest.raises(ValueError, match="bug"):
        await policy.call(work)
    assert calls == 2


async def test_staggered_extra_attempts(clock: FakeClock, recorder: Recorder) -> None:
    """max_extra=2 starts hedges at delay and 2 * delay."""
    backend = Backend(clock, [5.0, 5.0, 0.05])
    policy = hedge(clock, max_extra=2, name="kv")
    assert await policy.call(backend) == 2
    launched = recorder.of(events.HedgeLaunched)
    assert [e.attempt for e in launched] == [2, 3]  # type: ignore[attr-defined]
    assert clock.monotonic() == pytest.approx(0.25)
    await asyncio.sleep(0)
    assert sorted(backend.cancelled) == [0, 1]


async def test_budget_caps_extra_load(clock: FakeClock) -> None:
    """With the budget empty, no hedge is sent and the primary runs on."""
    backend = Backend(clock, [1.0])
    policy = hedge(clock, budget=bt.RetryBudget(ratio=0, min_per_second=0, clock=clock))
    assert await policy.call(backend) == 0
    assert backend.calls == 1
    assert policy.stats().budget_denied == 1


async def test_default_budget_limits_hedges_to_a_share(clock: FakeClock) -> None:
    """The default budget allows about 10 % extra attempts plus one per second."""
    policy = bt.Hedge(delay=0.01, clock=clock)
    backend = Backend(clock, [0.05] * 400)
    for _ in range(100):  # 100 calls in 5 s, all inside one 10 s budget window
        await policy.call(backend)
    stats = policy.stats()
    assert stats.hedges <= 0.1 * 100 + 1.0 * 10
    assert stats.budget_denied > 0


async def test_caller_cancellation_cancels_every_attempt(clock: FakeClock) -> None:
    """Cancelling the caller cancels the primary and the hedges."""
    backend = Backend(clock, [10.0, 10.0])
    policy = hedge(clock)
    task = asyncio.create_task(policy.call(backend))
    await clock.sleep(0.5)  # let virtual time pass the hedge delay
    assert backend.calls == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert sorted(backend.cancelled) == [0, 1]


async def test_hedges_see_the_deadline(clock: FakeClock) -> None:
    """Hedged attempts run in the caller's context: they see its deadline."""
    seen: list[float | None] = []

    async def work() -> None:
        seen.append(bt.remaining())
        await clock.sleep(1.0 if len(seen) == 1 else 0.0)

    with bt.deadline(5, clock=clock):
        await hedge(clock).call(work)
    assert seen[0] == 5.0
    assert seen[1] == pytest.approx(4.9)


async def test_latency_percentile_delay(clock: FakeClock) -> None:
    """With LatencyPercentile the delay follows recent latencies."""
    policy = hedge(clock, delay=bt.LatencyPercentile(0.9, samples=100, min_samples=10, initial=1.0))
    assert policy.stats().delay == 1.0
    for i in range(100):
        duration = 0.01 * (i % 10 + 1)

        async def work(d: float = duration) -> None:
            await clock.sleep(d)

        await policy.call(work)
    assert policy.stats().delay == pytest.approx(0.1)


async def test_latency_percentile_tracks_the_tail(clock: FakeClock) -> None:
    """Losers count as lower bounds, so the learned delay tracks the true p95 (not lower)."""
    import random

    rng = random.Random(1)
    latencies = iter([rng.lognormvariate(-3.5, 0.6) for _ in range(20_000)])
    reference = sorted(rng.lognormvariate(-3.5, 0.6) for _ in range(20_000))
    true_p95 = reference[int(0.95 * len(reference))]
    policy = hedge(
        clock,
        delay=bt.LatencyPercentile(0.95, samples=1000, min_samples=50, initial=0.01),
        budget=bt.RetryBudget(ratio=1000, min_per_second=1000, clock=clock),
    )

    async def work() -> None:
        await clock.sleep(next(latencies))

    for _ in range(3000):
        await policy.call(work)
    stats = policy.stats()
    assert 0.85 * true_p95 <= stats.delay <= 1.1 * true_p95
    assert stats.hedges / stats.calls <= 0.08


async def test_unhandled_error_of_a_hedge_ends_the_call(clock: FakeClock) -> None:
    """An extra attempt failing outside `on` ends the call with that error."""
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await clock.sleep(5)  # the slow first attempt, interrupted
        else:
            await clock.sleep(0.05)
            raise ValueError("bug in attempt 2")

    policy = hedge(clock, on=ConnectionError, max_extra=2)
    with pytest.raises(ValueError, match="bug in attempt 2"):
        await policy.call(work)
    assert calls == 2
    assert clock.monotonic() == pytest.approx(0.15)


def test_sync_is_refused_clearly() -> None:
    """Hedging needs concurrency: sync calls get a TypeError that says what to do."""
    with pytest.raises(TypeError, match="only runs async calls"):
        bt.Hedge(delay=0.1).call_sync(lambda: 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -1}, "delay must be a duration >= 0 seconds, got -1"),
        ({"delay": 0.1, "max_extra": 0}, "max_extra must be an int >= 1, got 0"),
        ({"delay": 0.1, "budget": 5}, "budget must be a RetryBudget or None, got 5"),
        ({"delay": 0.1, "on": 5}, "on must be an exception class"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    """Bad options name themselves."""
    with pytest.raises(bt.ConfigError, match=message):
        bt.Hedge(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantile": 1.0}, r"quantile must be a number in \(0, 1\)"),
        ({"samples": 0}, "samples must be an int in"),
        ({"samples": 10, "min_samples": 20}, r"min_samples must be an int in \[1, 10\]"),
        ({"initial": -1}, "initial must be a duration >= 0"),
    ],
)
def test_bad_percentile(kwargs: dict[str, Any], message: str) -> None:
    """LatencyPercentile validates itself."""
    with pytest.raises(bt.ConfigError, match=message):
        bt.LatencyPercentile(**kwargs)
