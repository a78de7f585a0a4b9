"""FakeClock: virtual time for tests, and the system clock."""

from __future__ import annotations

import asyncio
import time

import pytest

import buttress as bt
from buttress.testing import FakeClock


def test_starts_where_told() -> None:
    """monotonic() starts at `start`."""
    assert FakeClock(12.5).monotonic() == 12.5


def test_advance_moves_time() -> None:
    """advance(s) adds s seconds; timedelta works too."""
    from datetime import timedelta

    clock = FakeClock()
    clock.advance(1.5)
    clock.advance(timedelta(milliseconds=500))
    assert clock.monotonic() == 2.0


def test_advance_rejects_negative() -> None:
    """Time never goes back."""
    with pytest.raises(bt.ConfigError, match="seconds must be a duration >= 0 seconds, got -1"):
        FakeClock().advance(-1)


def test_sleep_sync_jumps_instantly() -> None:
    """sleep_sync advances virtual time without real waiting (a real wait would hang)."""
    clock = FakeClock()
    clock.sleep_sync(1e9)  # about 30 years: only a virtual sleep returns
    assert clock.monotonic() == 1e9


def test_timers_fire_in_order_at_their_due_time() -> None:
    """advance() runs due callbacks in order, each seeing its own due time."""
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    clock.call_later(2, lambda: seen.append(("b", clock.monotonic())))
    clock.call_later(1, lambda: seen.append(("a", clock.monotonic())))
    clock.call_later(5, lambda: seen.append(("c", clock.monotonic())))
    clock.advance(3)
    assert seen == [("a", 1.0), ("b", 2.0)]
    assert clock.monotonic() == 3.0


def test_cancelled_timer_does_not_fire() -> None:
    """A cancelled timer is skipped."""
    clock = FakeClock()
    fired: list[int] = []
    handle = clock.call_later(1, lambda: fired.append(1))
    handle.cancel()
    clock.advance(2)
    assert fired == []
    assert clock.pending_timers == 0


async def test_async_sleep_autojumps() -> None:
    """await sleep(s) returns with time advanced by s (a real wait would hang)."""
    clock = FakeClock()
    await clock.sleep(1e9)
    assert clock.monotonic() == 1e9


async def test_concurrent_sleeps_overlap() -> None:
    """Two tasks sleeping 1 s at once both wake at t = 1, like real time."""
    clock = FakeClock()
    await asyncio.gather(clock.sleep(1), clock.sleep(1), clock.sleep(0.5))
    assert clock.monotonic() == 1.0


async def test_sleeps_wake_in_time_order() -> None:
    """Sleepers wake in order of their due time."""
    clock = FakeClock()
    order: list[int] = []

    async def sleeper(seconds: float, tag: int) -> None:
        await clock.sleep(seconds)
        order.append(tag)

    await asyncio.gather(sleeper(3, 3), sleeper(1, 1), sleeper(2, 2))
    assert order == [1, 2, 3]


async def test_two_fake_clocks_share_a_loop() -> None:
    """Jumpers of two fake clocks do not wait for each other."""
    a, b = FakeClock(), FakeClock()
    await asyncio.gather(a.sleep(1), b.sleep(2))
    assert (a.monotonic(), b.monotonic()) == (1.0, 2.0)


async def test_manual_mode_waits_for_advance() -> None:
    """With autojump=False, a sleeper waits until advance() reaches its due time."""
    clock = FakeClock(autojump=False)
    task = asyncio.create_task(clock.sleep(5))
    await asyncio.sleep(0)
    clock.advance(4)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1)
    await asyncio.sleep(0)
    assert task.done()


async def test_cancelled_sleep_leaves_no_timer() -> None:
    """Cancelling a sleeper removes its timer."""
    clock = FakeClock(autojump=False)
    task = asyncio.create_task(clock.sleep(5))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending_timers == 0


def test_fake_clock_is_a_clock() -> None:
    """FakeClock satisfies the Clock protocol, so every policy accepts it."""
    assert isinstance(FakeClock(), bt.Clock)
    assert isinstance(bt.SYSTEM_CLOCK, bt.Clock)


def test_non_clock_is_rejected() -> None:
    """Passing something that is not a clock fails at construction."""
    with pytest.raises(bt.ConfigError, match="clock must be a Clock"):
        bt.Retry(on=OSError, clock=time)  # type: ignore[arg-type]


async def test_system_clock_sleeps_and_schedules() -> None:
    """The system clock's call_later runs on the loop."""
    fired = asyncio.Event()
    bt.SYSTEM_CLOCK.call_later(0, fired.set)
    await asyncio.wait_for(fired.wait(), 1)
    await bt.SYSTEM_CLOCK.sleep(0)
    assert bt.SYSTEM_CLOCK.monotonic() > 0
