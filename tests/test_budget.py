"""RetryBudget: retries <= ratio * requests + min_per_second * ttl over any ttl window."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress.testing import FakeClock


def test_reserve_allows_a_quiet_client_to_retry(clock: FakeClock) -> None:
    """With no requests, min_per_second * ttl retries are available."""
    budget = bt.RetryBudget(ratio=0.2, min_per_second=1, ttl=10, clock=clock)
    assert sum(budget.try_withdraw() for _ in range(20)) == 10


def test_requests_earn_retries(clock: FakeClock) -> None:
    """Each request deposits `ratio` retries."""
    budget = bt.RetryBudget(ratio=0.5, min_per_second=0, ttl=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(20)) == 5


def test_tokens_expire_after_ttl(clock: FakeClock) -> None:
    """Deposits older than ttl no longer count."""
    budget = bt.RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    clock.advance(10.0)
    assert not budget.try_withdraw()


def test_withdrawals_expire_too(clock: FakeClock) -> None:
    """The reserve refills once old withdrawals leave the window."""
    budget = bt.RetryBudget(ratio=0.0, min_per_second=0.5, ttl=4, clock=clock)
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]
    clock.advance(4.5)
    assert budget.try_withdraw()


def test_zero_ratio_and_floor_means_no_retries(clock: FakeClock) -> None:
    """ratio=0 and min_per_second=0 allow nothing: zero means zero."""
    budget = bt.RetryBudget(ratio=0, min_per_second=0, clock=clock)
    for _ in range(100):
        budget.deposit()
    assert not budget.try_withdraw()
    assert budget.stats().rejections == 1


def test_stats(clock: FakeClock) -> None:
    """stats() reports counters and the balance in retries."""
    budget = bt.RetryBudget(ratio=0.5, min_per_second=0.1, ttl=10, clock=clock, name="b")
    for _ in range(4):
        budget.deposit()
    budget.try_withdraw()
    stats = budget.stats()
    assert (stats.name, stats.deposits, stats.withdrawals, stats.rejections) == ("b", 4, 1, 0)
    assert stats.balance == pytest.approx(2.0)


@settings(max_examples=400, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 2.5]),
    floor=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    ttl=st.sampled_from([1.0, 2.5, 10.0]),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("request"), st.integers(min_value=1, max_value=40)),
            st.tuples(st.just("retry"), st.integers(min_value=1, max_value=40)),
            # time steps in 64ths of ttl (exact binary fractions), crossing slot edges
            st.tuples(st.just("advance"), st.integers(min_value=0, max_value=96)),
        ),
        max_size=60,
    ),
)
def test_no_retry_storm_over_any_window(
    ratio: float, floor: float, ttl: float, ops: list[tuple[str, float]]
) -> None:
    """Over every window of length ttl: retries <= ratio * requests + floor * ttl."""
    clock = FakeClock()
    budget = bt.RetryBudget(ratio=ratio, min_per_second=floor, ttl=ttl, clock=clock)
    requests: list[float] = []
    retries: list[float] = []
    for op, value in ops:
        if op == "request":
            for _ in range(int(value)):
                budget.deposit()
                requests.append(clock.monotonic())
        elif op == "retry":
            for _ in range(int(value)):
                if budget.try_withdraw():
                    retries.append(clock.monotonic())
        else:
            clock.advance(value * ttl / 64)
    # The worst window of length ttl ends at a retry; check every such window.
    for end in retries:
        start = end - ttl
        n_retries = sum(1 for t in retries if start < t <= end)
        n_requests = sum(1 for t in requests if start < t <= end)
        assert n_retries <= ratio * n_requests + floor * ttl + 1e-9


def test_shared_by_threads_never_overdrawn() -> None:
    """Many threads withdrawing at once never exceed the budget."""
    clock = FakeClock()
    budget = bt.RetryBudget(ratio=0.0, min_per_second=10, ttl=10, clock=clock)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [budget.try_withdraw() for _ in range(200)]
        with lock:
            granted.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": -0.1}, r"ratio must be a number in \[0, 1000\], got -0.1"),
        ({"ratio": 2000}, r"ratio must be a number in \[0, 1000\]"),
        ({"min_per_second": -1}, r"min_per_second must be a number in \[0, inf\)"),
        ({"ttl": 0}, "ttl must be a duration > 0 seconds, got 0"),
        ({"ratio": "lots"}, "ratio must be a number"),
    ],
)
def test_bad_options(kwargs: dict[str, object], message: str) -> None:
    """Bad options name themselves and the allowed range."""
    with pytest.raises(bt.ConfigError, match=message):
        bt.RetryBudget(**kwargs)  # type: ignore[arg-type]
