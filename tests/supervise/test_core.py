"""The sans-I/O core: the intensity window and the strategies' plans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from buttress.supervise import RestartWindow, plan


def test_window_allows_max_restarts_then_refuses() -> None:
    """Three restarts fit in the window; a fourth within it is refused (and not kept)."""
    window = RestartWindow(3, 5.0)
    assert [window.record(t) for t in (0.0, 1.0, 2.0)] == [(True, 1), (True, 2), (True, 3)]
    assert window.record(3.0) == (False, 4)
    assert window.count(3.0) == 3


def test_window_forgets_restarts_exactly_within_seconds_later() -> None:
    """A restart counts in (now - within, now]: at t + within it has left."""
    window = RestartWindow(1, 5.0)
    assert window.record(0.0) == (True, 1)
    assert window.record(4.999) == (False, 2)
    assert window.record(5.0) == (True, 1)


def test_zero_intensity_never_restarts() -> None:
    """max_restarts=0: the first restart is refused."""
    assert RestartWindow(0, 5.0).record(0.0) == (False, 1)


@settings(max_examples=200, deadline=None)
@given(
    max_restarts=st.integers(0, 6),
    within=st.floats(0.5, 20.0),
    gaps=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=60),
)
def test_no_window_ever_holds_more_than_max_restarts(
    max_restarts: int, within: float, gaps: list[float]
) -> None:
    """Under any crash schedule, allowed restarts never exceed the limit in any window,
    and a refusal happens only when the limit is really reached."""
    window = RestartWindow(max_restarts, within)
    now, allowed = 0.0, []
    for gap in gaps:
        now += gap
        ok, count = window.record(now)
        recent = [t for t in allowed if now - t < within]
        if ok:
            allowed.append(now)
            assert count == len(recent) + 1 <= max_restarts
        else:
            assert len(recent) == max_restarts == count - 1
            break
    for start in allowed:
        assert sum(1 for t in allowed if start <= t < start + within) <= max_restarts


def test_plans() -> None:
    """Each strategy stops (last first) and starts (in order) the right children."""
    order = ["a", "b", "c", "d"]
    assert plan("one_for_one", order, "b") == ((), ("b",))
    assert plan("one_for_all", order, "b") == (("d", "c", "a"), ("a", "b", "c", "d"))
    assert plan("rest_for_one", order, "b") == (("d", "c"), ("b", "c", "d"))
    assert plan("rest_for_one", order, "d") == ((), ("d",))


def test_plans_never_start_temporary_children_again() -> None:
    """Temporary siblings are stopped with the others and not started again."""
    order = ["a", "t", "c"]
    assert plan("one_for_all", order, "c", {"t"}) == (("t", "a"), ("a", "c"))
    assert plan("rest_for_one", order, "a", {"t"}) == (("c", "t"), ("a", "c"))


@given(
    size=st.integers(1, 8),
    data=st.data(),
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
)
def test_plan_invariants(size: int, data: st.DataObject, strategy: str) -> None:
    """Stops are in reverse start order, starts in start order, the failed child always
    restarts, and nothing before it is touched by rest_for_one."""
    order = [f"c{i}" for i in range(size)]
    failed = data.draw(st.sampled_from(order))
    temporary = set(data.draw(st.lists(st.sampled_from(order)))) - {failed}
    stop, start = plan(strategy, order, failed, temporary)  # type: ignore[arg-type]
    assert failed in start and failed not in stop
    assert list(stop) == sorted(stop, key=order.index, reverse=True)
    assert list(start) == sorted(start, key=order.index)
    assert not temporary & (set(start) - {failed})
    index = order.index(failed)
    if strategy == "rest_for_one":
        assert set(stop) | set(start) == set(order[index:]) - (temporary - set(stop))
    if strategy == "one_for_all":
        assert set(stop) == set(order) - {failed}
