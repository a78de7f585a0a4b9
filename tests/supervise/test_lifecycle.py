"""Starting (the handshake), stopping (order, timeouts, cancellation) and running modes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import buttress as bt
from buttress.supervise import (
    ChildExited,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    ChildUnkillable,
    Supervisor,
    SupervisorError,
    SupervisorGaveUpError,
    SupervisorStopped,
    ready,
)
from buttress.testing import FakeClock

from ..conftest import Recorder
from .helpers import Journal, leftover_tasks, settle

# -- ordered start and the handshake ------------------------------------------------------------


async def test_children_start_in_order_waiting_for_each_handshake(clock: FakeClock) -> None:
    """b starts only once a has called ready(), a second later."""
    log: list[tuple[str, float]] = []

    async def slow_to_connect() -> None:
        await clock.sleep(1.0)
        log.append(("a ready", clock.monotonic()))
        ready()
        await clock.sleep(1e9)

    async def second() -> None:
        log.append(("b start", clock.monotonic()))
        await clock.sleep(1e9)

    sup = Supervisor(
        [ChildSpec("a", slow_to_connect, handshake=True), ChildSpec("b", second)], clock=clock
    )
    await sup.start()
    assert log == [("a ready", 1.0), ("b start", 1.0)]
    assert [c.state for c in sup.which_children()] == ["running", "running"]
    await sup.stop()


async def test_a_start_failure_stops_the_started_children_and_fails_the_start(
    clock: FakeClock, recorder: Recorder
) -> None:
    """c fails before ready(): b and a are stopped (reverse order), start() raises
    ChildStartError with the child's error as cause, and nothing is left running."""
    j = Journal()
    boom = ConnectionError("no database")

    async def failing() -> None:
        await clock.sleep(0.5)
        raise boom

    sup = Supervisor(
        [
            j.killable("a"),
            j.killable("b"),
            ChildSpec("c", failing, handshake=True),
            j.killable("d"),
        ],
        clock=clock,
    )
    with pytest.raises(ChildStartError) as info:
        await sup.start()
    assert (info.value.child, info.value.reason) == ("c", "exception")
    assert info.value.__cause__ is boom
    assert j.lines == [("a", "start"), ("b", "start"), ("b", "stop"), ("a", "stop")]
    assert not sup.running and not leftover_tasks()
    failed = [e for e in recorder.of(ChildExited) if e.during_start]  # type: ignore[attr-defined]
    assert [e.child for e in failed] == ["c"]  # type: ignore[attr-defined]
    assert recorder.of(SupervisorStopped)[-1].reason == "start_failed"  # type: ignore[attr-defined]
    with pytest.raises(ChildStartError):
        await sup.wait()


async def test_start_timeout_fails_the_start(clock: FakeClock) -> None:
    """A child that never calls ready() within start_timeout is cancelled: start failure."""

    async def hangs() -> None:
        await clock.sleep(1e9)

    sup = Supervisor([ChildSpec("h", hangs, handshake=True, start_timeout=2.0)], clock=clock)
    with pytest.raises(ChildStartError, match="start_timeout") as info:
        await sup.run()
    assert isinstance(info.value.__cause__, bt.TimeoutError)
    assert clock.monotonic() == 2.0
    assert not leftover_tasks()


async def test_a_child_that_returns_before_ready_has_started(clock: FakeClock) -> None:
    """A handshake child ending normally before ready() is not a start failure."""

    async def one_shot() -> None:
        return None

    sup = Supervisor(
        [ChildSpec("once", one_shot, handshake=True, restart="transient")], clock=clock
    )
    async with sup:
        await settle()
    assert sup.stats().exits == 1


async def test_a_failed_restart_counts_against_the_intensity(clock: FakeClock) -> None:
    """A child that starts once, then fails every later start: each failure is a restart."""
    starts = 0

    async def flaky_start() -> None:
        nonlocal starts
        starts += 1
        if starts > 1:
            raise ConnectionError("refused")
        ready()
        await clock.sleep(1.0)
        raise RuntimeError("crash")

    sup = Supervisor([ChildSpec("w", flaky_start, handshake=True)], clock=clock)
    with pytest.raises(SupervisorGaveUpError) as info:
        await sup.run()
    assert starts == 4 and info.value.restarts == 4
    assert isinstance(info.value.__cause__, ConnectionError)


async def test_ready_outside_a_supervisor_does_nothing() -> None:
    """The same code runs supervised or not."""
    ready()


# -- stopping -----------------------------------------------------------------------------------


