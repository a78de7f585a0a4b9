"""AdaptiveThrottle: the SRE-book formula, the sliding window, recovery, counting rules."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress import events
from buttress.adaptive import AdaptiveThrottle
from buttress.testing import FakeClock

from .conftest import Recorder


def ok() -> str:
    return "ok"


def refuse() -> None:
    raise bt.OverloadedError("backend busy")


def call(throttle: AdaptiveThrottle, fn: Callable[[], Any]) -> str:
    """One sync call; 'ok', 'refused' (by the backend) or 'throttled' (locally)."""
    try:
        throttle.call_sync(fn)
    except bt.OverloadedError as exc:
        return "throttled" if exc.policy == throttle.name else "refused"
    return "ok"


def p(requests: int, accepts: int, k: float = 2.0) -> float:
    return max(0.0, (requests - k * accepts) / (requests + 1))


def test_no_rejection_while_the_backend_accepts(clock: FakeClock) -> None:
    """All accepted: requests - k * accepts < 0, so p = 0 and every call goes through."""
    throttle = AdaptiveThrottle(clock=clock, random=random.Random(1))
    assert [call(throttle, ok) for _ in range(100)] == ["ok"] * 100
    stats = throttle.stats()
    assert (stats.requests, stats.accepts, stats.probability) == (100, 100, 0.0)


def test_probability_follows_the_formula(clock: FakeClock) -> None:
    """p = max(0, (requests - k * accepts) / (requests + 1)) after any mix of outcomes."""
    throttle = AdaptiveThrottle(k=1.5, clock=clock, random=random.Random(3))
    requests = accepts = 0
    for outcome in [ok] * 10 + [refuse] * 30 + [ok] * 5 + [refuse] * 20:
        assert throttle.probability == pytest.approx(p(requests, accepts, 1.5))
        result = call(throttle, outcome)
        requests += 1
        accepts += result == "ok"
    stats = throttle.stats()
    assert (stats.requests, stats.accepts) == (requests, accepts)
    assert stats.probability == pytest.approx(p(requests, accepts, 1.5))


def test_rejections_replay_the_seeded_draws(clock: FakeClock) -> None:
    """With a seeded random, call n is rejected exactly when draw_n < p_n (a model replay)."""
    seed = 11
    throttle = AdaptiveThrottle(clock=clock, random=random.Random(seed))
    model = random.Random(seed)
    for requests in range(400):
        chance = p(requests, 0)
        expected = "throttled" if chance > 0 and model.random() < chance else "refused"
        assert call(throttle, refuse) == expected
    assert throttle.stats().rejections > 300  # p climbs toward 1 when nothing is accepted


def test_client_sends_about_k_times_what_the_backend_accepts(clock: FakeClock) -> None:
    """100 requests/s against a backend accepting 25/s: in steady state p = 1 - k * 25 / 100
    = 0.5, so half are rejected locally and the backend sees about k x 25 per second."""
    throttle = AdaptiveThrottle(window=10.0, buckets=10, clock=clock, random=random.Random(3))
    budget = {"second": -1, "left": 0}

    def backend() -> None:
        second = int(clock.monotonic())
        if budget["second"] != second:
            budget["second"], budget["left"] = second, 25
        if budget["left"] <= 0:
            raise bt.OverloadedError("busy")
        budget["left"] -= 1

    outcomes = []
    for _ in range(60 * 100):
        outcomes.append(call(throttle, backend))
        clock.advance(0.01)
    steady = outcomes[20 * 100 :]
    assert steady.count("ok") == 40 * 25  # the backend stays fully used
    assert steady.count("throttled") / len(steady) == pytest.approx(0.5, abs=0.05)


def test_locally_rejected_calls_count_as_requests(clock: FakeClock) -> None:
    """Local rejections are requests too (the book's definition), never accepts."""
    throttle = AdaptiveThrottle(clock=clock, random=random.Random(2))
    outcomes = [call(throttle, refuse) for _ in range(50)]
    stats = throttle.stats()
    assert stats.requests == 50
    assert stats.accepts == 0
    assert stats.rejections == outcomes.count("throttled") > 0


def test_the_backend_refusal_is_raised_unchanged(clock: FakeClock) -> None:
    """A refused call raises the backend's own exception; the throttle only counts it."""
    throttle = AdaptiveThrottle(clock=clock)
    error = bt.RateLimitedError("slow down", retry_after=3.0)

    def limited() -> None:
        raise error

    with pytest.raises(bt.RateLimitedError) as info:
        throttle.call_sync(limited)
    assert info.value is error
    assert throttle.stats().accepts == 0


def test_other_exceptions_count_as_accepted(clock: FakeClock) -> None:
    """An exception not in `on` means the backend took the request."""
    throttle = AdaptiveThrottle(clock=clock)

    def bad_request() -> None:
        raise ValueError("400")

    with pytest.raises(ValueError):
        throttle.call_sync(bad_request)
    assert (throttle.stats().requests, throttle.stats().accepts) == (1, 1)


def test_custom_on(clock: FakeClock) -> None:
    """`on` decides what a refusal is."""

    class Busy(Exception):
        pass

    def busy() -> None:
        raise Busy

    throttle = AdaptiveThrottle(on=Busy, min_requests=10, clock=clock)
    with pytest.raises(Busy):
        throttle.call_sync(busy)
    with pytest.raises(bt.OverloadedError):
        throttle.call_sync(refuse)  # not a refusal for this throttle: counted as accepted
    assert (throttle.stats().requests, throttle.stats().accepts) == (2, 1)


async def test_cancelled_calls_are_not_counted(clock: FakeClock) -> None:
    """A cancelled call got no answer: it leaves the counts."""
    throttle = AdaptiveThrottle(clock=clock)
    task = asyncio.create_task(throttle.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    assert throttle.stats().requests == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (throttle.stats().requests, throttle.stats().accepts) == (0, 0)


async def test_async_calls(clock: FakeClock) -> None:
    """The async runner counts like the sync one."""
    throttle = AdaptiveThrottle(min_requests=100, clock=clock)

    async def refused() -> None:
        await clock.sleep(0.01)
        raise bt.OverloadedError

    for _ in range(20):
        with pytest.raises(bt.OverloadedError):
            await throttle.call(refused)
    assert await throttle.call(clock.sleep, 0.01) is None
    stats = throttle.stats()
    assert (stats.requests, stats.accepts, stats.rejections) == (21, 1, 0)


def test_backend_recovery_lets_traffic_back_as_the_window_slides(clock: FakeClock) -> None:
    """After an outage the refusals age out bucket by bucket and the throttle opens up
    (slowly at one request a second: locally rejected requests count too)."""
    throttle = AdaptiveThrottle(window=60.0, buckets=6, clock=clock, random=random.Random(7))
    for _ in range(60):  # one minute of refusals, one request a second
        call(throttle, refuse)
        clock.advance(1.0)
    assert throttle.probability > 0.9
    let_through = []
    for _ in range(180):  # the backend is back: every request it sees is accepted
        let_through.append(call(throttle, ok) == "ok")
        clock.advance(1.0)
    assert sum(let_through[:30]) < sum(let_through[60:90]) < sum(let_through[-30:])
    assert all(let_through[-40:])
    assert throttle.probability == 0.0


def test_window_forgets_everything_after_a_quiet_window(clock: FakeClock) -> None:
    """A window with no traffic holds nothing, so nothing is rejected."""
    throttle = AdaptiveThrottle(window=12.0, buckets=12, clock=clock, random=random.Random(1))
    for _ in range(30):
        call(throttle, refuse)
    clock.advance(11.0)
    assert throttle.stats().requests == 30  # still in the last bucket of the window
    clock.advance(1.0)
    stats = throttle.stats()
    assert (stats.requests, stats.probability) == (0, 0.0)


def test_min_requests_delays_throttling(clock: FakeClock) -> None:
    """Below min_requests requests in the window nothing is rejected locally."""
    throttle = AdaptiveThrottle(min_requests=20, clock=clock, random=random.Random(1))
    assert [call(throttle, refuse) for _ in range(20)] == ["refused"] * 20
    assert throttle.probability == pytest.approx(20 / 21)


def test_a_higher_k_is_more_permissive(clock: FakeClock) -> None:
    """With more accepts needed per request to throttle, fewer calls are rejected."""

    def rejected(k: float) -> int:
        throttle = AdaptiveThrottle(k=k, clock=FakeClock(), random=random.Random(4))
        count = 0
        for i in range(1000):
            count += call(throttle, ok if i % 3 == 0 else refuse) == "throttled"
        return count

    assert rejected(1.0) > rejected(2.0) > rejected(3.0) >= 0


def test_events(clock: FakeClock, recorder: Recorder) -> None:
    """Each local rejection emits CallRejected(kind="adaptive_throttle")."""
    throttle = AdaptiveThrottle(clock=clock, random=random.Random(9), name="backend")
    outcomes = [call(throttle, refuse) for _ in range(30)]
    rejected = recorder.of(events.CallRejected)
    assert len(rejected) == outcomes.count("throttled") > 0
    assert rejected[0] == events.CallRejected("backend", "adaptive_throttle", None)


def test_rejection_message_and_stats(clock: FakeClock) -> None:
    """The local rejection names the throttle and the probability; stats are frozen."""
    throttle = AdaptiveThrottle(clock=clock, random=random.Random(0), name="api")
    for _ in range(200):
        call(throttle, refuse)
    with pytest.raises(bt.OverloadedError, match=r"adaptive throttle 'api' rejected the call"):
        for _ in range(100):
            throttle.call_sync(ok)
    stats = throttle.stats()
    assert stats.name == "api" and stats.k == 2.0
    with pytest.raises(AttributeError):
        stats.k = 3.0  # type: ignore[misc]
    assert repr(throttle) == "AdaptiveThrottle(k=2.0, window=120.0, name='api')"


def test_threads_share_the_counts() -> None:
    """Many threads: every call is counted once, as a request and (if served) an accept."""
    throttle = AdaptiveThrottle(random=random.Random(1))
    lock = threading.Lock()
    tally = {"ok": 0, "refused": 0, "throttled": 0}

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            result = call(throttle, ok if rng.random() < 0.3 else refuse)
            with lock:
                tally[result] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = throttle.stats()
    assert stats.requests == 1800 == sum(tally.values())
    assert stats.accepts == tally["ok"]
    assert stats.rejections == tally["throttled"] > 0


@settings(max_examples=60, deadline=None)
@given(
    k=st.floats(1.0, 4.0),
    plan=st.lists(st.tuples(st.booleans(), st.floats(0.0, 30.0)), max_size=80),
)
def test_counts_match_a_reference_window(k: float, plan: list[tuple[bool, float]]) -> None:
    """Against a plain list of (time, accepted) records: the same counts and probability,
    with a record forgotten exactly when its bucket leaves the window."""
    clock = FakeClock()
    throttle = AdaptiveThrottle(k=k, window=60.0, buckets=6, clock=clock, random=random.Random(0))
    records: list[tuple[int, bool]] = []  # (bucket slot, accepted)
    for served, gap in plan:
        clock.advance(gap)
        slot = int(clock.monotonic() // 10.0)
        result = call(throttle, ok if served else refuse)
        records.append((slot, result == "ok"))
        live = [accepted for s, accepted in records if slot - 6 < s <= slot]
        requests, accepts = len(live), sum(live)
        stats = throttle.stats()
        assert (stats.requests, stats.accepts) == (requests, accepts)
        assert stats.probability == pytest.approx(p(requests, accepts, k))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0.5}, r"k must be a number in \[1, inf\), got 0.5"),
        ({"k": "2"}, r"k must be a number in \[1, inf\), got '2'"),
        ({"window": 0}, "window must be a duration > 0 seconds, got 0"),
        ({"buckets": 0}, r"buckets must be an int in \[1, 1000\], got 0"),
        ({"on": "x"}, "on must be an exception class or a tuple of exception classes"),
        ({"min_requests": -1}, "min_requests must be an int >= 0, got -1"),
        ({"random": 3}, "random must be a random.Random or None, got 3"),
        ({"clock": object()}, "clock must be a Clock"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    """Bad options name themselves, their value and the allowed range."""
    with pytest.raises(bt.ConfigError, match=message):
        AdaptiveThrottle(**kwargs)
