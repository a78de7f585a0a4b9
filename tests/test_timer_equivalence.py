"""bt.Timeout cancels like asyncio.timeout, at a fraction of the cost.

Each scenario runs twice on the real event loop — once under ``asyncio.timeout``, once
under ``bt.Timeout`` — and the observable outcomes must be the same: the exception type
that reaches the caller, what the callee saw, and the task's cancel count afterwards.
Real time is used here on purpose (both must agree on the real loop), with short
timeouts and generous margins; no assertion is about speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress._timer import DONE, LIVE, TimerQueue

Body = Callable[[], Awaitable[Any]]


async def _with_asyncio(seconds: float, body: Body) -> Any:
    async with asyncio.timeout(seconds):
        return await body()


async def _with_buttress(seconds: float, body: Body) -> Any:
    return await bt.Timeout(seconds).call(body)


async def _outcome(
    runner: Callable[[float, Body], Awaitable[Any]], seconds: float, body: Body
) -> tuple[str, int]:
    task = asyncio.current_task()
    assert task is not None
    before = task.cancelling()
    try:
        result = await runner(seconds, body)
        kind = f"ok:{result}"
    except TimeoutError:
        kind = "timeout"
    except asyncio.CancelledError:
        kind = "cancelled"
        task.uncancel()
    except Exception as exc:
        kind = f"error:{type(exc).__name__}"
    return kind, task.cancelling() - before


async def _both(
    seconds: float, make_body: Callable[[], Body]
) -> tuple[tuple[str, int], tuple[str, int]]:
    expected = await _outcome(_with_asyncio, seconds, make_body())
    actual = await _outcome(_with_buttress, seconds, make_body())
    return expected, actual


async def test_completes_in_time() -> None:
    """A fast call returns its value under both."""

    def make() -> Body:
        async def body() -> int:
            await asyncio.sleep(0)
            return 7

        return body

    expected, actual = await _both(1.0, make)
    assert expected == actual == ("ok:7", 0)


async def test_times_out() -> None:
    """A slow call becomes a TimeoutError under both, cancel count restored."""

    def make() -> Body:
        async def body() -> None:
            await asyncio.sleep(10)

        return body

    expected, actual = await _both(0.01, make)
    assert expected == actual == ("timeout", 0)


async def test_callee_sees_cancellation_and_cleans_up() -> None:
    """The callee gets CancelledError and may run cleanup awaits, under both."""
    cleaned: list[str] = []

    def make(tag: str) -> Body:
        async def body() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0)
                cleaned.append(tag)
                raise

        return body

    expected = await _outcome(_with_asyncio, 0.01, make("asyncio"))
    actual = await _outcome(_with_buttress, 0.01, make("buttress"))
    assert expected == actual == ("timeout", 0)
    assert cleaned == ["asyncio", "buttress"]


async def test_swallowed_cancellation_returns_the_value() -> None:
    """A callee that swallows the cancellation and returns keeps its result under both."""

    def make() -> Body:
        async def body() -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "swallowed"
            return "never"

        return body

    expected, actual = await _both(0.01, make)
    assert expected == actual == ("ok:swallowed", 0)


async def test_error_inside_is_not_converted() -> None:
    """An ordinary exception passes through both unchanged."""

    def make() -> Body:
        async def body() -> None:
            raise KeyError("k")

        return body

    expected, actual = await _both(1.0, make)
    assert expected == actual == ("error:KeyError", 0)


async def test_error_raised_while_cancelled_passes_through() -> None:
    """If the callee answers the timeout's cancel with another error, that error wins."""

    def make() -> Body:
        async def body() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise KeyError("during cleanup") from None

        return body

    expected, actual = await _both(0.01, make)
    assert expected == actual == ("error:KeyError", 0)


@pytest.mark.parametrize("runner", [_with_asyncio, _with_buttress])
async def test_outside_cancel_wins_over_a_simultaneous_timeout(
    runner: Callable[[float, Body], Awaitable[Any]],
) -> None:
    """A cancel from outside at the moment the timer fires stays a CancelledError."""

    async def body() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        await runner(0.02, body)

    task = asyncio.create_task(main())
    await asyncio.sleep(0.02)  # the timeout fires around now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("runner", [_with_asyncio, _with_buttress])
