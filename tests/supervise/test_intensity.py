"""Restart intensity and backoff, on virtual time."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress.supervise import (
    ChildRestarted,
    ChildSpec,
    ChildStarted,
    Supervisor,
    SupervisorGaveUp,
    SupervisorGaveUpError,
)
from buttress.testing import FakeClock

from ..conftest import Recorder
from .helpers import Journal, leftover_tasks, settle


async def test_gives_up_on_the_fourth_restart_within_five_seconds(
    clock: FakeClock, recorder: Recorder
) -> None:
    """A child crashing every second: restarts at 1, 2, 3 s, then gives up at 4 s."""
    j = Journal()
    sup = Supervisor([j.crashing("w", clock, 1.0), j.killable("other")], clock=clock, name="s")
    with pytest.raises(SupervisorGaveUpError) as info:
        await sup.run()
    assert clock.monotonic() == 4.0
    error = info.value
    assert (error.supervisor, error.child, error.restarts, error.within) == ("s", "w", 4, 5.0)
    assert isinstance(error.__cause__, RuntimeError)
    assert "restart 4 within 5 s exceeds max_restarts=3" in str(error)
    assert j.of("stop") == ["other"]  # the survivors are stopped
    (gave_up,) = recorder.of(SupervisorGaveUp)
    assert gave_up.restarts == 4  # type: ignore[attr-defined]
    assert sup.stats().gave_up == 1 and sup.stats().restarts == 3
    assert not leftover_tasks()


async def test_a_slower_crash_rate_is_sustained(clock: FakeClock) -> None:
    """Crashing every 2 s never puts 4 restarts in a 5 s window: it runs on."""
    j = Journal()
    sup = Supervisor([j.crashing("w", clock, 2.0)], clock=clock)
    async with sup:
        await clock.sleep(60.0)
        assert sup.running
    assert sup.stats().restarts == 29
    assert sup.stats().gave_up == 0


async def test_zero_intensity_gives_up_on_the_first_exit(clock: FakeClock) -> None:
    """max_restarts=0: never restart."""
    j = Journal()
    sup = Supervisor([j.crashing("w", clock, 1.0)], max_restarts=0, clock=clock)
    with pytest.raises(SupervisorGaveUpError):
        await sup.run()
    assert j.of("start") == ["w"]


async def test_a_permanent_child_returning_counts_as_restarts(clock: FakeClock) -> None:
    """A permanent child that keeps returning at once is a crash loop too."""

    async def quits() -> None:
        return None

    sup = Supervisor([ChildSpec("q", quits)], clock=clock)
    with pytest.raises(SupervisorGaveUpError):
        await sup.run()
    assert clock.monotonic() == 0.0


@settings(max_examples=25, deadline=None)
@given(
    max_restarts=st.integers(0, 4),
    within=st.sampled_from([1.0, 2.5, 5.0]),
    lifetimes=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.0]), min_size=1, max_size=30),
)
def test_random_crash_schedules_never_exceed_the_intensity(
    max_restarts: int, within: float, lifetimes: list[float]
) -> None:
    """Under random crash schedules, restarts within any window never exceed the limit,
    and the supervisor gives up exactly when one more would."""

    async def scenario() -> None:
        clock = FakeClock()
        restarts: list[float] = []
        gave_up: list[float] = []
        schedule = iter(lifetimes)

        async def child() -> None:
            try:
                await clock.sleep(next(schedule))
            except StopIteration:
                await clock.sleep(1e9)
            raise RuntimeError("crash")

        def listen(event: bt.events.Event) -> None:
            if isinstance(event, ChildRestarted):
                restarts.append(clock.monotonic())
            elif isinstance(event, SupervisorGaveUp):
                gave_up.append(clock.monotonic())

        sup = Supervisor(
            [ChildSpec("w", child)],
            max_restarts=max_restarts,
            within=within,
            clock=clock,
            listeners=[listen],
        )
        task = asyncio.ensure_future(sup.run())
        await clock.sleep(sum(lifetimes) + 10.0)
        if not task.done():
            task.cancel()
        try:
            await task
        except (SupervisorGaveUpError, asyncio.CancelledError):
            pass
        for start in restarts:
            assert sum(1 for t in restarts if start <= t < start + within) <= max_restarts
        if gave_up:
            at = gave_up[0]
            assert sum(1 for t in restarts if at - t < within) == max_restarts
        assert not leftover_tasks()

    asyncio.run(scenario())


async def test_backoff_spaces_restarts_and_resets_after_the_window(clock: FakeClock) -> None:
    """With Backoff.exponential(base=1, jitter='none') and a 10 s window: waits of 1, 2,
    4 s; a child that then lives 20 s has left the window, so the next wait is 1 s."""
    starts: list[float] = []
    lifetimes = iter([0.0, 0.0, 0.0, 20.0])

    async def child() -> None:
        starts.append(clock.monotonic())
        await clock.sleep(next(lifetimes, 1e9))
        raise RuntimeError("crash")

    sup = Supervisor(
        [ChildSpec("w", child)],
        backoff=bt.Backoff.exponential(base=1.0, cap=60.0, jitter="none"),
        max_restarts=10,
        within=10.0,
        clock=clock,
    )
    async with sup:
        await clock.sleep(40.0)
    assert starts == [0.0, 1.0, 3.0, 7.0, 28.0]


async def test_backoff_delays_follow_the_strategy(clock: FakeClock, recorder: Recorder) -> None:
    """The n-th restart within the window waits backoff.compute(n): 1, 2, 4 s, and the
    child is 'restarting' meanwhile."""
    j = Journal()
    started: list[float] = []
    sup = Supervisor(
        [j.killable("w")],
        backoff=bt.Backoff.exponential(base=1.0, cap=60.0, jitter="none"),
        max_restarts=5,
        within=60.0,
        clock=clock,
        listeners=[
            lambda e: started.append(clock.monotonic()) if isinstance(e, ChildStarted) else None
        ],
    )
    async with sup:
        for _ in range(3):
            await settle()
            j.kill("w", RuntimeError("boom"))
            await settle()
            assert sup.which_children()[0].state == "restarting"
            await clock.sleep(10.0)
    delays = [e.delay for e in recorder.of(ChildRestarted)]  # type: ignore[attr-defined]
    assert delays == [1.0, 2.0, 4.0]
    assert started == [0.0, 1.0, 12.0, 24.0]


async def test_backoff_jitter_draws_from_the_injected_random(clock: FakeClock) -> None:
    """Two supervisors with equally seeded random get the same jittered delays."""

    async def run_once() -> list[float]:
        delays: list[float] = []
        j = Journal()
        sup = Supervisor(
            [j.killable("w")],
            backoff=bt.Backoff.exponential(base=1.0, cap=8.0, jitter="full"),
            max_restarts=5,
            within=60.0,
            clock=clock,
            random=random.Random(7),
            listeners=[lambda e: delays.append(e.delay) if isinstance(e, ChildRestarted) else None],  # type: ignore[attr-defined]
        )
        async with sup:
            for _ in range(3):
                await asyncio.sleep(0)
                j.kill("w", RuntimeError("boom"))
                await clock.sleep(10.0)
        return delays

    first, second = await run_once(), await run_once()
    assert first == second and len(first) == 3 and all(0.0 <= d <= 8.0 for d in first)
    assert len(set(first)) == 3


async def test_a_sibling_restart_supersedes_a_pending_one(clock: FakeClock) -> None:
    """rest_for_one: b waits for its backoff when a crashes; a's restart takes b along,
    and b is started once, not twice."""
    j = Journal()
    sup = Supervisor(
        [j.killable("a"), j.killable("b")],
        strategy="rest_for_one",
        backoff=bt.Backoff.constant(1.0),
        max_restarts=5,
        clock=clock,
    )
    async with sup:
        await asyncio.sleep(0)
        j.kill("b", RuntimeError("b"))
        for _ in range(10):
            await asyncio.sleep(0)
        j.kill("a", RuntimeError("a"))
        await clock.sleep(5.0)
        j.clear()
    assert j.of("start") == []
    assert [c.state for c in sup.which_children()] == ["stopped", "stopped"]
