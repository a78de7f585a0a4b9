"""Bulkhead: bounded concurrency, a bounded FIFO queue, timeouts, cancellation hand-off."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder


class Gate:
    """Async callee that records concurrency and waits for release."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started: list[int] = []
        self.release = asyncio.Event()

    async def __call__(self, tag: int) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(tag)
        try:
            await self.release.wait()
            return tag
        finally:
            self.running -= 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_limits_concurrency_and_rejects_overflow(clock: FakeClock) -> None:
    """max_concurrent run, max_queued wait, the rest are rejected at once."""
    bulkhead = bt.Bulkhead(max_concurrent=2, max_queued=1, clock=clock)
    gate = Gate()
    tasks = [asyncio.create_task(bulkhead.call(gate, i)) for i in range(5)]
    await settle()
    assert gate.running == 2
    assert bulkhead.stats().queued == 1
    rejected = [t for t in tasks if t.done()]
    assert len(rejected) == 2
    for task in rejected:
        with pytest.raises(bt.BulkheadFullError):
            task.result()
    gate.release.set()
    done = await asyncio.gather(*[t for t in tasks if t not in rejected])
    assert sorted(done) == [0, 1, 2]
    assert gate.peak == 2
    assert bulkhead.stats().active == 0


async def test_queue_is_fifo(clock: FakeClock) -> None:
    """Waiters get slots in arrival order; new arrivals do not overtake the queue."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=10, clock=clock)
    order: list[int] = []

    async def work(tag: int) -> None:
        order.append(tag)
        await clock.sleep(1)

    await asyncio.gather(*(bulkhead.call(work, i) for i in range(6)))
    assert order == [0, 1, 2, 3, 4, 5]


async def test_queue_timeout(clock: FakeClock) -> None:
    """A waiter gives up after queue_timeout with BulkheadFullError."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=0.5, clock=clock)
    gate = Gate()
    holder = asyncio.create_task(bulkhead.call(gate, 0))
    await settle()
    with pytest.raises(bt.BulkheadFullError, match=r"waited 0\.5 s"):
        await bulkhead.call(gate, 1)
    assert clock.monotonic() == 0.5
    assert bulkhead.stats().queued == 0
    gate.release.set()
    await holder


async def test_queue_wait_clamps_to_deadline(clock: FakeClock) -> None:
    """Queueing never outlives the deadline; running out of it is DeadlineExceededError."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=10, clock=clock)
    gate = Gate()
    holder = asyncio.create_task(bulkhead.call(gate, 0))
    await settle()
    with bt.deadline(0.2, clock=clock), pytest.raises(bt.DeadlineExceededError):
        await bulkhead.call(gate, 1)
    assert clock.monotonic() == pytest.approx(0.2)
    gate.release.set()
    await holder


async def test_full_with_the_deadline_spent_is_a_deadline_error(clock: FakeClock) -> None:
    """No slot and no time left in the deadline: DeadlineExceededError, not 'queue full'."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=5, clock=clock)
    gate = Gate()
    holder = asyncio.create_task(bulkhead.call(gate, 0))
    await settle()
    with bt.deadline(0, clock=clock), pytest.raises(bt.DeadlineExceededError):
        await bulkhead.call(gate, 1)
    gate.release.set()
    await holder


async def test_zero_queue_timeout_rejects_at_once(clock: FakeClock) -> None:
    """queue_timeout=0 means do not wait."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=5, queue_timeout=0, clock=clock)
    gate = Gate()
    holder = asyncio.create_task(bulkhead.call(gate, 0))
    await settle()
    with pytest.raises(bt.BulkheadFullError, match="no time to wait"):
        await bulkhead.call(gate, 1)
    gate.release.set()
    await holder


async def test_cancelled_waiter_leaves_the_queue(clock: FakeClock) -> None:
    """A cancelled waiter frees its queue place and never runs."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=1, clock=clock)
    gate = Gate()
    holder = asyncio.create_task(bulkhead.call(gate, 0))
    await settle()
    waiter = asyncio.create_task(bulkhead.call(gate, 1))
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.stats().queued == 0
    third = asyncio.create_task(bulkhead.call(gate, 2))
    await settle()
    gate.release.set()
    assert await holder == 0
    assert await third == 2
    assert 1 not in gate.started