async def test_stop_stops_children_in_reverse_order(clock: FakeClock, recorder: Recorder) -> None:
    """stop(): c, b, a; then SupervisorStopped('stopped'); nothing left running."""
    j = Journal()
    sup = Supervisor([j.killable("a"), j.killable("b"), j.killable("c")], clock=clock)
    await sup.start()
    await sup.stop()
    assert j.of("stop") == ["c", "b", "a"]
    assert recorder.of(SupervisorStopped)[-1].reason == "stopped"  # type: ignore[attr-defined]
    assert not leftover_tasks()
    await sup.stop()  # a second stop does nothing
    await sup.wait()  # and the run ended cleanly


async def test_each_child_gets_its_shutdown_time_to_clean_up(clock: FakeClock) -> None:
    """A child whose cleanup takes 2 s (within its 5 s) finishes it; the next one is
    stopped after: the stops are sequential."""
    done: list[tuple[str, float]] = []

    def slow_cleanup(name: str) -> ChildSpec:
        async def child() -> None:
            try:
                await clock.sleep(1e9)
            finally:
                await clock.sleep(2.0)
                done.append((name, clock.monotonic()))

        return ChildSpec(name, child)

    sup = Supervisor([slow_cleanup("a"), slow_cleanup("b")], clock=clock)
    await sup.start()
    await sup.stop()
    assert done == [("b", 2.0), ("a", 4.0)]


