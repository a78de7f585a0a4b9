"""Nesting, significant children (auto_shutdown), the dynamic supervisor, child operations."""

from __future__ import annotations

import asyncio

import pytest

import buttress as bt
from buttress.supervise import (
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    Supervisor,
    SupervisorError,
    SupervisorGaveUpError,
    SupervisorStopped,
)
from buttress.testing import FakeClock

from ..conftest import Recorder
from .helpers import Journal, leftover_tasks, settle

# -- nesting ------------------------------------------------------------------------------------


async def test_a_child_supervisor_starts_its_subtree_before_the_next_sibling(
    clock: FakeClock,
) -> None:
    """The parent waits for the whole subtree (its handshake) before starting the next."""
    j = Journal()
    inner = Supervisor([j.killable("x", handshake=True), j.killable("y")], clock=clock)
    outer = Supervisor([j.killable("a"), inner.child_spec(), j.killable("b")], clock=clock)
    async with outer:
        await settle()
        assert j.of("start") == ["a", "x", "y", "b"]
    assert j.of("stop") == ["b", "y", "x", "a"]
    assert not leftover_tasks()


async def test_a_giving_up_child_supervisor_is_a_crash_for_its_parent(
    clock: FakeClock, recorder: Recorder
) -> None:
    """Nested intensities multiply: inner (1 restart) and outer (1 restart) absorb
    (1 + 1) x (1 + 1) = 4 crashes of a leaf; the 4th makes the top give up."""
    starts: list[float] = []

    async def leaf() -> None:
        starts.append(clock.monotonic())
        await clock.sleep(1.0)
        raise RuntimeError("leaf")

    inner = Supervisor(
        [ChildSpec("leaf", leaf)], max_restarts=1, within=100.0, name="inner", clock=clock
    )
    outer = Supervisor(
        [inner.child_spec()], max_restarts=1, within=100.0, name="outer", clock=clock
    )
    with pytest.raises(SupervisorGaveUpError) as info:
        await outer.run()
    assert info.value.supervisor == "outer" and info.value.child == "inner"
    assert isinstance(info.value.__cause__, SupervisorGaveUpError)
    assert len(starts) == 4
    reasons = [(e.policy, e.reason) for e in recorder.of(SupervisorStopped)]  # type: ignore[attr-defined]
    assert reasons == [("inner", "gave_up"), ("inner", "gave_up"), ("outer", "gave_up")]
    assert not leftover_tasks()


async def test_a_child_supervisor_that_fails_to_start_is_a_start_failure(clock: FakeClock) -> None:
    """A start failure deep in the tree fails the parent's start too."""

    async def broken() -> None:
        raise ConnectionError("down")

    inner = Supervisor([ChildSpec("broken", broken, handshake=True)], name="inner", clock=clock)
    outer = Supervisor([inner.child_spec()], clock=clock)
    with pytest.raises(ChildStartError) as info:
        await outer.start()
    assert info.value.child == "inner"
    assert isinstance(info.value.__cause__, ChildStartError)
    assert info.value.__cause__.child == "broken"


# -- significant children -----------------------------------------------------------------------


async def test_any_significant_stops_the_supervisor_when_one_ends(
    clock: FakeClock, recorder: Recorder
) -> None:
    """A significant transient child returning shuts the supervisor down normally."""
    j = Journal()
    sup = Supervisor(
        [j.killable("main", restart="transient", significant=True), j.killable("helper")],
        auto_shutdown="any_significant",
        clock=clock,
    )
    task = asyncio.ensure_future(sup.run())
    await settle()
    j.kill("main", None)
    await task  # returns normally
    assert j.of("stop") == ["helper"]
    assert recorder.of(SupervisorStopped)[-1].reason == "auto_shutdown"  # type: ignore[attr-defined]