async def test_outside_cancel_before_expiry(
    runner: Callable[[float, Body], Awaitable[Any]],
) -> None:
    """A cancel from outside long before the timeout is a CancelledError."""

    async def body() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(runner(5.0, body))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_inner_fires_first() -> None:
    """Inner shorter timeout: the inner one reports, the outer is unaffected."""

    async def asyncio_version() -> str:
        async with asyncio.timeout(5):
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(10)
            except TimeoutError:
                return "inner"
        return "no"

    async def buttress_version() -> str:
        outer = bt.Timeout(5)
        inner = bt.Timeout(0.01)

        async def body() -> str:
            try:
                await inner.call(asyncio.sleep, 10)
            except TimeoutError:
                return "inner"
            return "no"

        return await outer.call(body)

    assert await asyncio_version() == await buttress_version() == "inner"


async def test_nested_outer_fires_first() -> None:
    """Outer shorter timeout: the outer reports; the inner lets the cancellation through."""
    seen: dict[str, list[str]] = {"asyncio": [], "buttress": []}

    async def asyncio_version() -> None:
        async with asyncio.timeout(0.01):
            try:
                async with asyncio.timeout(5):
                    await asyncio.sleep(10)
            except TimeoutError:
                seen["asyncio"].append("inner")
                raise

    async def buttress_version() -> None:
        inner = bt.Timeout(5)

        async def body() -> None:
            try:
                await inner.call(asyncio.sleep, 10)
            except TimeoutError:
                seen["buttress"].append("inner")
                raise

        async with asyncio.timeout(0.01):  # outer as asyncio, inner as buttress
            await body()

    for version in (asyncio_version, buttress_version):
        with pytest.raises(TimeoutError):
            await version()
    assert seen == {"asyncio": [], "buttress": []}


async def test_many_concurrent_timeouts_fire_independently() -> None:
    """Out-of-order completion and expiry across many tasks: each gets its own outcome."""
    policy = bt.Timeout(0.25)  # wide margins both ways: a loaded CI machine stays correct

    async def work(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    delays = [0.0, 1.0, 0.01, 1.5, 0.02, 0.0, 1.2, 0.03]
    results = await asyncio.gather(*(policy.call(work, d) for d in delays), return_exceptions=True)
    for delay, result in zip(delays, results, strict=True):
        if delay >= 1.0:
            assert isinstance(result, bt.TimeoutError)
        else:
            assert result == delay


async def test_queue_leaves_nothing_behind() -> None:
    """After many calls, finished and timed-out, the shared queue holds no live entry."""
    from buttress._timer import Site

    policy = bt.Timeout(0.02)

    async def work(delay: float) -> None:
        await asyncio.sleep(delay)

    await asyncio.gather(
        *(policy.call(work, 0.05 if i % 7 == 0 else 0.0) for i in range(200)),
        return_exceptions=True,
    )
    _, queue, _ = Site(bt.SYSTEM_CLOCK).locate()
    assert len(queue) == 0


# -- the queue itself, under virtual time ----------------------------------------------------


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "discard", "advance"]),
            st.floats(min_value=0.0, max_value=5.0, allow_nan=False),
            st.integers(min_value=0, max_value=50),
        ),
        max_size=80,
    )
)
def test_queue_fires_exactly_the_due_live_entries(ops: list[tuple[str, float, int]]) -> None:
    """Model check: every live entry fires once, at or after its due time, never a discarded one."""
    from buttress.testing import FakeClock

    clock = FakeClock(autojump=False)
    queue = TimerQueue(clock)
    fired: list[tuple[int, float, float]] = []
    entries: list[tuple[int, list[Any]]] = []
    lanes = {1.0: queue.lane(1.0), 2.5: queue.lane(2.5)}

    def on_fire(entry: list[Any]) -> None:
        fired.append((entry[3], entry[0], clock.monotonic()))

    for op, value, pick in ops:
        if op == "add":
            ident = len(entries)
            if pick % 3 == 0:
                entry = queue.add(clock.monotonic() + value, on_fire, ident)
                entries.append((ident, [entry, None]))
            else:
                seconds = 1.0 if pick % 3 == 1 else 2.5
                lane = lanes[seconds]
                entry = [clock.monotonic() + seconds, 0, on_fire, ident, LIVE, None]
                lane.append(entry)
                if entry[0] < queue.armed_at:
                    queue.arm(entry[0])
                entries.append((ident, [entry, lane]))
        elif op == "discard" and entries:
            _, (entry, lane) = entries[pick % len(entries)]
            queue.discard(entry, lane)
        else:
            clock.advance(value)
    clock.advance(10.0)
    fired_ids = [ident for ident, _, _ in fired]
    assert len(fired_ids) == len(set(fired_ids)), "an entry fired twice"
    for _ident, due, at in fired:
        assert at >= due - 1e-9
    for ident, (entry, _) in entries:
        if entry[4] == DONE:
            assert ident not in fired_ids
        else:
            assert ident in fired_ids
    assert len(queue) == 0
