"""Timeout: per-attempt limits that clamp to the deadline and propagate the budget."""

from __future__ import annotations

import asyncio
import threading

import pytest

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder


async def test_returns_value_in_time(clock: FakeClock) -> None:
    """A call that finishes in time returns its value."""

    async def work() -> str:
        await clock.sleep(0.5)
        return "done"

    assert await bt.Timeout(1.0, clock=clock).call(work) == "done"


async def test_fires_at_the_limit(clock: FakeClock) -> None:
    """A slow call is cancelled exactly at the limit with bt.TimeoutError."""

    async def slow() -> None:
        await clock.sleep(10)

    with pytest.raises(bt.TimeoutError, match=r"timed out after 1\.000 s") as info:
        await bt.Timeout(1.0, clock=clock).call(slow)
    assert clock.monotonic() == 1.0
    assert info.value.timeout == 1.0
    assert not isinstance(info.value, bt.DeadlineExceededError)


async def test_clamps_to_a_shorter_deadline(clock: FakeClock) -> None:
    """Inside a shorter deadline the timeout fires at the deadline, as DeadlineExceededError."""

    async def slow() -> None:
        await clock.sleep(10)

    with bt.deadline(0.3, clock=clock), pytest.raises(bt.DeadlineExceededError):
        await bt.Timeout(5.0, clock=clock).call(slow)
    assert clock.monotonic() == pytest.approx(0.3)


async def test_longer_deadline_leaves_the_limit(clock: FakeClock) -> None:
    """A longer deadline does not extend the timeout."""

    async def slow() -> None:
        await clock.sleep(10)

    with bt.deadline(5.0, clock=clock), pytest.raises(bt.TimeoutError) as info:
        await bt.Timeout(1.0, clock=clock).call(slow)
    assert not isinstance(info.value, bt.DeadlineExceededError)
    assert clock.monotonic() == 1.0


async def test_no_time_left_does_not_call(clock: FakeClock) -> None:
    """With the deadline spent, the callee is not called at all."""
    called = False

    async def work() -> None:
        nonlocal called
        called = True

    with bt.deadline(1.0, clock=clock):
        clock.advance(2)
        with pytest.raises(bt.DeadlineExceededError):
            await bt.Timeout(5.0, clock=clock).call(work)
    assert not called


async def test_zero_seconds_means_no_time(clock: FakeClock) -> None:
    """Timeout(0) fails at once: zero means zero, not 'no limit'."""

    async def work() -> None:
        raise AssertionError("must not run")

    with pytest.raises(bt.TimeoutError):
        await bt.Timeout(0, clock=clock).call(work)


async def test_budget_is_visible_inside(clock: FakeClock) -> None:
    """The callee sees min(timeout, deadline) through bt.remaining() and the headers."""

    async def look() -> tuple[float | None, dict[str, str]]:
        return bt.remaining(), bt.deadline_headers()

    left, headers = await bt.Timeout(0.75, clock=clock).call(look)
    assert left == 0.75
    assert headers == {"x-request-timeout": "750000u"}
    with bt.deadline(0.5, clock=clock):
        left, _ = await bt.Timeout(0.75, clock=clock).call(look)
    assert left == 0.5
    assert bt.remaining() is None


async def test_passes_arguments(clock: FakeClock) -> None:
    """Positional and keyword arguments reach the callee."""

    async def add(a: int, b: int, *, c: int = 0) -> int:
        return a + b + c

    assert await bt.Timeout(1, clock=clock).call(add, 1, 2, c=3) == 6


async def test_outside_cancellation_passes_through(clock: FakeClock) -> None:
    """Cancelling the caller is a CancelledError, not a timeout."""
    started = asyncio.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(bt.Timeout(100, clock=clock).call(wait_forever))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_emits_event_and_counts(clock: FakeClock, recorder: Recorder) -> None:
    """A firing emits TimeoutFired and shows in stats()."""
    policy = bt.Timeout(1.0, clock=clock, name="db")

    async def slow() -> None:
        await clock.sleep(5)

    with pytest.raises(bt.TimeoutError):
        await policy.call(slow)
    (event,) = recorder.of(events.TimeoutFired)
    assert event == events.TimeoutFired("db", 1.0, False)
    assert policy.stats().timeouts == 1


async def test_sequential_calls_reuse_one_timer(clock: FakeClock) -> None:
    """Many fast calls in a row leave at most one pending timer."""
    policy = bt.Timeout(5.0, clock=clock)

    async def fast() -> int:
        return 1

    for _ in range(100):
        await policy.call(fast)
    assert clock.pending_timers <= 1


# -- sync ------------------------------------------------------------------------------------


def test_sync_propagates_the_budget(clock: FakeClock) -> None:
    """Sync calls see the budget through bt.remaining()."""
    assert bt.Timeout(2.0, clock=clock).call_sync(bt.remaining) == 2.0


def test_sync_fails_fast_without_time(clock: FakeClock) -> None:
    """With the deadline spent, a sync call is not made."""
    with bt.deadline(0, clock=clock), pytest.raises(bt.DeadlineExceededError):
        bt.Timeout(1.0, clock=clock).call_sync(lambda: 1)


def test_sync_overrun_returns_and_reports(clock: FakeClock, recorder: Recorder) -> None:
    """Cooperative mode cannot interrupt: it returns the late result and emits TimeoutOverran."""
    policy = bt.Timeout(1.0, clock=clock, name="legacy")

    def slow() -> str:
        clock.advance(3)
        return "late"

    assert policy.call_sync(slow) == "late"
    (event,) = recorder.of(events.TimeoutOverran)
    assert event == events.TimeoutOverran("legacy", 1.0, 3.0)
    assert policy.stats().overruns == 1


def test_sync_thread_mode_stops_waiting() -> None:
    """sync="thread" gives up at the limit while the worker thread is still blocked."""
    release = threading.Event()
    worker_done = threading.Event()

    def blocked() -> None:
        release.wait(30)
        worker_done.set()

    policy = bt.Timeout(0.05, sync="thread")
    with pytest.raises(bt.TimeoutError):
        policy.call_sync(blocked)
    assert not worker_done.is_set()  # the caller came back before the worker finished
    release.set()
    assert worker_done.wait(5)


def test_sync_thread_mode_returns_and_propagates() -> None:
    """sync="thread" returns the result and the worker sees the budget."""
    policy = bt.Timeout(5.0, sync="thread")
    left = policy.call_sync(bt.remaining)
    assert left is not None and 0 < left <= 5.0
    with pytest.raises(KeyError):
        policy.call_sync({}.__getitem__, "missing")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seconds": -1}, "seconds must be a duration >= 0 seconds, got -1"),
        ({"seconds": float("inf")}, "seconds must be a finite duration >= 0 seconds, got inf"),
        ({"seconds": "2"}, "seconds must be a duration in seconds"),
        (
            {"seconds": 1, "sync": "kill"},
            "sync must be one of 'cooperative' | 'thread', got 'kill'",
        ),
        ({"seconds": 1, "name": ""}, "name must be a non-empty str or None"),
    ],
)
def test_bad_options(kwargs: dict[str, object], message: str) -> None:
    """Bad options fail at construction with a message naming them."""
    with pytest.raises(bt.ConfigError, match=message.replace("|", r"\|").replace("(", r"\(")):
        bt.Timeout(**kwargs)  # type: ignore[arg-type]


def test_timedelta_seconds() -> None:
    """Durations accept timedelta."""
    from datetime import timedelta

    assert bt.Timeout(timedelta(milliseconds=250)).seconds == 0.25