async def test_a_crashing_significant_transient_child_is_restarted(clock: FakeClock) -> None:
    """Only a normal end of a transient significant child counts; a crash restarts it."""
    j = Journal()
    sup = Supervisor(
        [j.killable("main", restart="transient", significant=True)],
        auto_shutdown="any_significant",
        clock=clock,
    )
    async with sup:
        await settle()
        j.kill("main", RuntimeError("crash"))
        await settle()
        assert sup.running and j.of("start") == ["main", "main"]


async def test_a_temporary_significant_child_ends_it_even_when_crashing(clock: FakeClock) -> None:
    """A temporary significant child: any exit, normal or not, counts."""
    j = Journal()
    sup = Supervisor(
        [j.killable("job", restart="temporary", significant=True)],
        auto_shutdown="any_significant",
        clock=clock,
    )
    task = asyncio.ensure_future(sup.run())
    await settle()
    j.kill("job", RuntimeError("crash"))
    await task


async def test_all_significant_waits_for_the_last_one(clock: FakeClock) -> None:
    """all_significant: the supervisor stops when the last significant child has ended."""
    j = Journal()
    sup = Supervisor(
        [
            j.killable("a", restart="transient", significant=True),
            j.killable("b", restart="transient", significant=True),
            j.killable("c"),
        ],
        auto_shutdown="all_significant",
        clock=clock,
    )
    task = asyncio.ensure_future(sup.run())
    await settle()
    j.kill("a", None)
    await settle()
    assert not task.done()
    j.kill("b", None)
    await task
    assert j.of("stop") == ["c"]


async def test_terminating_a_significant_child_does_not_shut_down(clock: FakeClock) -> None:
    """Only a child ending by itself triggers auto_shutdown, not terminate_child."""
    j = Journal()
    sup = Supervisor(
        [j.killable("a", restart="transient", significant=True), j.killable("b")],
        auto_shutdown="any_significant",
        clock=clock,
    )
    async with sup:
        await settle()
        await sup.terminate_child("a")
        await settle()
        assert sup.running


# -- the dynamic supervisor ---------------------------------------------------------------------


async def test_dynamic_children_start_on_demand_and_stop_all_at_once(clock: FakeClock) -> None:
    """Ten children each needing 1 s to clean up stop in 1 s, not 10 s."""
    cleaned: list[float] = []

    async def conn() -> None:
        try:
            await clock.sleep(1e9)
        finally:
            await clock.sleep(1.0)
            cleaned.append(clock.monotonic())

    sup = DynamicSupervisor(clock=clock)
    async with sup:
        for n in range(10):
            await sup.start_child(ChildSpec(f"conn-{n}", conn, restart="temporary"))
        assert sup.count_children().active == 10
    assert cleaned == [1.0] * 10
    assert sup.which_children() == () and not leftover_tasks()


async def test_dynamic_children_are_restarted_one_for_one(clock: FakeClock) -> None:
    """A permanent dynamic child is restarted; a temporary one is forgotten when it ends."""
    j = Journal()
    sup = DynamicSupervisor(clock=clock)
    async with sup:
        await sup.start_child(j.killable("p"))
        await sup.start_child(j.killable("t", restart="temporary"))
        j.kill("p", RuntimeError("crash"))
        j.kill("t", RuntimeError("crash"))
        await settle()
        assert [c.id for c in sup.which_children()] == ["p"]
        assert j.of("start") == ["p", "t", "p"]
        await sup.terminate_child("p")
        assert sup.which_children() == ()


async def test_dynamic_max_children(clock: FakeClock) -> None:
    """start_child beyond max_children raises SupervisorError; room frees up."""
    j = Journal()
    sup = DynamicSupervisor(max_children=2, clock=clock)
    async with sup:
        await sup.start_child(j.killable("a"))
        await sup.start_child(j.killable("b"))
        with pytest.raises(SupervisorError, match="max_children=2"):
            await sup.start_child(j.killable("c"))
        await sup.terminate_child("a")
        await sup.start_child(j.killable("c"))


