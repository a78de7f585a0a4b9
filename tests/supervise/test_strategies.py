"""Restart types and strategies: who restarts, in which order, and what counts as normal."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buttress.supervise import (
    ChildExited,
    ChildRestarted,
    ChildSpec,
    Shutdown,
    Supervisor,
)
from buttress.testing import FakeClock

from ..conftest import Recorder
from .helpers import Journal, leftover_tasks, settle


async def test_one_for_one_restarts_only_the_failed_child(clock: FakeClock) -> None:
    """b crashes: b starts again; a and c are untouched."""
    j = Journal()
    sup = Supervisor([j.killable("a"), j.killable("b"), j.killable("c")], clock=clock)
    async with sup:
        await settle()
        j.clear()
        j.kill("b", RuntimeError("boom"))
        await settle()
        assert j.lines == [("b", "exit"), ("b", "start")]
    assert j.of("stop") == ["c", "b", "a"]


async def test_one_for_all_stops_the_others_in_reverse_then_starts_all(clock: FakeClock) -> None:
    """b crashes: c then a are stopped, then a, b, c start in order."""
    j = Journal()
    sup = Supervisor(
        [j.killable("a"), j.killable("b"), j.killable("c")], strategy="one_for_all", clock=clock
    )
    async with sup:
        await settle()
        j.clear()
        j.kill("b", RuntimeError("boom"))
        await settle()
        assert j.lines == [
            ("b", "exit"),
            ("c", "stop"),
            ("a", "stop"),
            ("a", "start"),
            ("b", "start"),
            ("c", "start"),
        ]


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it(clock: FakeClock) -> None:
    """b crashes: c is stopped, then b and c start; a is untouched."""
    j = Journal()
    sup = Supervisor(
        [j.killable("a"), j.killable("b"), j.killable("c")], strategy="rest_for_one", clock=clock
    )
    async with sup:
        await settle()
        j.clear()
        j.kill("b", RuntimeError("boom"))
        await settle()
        assert j.lines == [("b", "exit"), ("c", "stop"), ("b", "start"), ("c", "start")]


@pytest.mark.parametrize(
    ("restart", "outcome", "restarted"),
    [
        ("permanent", "return", True),
        ("permanent", "shutdown", True),
        ("permanent", "error", True),
        ("transient", "return", False),
        ("transient", "shutdown", False),
        ("transient", "error", True),
        ("transient", "cancel", True),
        ("temporary", "error", False),
        ("temporary", "return", False),
    ],
)
async def test_restart_types(clock: FakeClock, restart: str, outcome: str, restarted: bool) -> None:
    """OTP's table: permanent always, transient after an abnormal exit, temporary never.
    Returning and raising Shutdown are normal; an outside cancellation is not."""
    j = Journal()
    sup = Supervisor([j.killable("w", restart=restart)], clock=clock)
    async with sup:
        await settle()
        j.clear()
        if outcome == "cancel":
            task = sup.which_children()[0].task
            assert task is not None
            task.cancel()
        else:
            exc = {"return": None, "shutdown": Shutdown("bye"), "error": ValueError("x")}[outcome]
            j.kill("w", exc)
        await settle()
        assert (("w", "start") in j.lines) is restarted
        ids = [c.id for c in sup.which_children()]
        assert ids == ([] if restart == "temporary" else ["w"])


async def test_exit_reasons_are_reported(clock: FakeClock, recorder: Recorder) -> None:
    """ChildExited says return / shutdown / exception / cancelled, with the exception."""
    j = Journal()
    error = ValueError("x")
    sup = Supervisor([j.killable("w")], clock=clock, max_restarts=10)
    async with sup:
        await settle()
        j.kill("w", None)
        await settle()
        j.kill("w", Shutdown("bye"))
        await settle()
        j.kill("w", error)
        await settle()
        task = sup.which_children()[0].task
        assert task is not None
        task.cancel()
        await settle()
    exits = [e for e in recorder.of(ChildExited) if e.policy == sup.name]
    assert [(e.reason, e.normal) for e in exits] == [  # type: ignore[attr-defined]
        ("return", True),
        ("shutdown", True),
        ("exception", False),
        ("cancelled", False),
        ("terminated", False),
    ]
    assert exits[2].exception is error  # type: ignore[attr-defined]


async def test_temporary_children_are_not_restarted_by_a_sibling(clock: FakeClock) -> None:
    """one_for_all stops a temporary sibling and forgets it."""
    j = Journal()
    sup = Supervisor(
        [j.killable("a"), j.killable("t", restart="temporary"), j.killable("c")],
        strategy="one_for_all",
        clock=clock,
    )
    async with sup:
        await settle()
        j.clear()
        j.kill("c", RuntimeError("boom"))
        await settle()
        assert j.lines == [
            ("c", "exit"),
            ("t", "stop"),
            ("a", "stop"),
            ("a", "start"),
            ("c", "start"),
        ]
        assert [c.id for c in sup.which_children()] == ["a", "c"]


async def test_a_transient_child_that_ended_normally_restarts_with_one_for_all(
    clock: FakeClock,
) -> None:
    """As in OTP, a one_for_all restart starts every non-temporary spec, stopped ones too."""
    j = Journal()
    sup = Supervisor(
        [j.killable("t", restart="transient"), j.killable("b")], strategy="one_for_all", clock=clock
    )
    async with sup:
        await settle()
        j.kill("t", None)
        await settle()
        assert sup.which_children()[0].state == "stopped"
        j.clear()
        j.kill("b", RuntimeError("boom"))
        await settle()
        assert j.of("start") == ["t", "b"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(1, 5),
    data=st.data(),
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
)
def test_every_strategy_restarts_exactly_the_right_children_in_order(
    size: int, data: st.DataObject, strategy: str
) -> None:
    """For any set of children and any failing one: the stops are the planned ones in
    reverse start order, then the starts in start order, and nothing else happens."""
    names = [f"c{i}" for i in range(size)]
    failed = data.draw(st.sampled_from(names))
    index = names.index(failed)
    if strategy == "one_for_one":
        stops, starts = [], [failed]
    elif strategy == "one_for_all":
        stops = [n for n in reversed(names) if n != failed]
        starts = names
    else:
        stops = list(reversed(names[index + 1 :]))
        starts = names[index:]

    async def scenario() -> None:
        clock = FakeClock()
        j = Journal()
        sup = Supervisor([j.killable(n) for n in names], strategy=strategy, clock=clock)  # type: ignore[arg-type]
        async with sup:
            await settle()
            j.clear()
            j.kill(failed, RuntimeError("boom"))
            await settle()
            expected = [(failed, "exit")] + [(n, "stop") for n in stops]
            expected += [(n, "start") for n in starts]
            assert j.lines == expected
        assert not leftover_tasks()

    asyncio.run(scenario())


async def test_restarted_event_names_the_group(clock: FakeClock, recorder: Recorder) -> None:
    """ChildRestarted carries the failed child, the children restarting and the count."""
    j = Journal()
    sup = Supervisor([j.killable("a"), j.killable("b")], strategy="rest_for_one", clock=clock)
    async with sup:
        await settle()
        j.kill("a", RuntimeError("boom"))
        await settle()
    (event,) = recorder.of(ChildRestarted)
    assert (event.child, event.restarting, event.delay, event.restarts) == (  # type: ignore[attr-defined]
        "a",
        ("a", "b"),
        0.0,
        1,
    )
    assert [c.restarts for c in sup.which_children()] == [1, 1]


async def test_a_spec_may_use_partial_arguments(clock: FakeClock) -> None:
    """A factory is any callable returning an awaitable (functools.partial included)."""
    import functools

    seen: list[int] = []

    async def worker(n: int) -> None:
        seen.append(n)

    sup = Supervisor(
        [ChildSpec("w", functools.partial(worker, 7), restart="transient")], clock=clock
    )
    async with sup:
        await settle()
    assert seen == [7]