async def test_slot_granted_while_cancelled_is_passed_on(clock: FakeClock) -> None:
    """A waiter cancelled as it is handed a slot passes the slot on to the next waiter."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=2, clock=clock)
    release = asyncio.Event()
    waiting: list[asyncio.Task[Any]] = []

    async def holder() -> str:
        await release.wait()
        waiting[0].cancel()  # cancel the first waiter just before our slot goes to it
        return "held"

    async def work(tag: int) -> int:
        return tag

    first = asyncio.create_task(bulkhead.call(holder))
    await settle()
    waiting.append(asyncio.create_task(bulkhead.call(work, 1)))
    waiting.append(asyncio.create_task(bulkhead.call(work, 2)))
    await settle()
    assert bulkhead.stats().queued == 2
    release.set()
    assert await first == "held"
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1] == 2
    stats = bulkhead.stats()
    assert (stats.active, stats.queued) == (0, 0)


async def test_running_call_cancelled_releases_slot(clock: FakeClock) -> None:
    """Cancelling a running call frees its slot."""
    bulkhead = bt.Bulkhead(max_concurrent=1, clock=clock)
    task = asyncio.create_task(bulkhead.call(asyncio.Event().wait))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulkhead.stats().active == 0
    assert await bulkhead.call(asyncio.sleep, 0, "free") == "free"


async def test_events(clock: FakeClock, recorder: Recorder) -> None:
    """Queueing and rejection emit events."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=1, clock=clock, name="pool")
    gate = Gate()
    tasks = [asyncio.create_task(bulkhead.call(gate, i)) for i in range(3)]
    await settle()
    gate.release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert recorder.of(events.BulkheadQueued) == [events.BulkheadQueued("pool", 1)]
    assert recorder.of(events.CallRejected) == [events.CallRejected("pool", "bulkhead", None)]


def test_threads_never_exceed_the_limit() -> None:
    """Many threads: at most max_concurrent run; queued ones all run; none lost."""
    bulkhead = bt.Bulkhead(max_concurrent=3, max_queued=100)
    lock = threading.Lock()
    running = 0
    peak = 0
    done = 0

    def work() -> None:
        nonlocal running, peak, done
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.002)
        with lock:
            running -= 1
            done += 1

    threads = [threading.Thread(target=bulkhead.call_sync, args=(work,)) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 3
    assert done == 24
    assert bulkhead.stats().active == 0


@contextlib.contextmanager
def slot_held_by_a_thread(bulkhead: bt.Bulkhead) -> Iterator[None]:
    """A thread takes one slot and keeps it until the block ends."""
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(5)

    thread = threading.Thread(target=bulkhead.call_sync, args=(hold,))
    thread.start()
    inside.wait(5)
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_sync_rejects_when_full() -> None:
    """A sync caller finding no slot and no queue room is rejected at once."""
    bulkhead = bt.Bulkhead(max_concurrent=1)
    with slot_held_by_a_thread(bulkhead), pytest.raises(bt.BulkheadFullError):
        bulkhead.call_sync(lambda: None)


def test_sync_queue_timeout_zero_budget() -> None:
    """A sync waiter with no budget left gives up without blocking."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=0.0)
    with slot_held_by_a_thread(bulkhead), pytest.raises(bt.BulkheadFullError):
        bulkhead.call_sync(lambda: None)


def test_sync_waiter_gets_the_freed_slot() -> None:
    """A queued thread runs as soon as the slot is handed to it."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=1)
    results: list[str] = []
    with slot_held_by_a_thread(bulkhead):
        waiter = threading.Thread(target=lambda: results.append(bulkhead.call_sync(lambda: "ran")))
        waiter.start()
        while bulkhead.stats().queued == 0:
            threading.Event().wait(0.001)
    waiter.join(5)
    assert results == ["ran"]
    stats = bulkhead.stats()
    assert (stats.active, stats.queued) == (0, 0)


async def test_sync_release_wakes_async_waiter() -> None:
    """A slot freed by a thread wakes a task waiting on the loop."""
    bulkhead = bt.Bulkhead(max_concurrent=1, max_queued=1)
    with slot_held_by_a_thread(bulkhead):
        waiter = asyncio.create_task(bulkhead.call(asyncio.sleep, 0, "woken"))
        await settle()
        assert bulkhead.stats().queued == 1
    assert await asyncio.wait_for(waiter, 5) == "woken"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(min_value=1, max_value=4),
    queued=st.integers(min_value=0, max_value=6),
    plan=st.lists(st.tuples(st.sampled_from(["run", "cancel"]), st.integers(0, 3)), max_size=20),
)
def test_invariants_under_random_schedules(
    limit: int, queued: int, plan: list[tuple[str, int]]
) -> None:
    """Never more than `limit` running, never more than `queued` waiting; all slots return."""

    async def scenario() -> None:
        clock = FakeClock()
        bulkhead = bt.Bulkhead(max_concurrent=limit, max_queued=queued, clock=clock)
        running = 0
        peak = 0

        async def work(duration: int) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await clock.sleep(duration)
            finally:
                running -= 1

        tasks: list[asyncio.Task[Any]] = []
        for action, value in plan:
            tasks.append(asyncio.create_task(bulkhead.call(work, value)))
            await asyncio.sleep(0)
            assert bulkhead.stats().queued <= queued
            if action == "cancel" and tasks:
                tasks[value % len(tasks)].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= limit
        stats = bulkhead.stats()
        assert (stats.active, stats.queued) == (0, 0)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrent": 0}, "max_concurrent must be an int >= 1, got 0"),
        ({"max_queued": -1}, "max_queued must be an int >= 0, got -1"),
        ({"queue_timeout": -1}, "queue_timeout must be a duration >= 0 seconds, got -1"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    """Bad options name themselves."""
    with pytest.raises(bt.ConfigError, match=message):
        bt.Bulkhead(**kwargs)