async def test_dynamic_gives_up_like_any_supervisor(clock: FakeClock) -> None:
    """The restart intensity applies to dynamic children too."""
    j = Journal()
    sup = DynamicSupervisor(max_restarts=1, within=10.0, clock=clock)
    await sup.start()
    await sup.start_child(j.crashing("w", clock, 1.0))
    with pytest.raises(SupervisorGaveUpError):
        await sup.wait()
    assert clock.monotonic() == 2.0


# -- child operations ---------------------------------------------------------------------------


async def test_start_child_adds_after_the_others(clock: FakeClock) -> None:
    """start_child appends: it stops first."""
    j = Journal()
    sup = Supervisor([j.killable("a")], clock=clock)
    async with sup:
        await sup.start_child(j.killable("b", handshake=True))
        assert [c.id for c in sup.which_children()] == ["a", "b"]
        with pytest.raises(bt.ConfigError, match=r"spec\.id must be unique .* got 'a'"):
            await sup.start_child(j.killable("a"))
        with pytest.raises(bt.ConfigError, match="spec must be a ChildSpec"):
            await sup.start_child("nope")  # type: ignore[arg-type]
    assert j.of("stop") == ["b", "a"]


async def test_start_child_failure_is_raised_to_the_caller(clock: FakeClock) -> None:
    """A child failing to start through start_child is not kept, not counted."""

    async def broken() -> None:
        raise ConnectionError("down")

    sup = Supervisor(clock=clock)
    async with sup:
        with pytest.raises(ChildStartError) as info:
            await sup.start_child(ChildSpec("b", broken, handshake=True))
        assert isinstance(info.value.__cause__, ConnectionError)
        assert sup.which_children() == () and sup.stats().restarts == 0


async def test_terminate_restart_delete(clock: FakeClock) -> None:
    """terminate_child keeps the spec stopped; restart_child starts it; delete_child
    forgets a stopped spec; misuse is a SupervisorError naming the child."""
    j = Journal()
    sup = Supervisor([j.killable("a"), j.killable("b")], clock=clock, name="s")
    with pytest.raises(SupervisorError, match="'s' is not running"):
        await sup.terminate_child("a")
    async with sup:
        await sup.terminate_child("a")
        assert [c.state for c in sup.which_children()] == ["stopped", "running"]
        assert sup.stats().restarts == 0
        with pytest.raises(SupervisorError, match="child 'b' is running"):
            await sup.restart_child("b")
        with pytest.raises(SupervisorError, match="child 'b' is running"):
            await sup.delete_child("b")
        with pytest.raises(SupervisorError, match="has no child 'zz'"):
            await sup.terminate_child("zz")
        await sup.restart_child("a")
        assert j.of("start") == ["a", "b", "a"]
        await sup.terminate_child("a")
        await sup.delete_child("a")
        assert [c.id for c in sup.which_children()] == ["b"]
    async with sup:  # a new run starts from the initial children
        assert [c.id for c in sup.which_children()] == ["a", "b"]


async def test_a_cancelled_caller_does_not_run_its_operation(clock: FakeClock) -> None:
    """An operation whose caller gave up before its turn is skipped."""
    j = Journal()
    sup = Supervisor(clock=clock)
    async with sup:
        call = asyncio.ensure_future(sup.start_child(j.killable("a")))
        await asyncio.sleep(0)
        call.cancel()
        await settle()
        assert sup.which_children() == ()


async def test_operations_pending_at_stop_fail_cleanly(clock: FakeClock) -> None:
    """An operation queued behind a stop gets a SupervisorError, never hangs."""
    j = Journal()
    holder: list[Supervisor] = []

    async def slow_start() -> None:
        await clock.sleep(1.0)
        bt.supervise.ready()
        await clock.sleep(1e9)

    sup = Supervisor(clock=clock)
    holder.append(sup)
    await sup.start()
    first = asyncio.ensure_future(sup.start_child(ChildSpec("s", slow_start, handshake=True)))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(sup.start_child(j.killable("late")))
    await asyncio.sleep(0)
    await sup.stop()
    with pytest.raises(SupervisorError):
        await first
    with pytest.raises(SupervisorError, match="stopped"):
        await second
    assert not leftover_tasks()