async def test_an_unkillable_child_is_reported_and_detached(
    clock: FakeClock, recorder: Recorder
) -> None:
    """A child ignoring cancellation is reported after its shutdown and left behind; the
    supervisor stops anyway."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    j = Journal()
    sup = Supervisor([j.killable("a"), ChildSpec("s", stubborn, shutdown=3.0)], clock=clock)
    await sup.start()
    await sup.stop()
    assert clock.monotonic() == 3.0
    (event,) = recorder.of(ChildUnkillable)
    assert (event.child, event.shutdown) == ("s", 3.0)  # type: ignore[attr-defined]
    assert j.of("stop") == ["a"]
    assert sup.stats().unkillable == 1
    assert len(leftover_tasks()) == 1
    release.set()
    await settle()
    assert not leftover_tasks()


async def test_cancelling_run_stops_children_in_reverse_order_and_propagates(
    clock: FakeClock, recorder: Recorder
) -> None:
    """Cancelling the task awaiting run(): children stopped c, b, a; CancelledError out."""
    j = Journal()
    sup = Supervisor([j.killable("a"), j.killable("b"), j.killable("c")], clock=clock)
    task = asyncio.ensure_future(sup.run())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert j.of("stop") == ["c", "b", "a"]
    assert recorder.of(SupervisorStopped)[-1].reason == "cancelled"  # type: ignore[attr-defined]
    assert not sup.running and not leftover_tasks()


async def test_a_timeout_around_run_is_a_clean_cancellation(clock: FakeClock) -> None:
    """asyncio.timeout around run() raises TimeoutError after stopping the children."""
    j = Journal()
    sup = Supervisor([j.killable("a")], clock=clock)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await sup.run()
    assert j.of("stop") == ["a"] and not leftover_tasks()


async def test_cancelling_during_the_shutdown_still_stops_everything(clock: FakeClock) -> None:
    """A second cancellation while children clean up does not cut the shutdown short."""
    cleaned: list[str] = []

    def slow(name: str) -> ChildSpec:
        async def child() -> None:
            try:
                await clock.sleep(1e9)
            finally:
                await clock.sleep(1.0)
                cleaned.append(name)

        return ChildSpec(name, child)

    sup = Supervisor([slow("a"), slow("b")], clock=clock)
    task = asyncio.ensure_future(sup.run())
    await settle()
    task.cancel()
    await clock.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["b", "a"] and not leftover_tasks()


async def test_a_child_can_stop_its_supervisor(clock: FakeClock) -> None:
    """stop() from inside a child: the child is stopped with the rest, run() returns."""
    holder: list[Supervisor] = []

    async def stopper() -> None:
        await clock.sleep(1.0)
        await holder[0].stop()

    sup = Supervisor([ChildSpec("s", stopper)], clock=clock)
    holder.append(sup)
    await sup.run()
    assert clock.monotonic() == 1.0 and not leftover_tasks()


# -- async with, start/stop, wait ---------------------------------------------------------------


async def test_async_with_cancels_the_body_when_the_supervisor_gives_up(clock: FakeClock) -> None:
    """Like a TaskGroup: the body is cancelled, and the block raises the gave-up error."""
    j = Journal()
    body_cancelled = False
    with pytest.raises(SupervisorGaveUpError):
        async with Supervisor([j.crashing("w", clock, 1.0)], clock=clock):
            try:
                await clock.sleep(100.0)
            except asyncio.CancelledError:
                body_cancelled = True
                raise
    assert body_cancelled and clock.monotonic() == 4.0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_an_outside_cancellation_of_the_body_stays_a_cancellation(clock: FakeClock) -> None:
    """Cancelling the task running the block is not turned into anything else."""
    j = Journal()

    async def host() -> None:
        async with Supervisor([j.killable("a")], clock=clock):
            await clock.sleep(100.0)

    task = asyncio.ensure_future(host())
    await clock.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert j.of("stop") == ["a"] and not leftover_tasks()


async def test_a_body_error_wins_and_stops_the_children(clock: FakeClock) -> None:
    """An exception in the block propagates after the children stopped."""
    j = Journal()
    with pytest.raises(KeyError):
        async with Supervisor([j.killable("a")], clock=clock):
            raise KeyError("body")
    assert j.of("stop") == ["a"]


async def test_wait_reports_how_the_supervisor_ended(clock: FakeClock) -> None:
    """wait() raises the gave-up error; before any start it is a SupervisorError."""
    j = Journal()
    sup = Supervisor([j.crashing("w", clock, 1.0)], clock=clock)
    with pytest.raises(SupervisorError, match="never started"):
        await sup.wait()
    await sup.start()
    with pytest.raises(SupervisorGaveUpError):
        await sup.wait()
    await sup.stop()  # never raises


async def test_cannot_run_twice_at_once_but_can_run_again(clock: FakeClock) -> None:
    """A running supervisor refuses a second run; after it ended it can run again."""
    j = Journal()
    sup = Supervisor([j.killable("a")], clock=clock)
    await sup.start()
    with pytest.raises(SupervisorError, match="already running"):
        await sup.start()
    with pytest.raises(SupervisorError, match="already running"):
        await sup.run()
    await sup.stop()
    async with sup:
        assert sup.running
    assert j.of("start") == ["a", "a"]


async def test_events_go_to_the_supervisor_listeners(clock: FakeClock) -> None:
    """Per-supervisor listeners receive its events; remove_listener stops them."""
    seen: list[bt.events.Event] = []
    j = Journal()
    sup = Supervisor([j.killable("a")], clock=clock)
    sup.add_listener(seen.append)
    async with sup:
        await settle()
    assert [type(e).__name__ for e in seen] == ["ChildStarted", "ChildExited", "SupervisorStopped"]
    sup.remove_listener(seen.append)
    with pytest.raises(bt.ConfigError):
        sup.remove_listener(seen.append)
    with pytest.raises(bt.ConfigError):
        sup.add_listener(3)  # type: ignore[arg-type]


async def test_stats_and_introspection(clock: FakeClock) -> None:
    """stats(), which_children() and count_children() describe the tree."""
    j = Journal()
    inner = Supervisor([j.killable("x")], name="inner", clock=clock)
    sup = Supervisor([j.killable("a"), inner.child_spec()], name="outer", clock=clock)
    async with sup:
        await settle()
        j.kill("a", RuntimeError("boom"))
        await settle()
        stats = sup.stats()
        assert (stats.name, stats.running, stats.children, stats.active) == ("outer", True, 2, 2)
        assert (stats.restarts, stats.restarts_in_window, stats.exits, stats.crashes) == (
            1,
            1,
            1,
            1,
        )
        counts = sup.count_children()
        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 2, 1, 1)
        info = sup.which_children()
        assert [(c.id, c.state, c.kind, c.restarts) for c in info] == [
            ("a", "running", "worker", 1),
            ("inner", "running", "supervisor", 0),
        ]
        assert all(isinstance(c.task, asyncio.Task) for c in info)
    assert sup.stats().active == 0 and not sup.stats().running
    await clock.sleep(5.0)
    assert sup.stats().restarts_in_window == 0


async def test_started_events_count_restarts(clock: FakeClock, recorder: Recorder) -> None:
    """ChildStarted.restarts is 0 at first, then how many restarts came before."""
    j = Journal()
    sup = Supervisor([j.killable("a")], clock=clock)
    async with sup:
        await settle()
        j.kill("a", RuntimeError("x"))
        await settle()
    assert [e.restarts for e in recorder.of(ChildStarted)] == [0, 1]  # type: ignore[attr-defined]
