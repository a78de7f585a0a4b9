"""CircuitBreaker: modes, windows, half-open probes, filters, events, and a reference model."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder

CLOSED, OPEN, HALF_OPEN = bt.BreakerState.CLOSED, bt.BreakerState.OPEN, bt.BreakerState.HALF_OPEN


def ok() -> str:
    return "ok"


def boom() -> None:
    raise ConnectionError("down")


def fail_times(breaker: bt.CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ConnectionError):
            breaker.call_sync(boom)


# -- consecutive mode --------------------------------------------------------------------------


def test_consecutive_failures_open(clock: FakeClock) -> None:
    """N failures in a row open the breaker; the next call is rejected without running."""
    breaker = bt.CircuitBreaker(consecutive_failures=3, open_for=10, clock=clock)
    fail_times(breaker, 2)
    assert breaker.state is CLOSED
    fail_times(breaker, 1)
    assert breaker.state is OPEN
    ran = False

    def spy() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(bt.CircuitOpenError) as info:
        breaker.call_sync(spy)
    assert not ran
    assert info.value.retry_after == 10.0
    assert info.value.policy == breaker.name


def test_success_resets_the_run(clock: FakeClock) -> None:
    """A success between failures starts the count again."""
    breaker = bt.CircuitBreaker(consecutive_failures=3, clock=clock)
    fail_times(breaker, 2)
    breaker.call_sync(ok)
    fail_times(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.stats().consecutive_failures == 2


def test_rejection_error_reads_well(clock: FakeClock) -> None:
    """The (lazily formatted) rejection prints, reprs and pickles like any error."""
    import pickle

    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=10, clock=clock, name="db")
    fail_times(breaker, 1)
    with pytest.raises(bt.CircuitOpenError) as info:
        breaker.call_sync(ok)
    message = "circuit breaker 'db' is open; retry after 10.000 s"
    assert str(info.value) == message
    assert repr(info.value) == f"CircuitOpenError({message!r})"
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.retry_after, copy.policy) == (message, 10.0, "db")
    breaker.isolate()
    with pytest.raises(bt.CircuitOpenError, match="circuit breaker 'db' is isolated"):
        breaker.call_sync(ok)


def test_retry_after_counts_down(clock: FakeClock) -> None:
    """retry_after is the time left until a probe is allowed."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=10, clock=clock)
    fail_times(breaker, 1)
    clock.advance(4)
    with pytest.raises(bt.CircuitOpenError) as info:
        breaker.call_sync(ok)
    assert info.value.retry_after == pytest.approx(6.0)


def test_half_open_probe_success_closes(clock: FakeClock) -> None:
    """After open_for a probe runs; its success closes the breaker."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=5, clock=clock)
    fail_times(breaker, 1)
    clock.advance(5)
    assert breaker.state is HALF_OPEN
    assert breaker.call_sync(ok) == "ok"
    assert breaker.state is CLOSED


def test_half_open_probe_failure_reopens(clock: FakeClock) -> None:
    """A failed probe opens the breaker again for another open_for."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=5, clock=clock)
    fail_times(breaker, 1)
    clock.advance(5)
    fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert breaker.stats().retry_after == 5.0


def test_several_probes_must_all_succeed(clock: FakeClock) -> None:
    """With half_open_calls=3, three probe successes close it."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=1, half_open_calls=3, clock=clock)
    fail_times(breaker, 1)
    clock.advance(1)
    breaker.call_sync(ok)
    breaker.call_sync(ok)
    assert breaker.state is HALF_OPEN
    breaker.call_sync(ok)
    assert breaker.state is CLOSED


def test_growing_open_for(clock: FakeClock) -> None:
    """A Backoff open_for grows with repeated openings and restarts after a close."""
    breaker = bt.CircuitBreaker(
        consecutive_failures=1,
        open_for=bt.Backoff.exponential(base=1, cap=8, jitter="none"),
        clock=clock,
    )
    waits = []
    for _ in range(5):
        fail_times(breaker, 1)
        waits.append(breaker.stats().retry_after)
        clock.advance(breaker.stats().retry_after or 0)
    assert waits == [1, 2, 4, 8, 8]
    breaker.call_sync(ok)  # probe succeeds: closed
    fail_times(breaker, 1)
    assert breaker.stats().retry_after == 1


# -- rate mode ---------------------------------------------------------------------------------


def test_rate_needs_min_calls(clock: FakeClock) -> None:
    """Below min_calls the rate is not judged, however bad."""
    breaker = bt.CircuitBreaker(
        failure_rate=0.5, window=bt.CountWindow(10), min_calls=5, clock=clock
    )
    fail_times(breaker, 4)
    assert breaker.state is CLOSED
    fail_times(breaker, 1)
    assert breaker.state is OPEN


def test_rate_threshold_is_inclusive_and_exact(clock: FakeClock) -> None:
    """3 failures in 10 calls reaches failure_rate=0.3 exactly (no float slip)."""
    breaker = bt.CircuitBreaker(
        failure_rate=0.3, window=bt.CountWindow(10), min_calls=10, clock=clock
    )
    for _ in range(7):
        breaker.call_sync(ok)
    fail_times(breaker, 2)
    assert breaker.state is CLOSED
    fail_times(breaker, 1)
    assert breaker.state is OPEN


def test_count_window_slides(clock: FakeClock) -> None:
    """Failures older than the last `size` calls no longer count."""
    breaker = bt.CircuitBreaker(
        failure_rate=0.5, window=bt.CountWindow(4), min_calls=4, clock=clock
    )
    fail_times(breaker, 1)
    for _ in range(4):
        breaker.call_sync(ok)
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures) == (4, 0)


def test_time_window_forgets_old_calls(clock: FakeClock) -> None:
    """Calls older than the time window drop out."""
    breaker = bt.CircuitBreaker(
        failure_rate=0.5, window=bt.TimeWindow(10, buckets=10), min_calls=4, clock=clock
    )
    fail_times(breaker, 3)
    clock.advance(11)
    breaker.call_sync(ok)
    fail_times(breaker, 1)
    stats = breaker.stats()
    assert (stats.window_calls, stats.window_failures) == (2, 1)
    assert breaker.state is CLOSED


def test_time_window_successes_land_in_their_bucket(clock: FakeClock) -> None:
    """Lock-free successes are attributed to the bucket they happened in."""
    breaker = bt.CircuitBreaker(
        failure_rate=0.5, window=bt.TimeWindow(10, buckets=10), min_calls=1, clock=clock
    )
    for _ in range(5):
        breaker.call_sync(ok)
    clock.advance(9.5)  # still inside the window
    assert breaker.stats().window_calls == 5
    clock.advance(1)  # the first bucket has expired
    assert breaker.stats().window_calls == 0


def test_slow_call_rate_opens(clock: FakeClock) -> None:
    """Enough slow successes open the breaker."""
    breaker = bt.CircuitBreaker(
        failure_rate=1.0,
        window=bt.CountWindow(4),
        min_calls=4,
        slow_call=1.0,
        slow_call_rate=0.5,
        clock=clock,
    )

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    breaker.call_sync(ok)
    breaker.call_sync(ok)
    breaker.call_sync(slow)
    assert breaker.state is CLOSED
    breaker.call_sync(slow)
    assert breaker.state is OPEN
    assert breaker.stats().slow_calls == 2


def test_slow_probe_reopens(clock: FakeClock) -> None:
    """A probe that succeeds but is slow counts as a failed probe."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=1, slow_call=1.0, clock=clock)
    fail_times(breaker, 1)
    clock.advance(1)

    def slow() -> str:
        clock.advance(2)
        return "late"

    breaker.call_sync(slow)
    assert breaker.state is OPEN


# -- what counts -------------------------------------------------------------------------------


def test_ignored_exceptions_count_as_nothing(clock: FakeClock) -> None:
    """ignore_on exceptions pass through without counting."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, ignore_on=KeyError, clock=clock)
    with pytest.raises(KeyError):
        breaker.call_sync({}.__getitem__, "x")
    assert breaker.state is CLOSED
    assert breaker.stats().calls == 0


def test_local_rejections_and_spent_deadlines_count_as_nothing(clock: FakeClock) -> None:
    """By default a full bulkhead inside or the caller's deadline does not trip the breaker."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, clock=clock)
    for exc in (bt.BulkheadFullError("full"), bt.DeadlineExceededError("late")):

        def fail(exc: BaseException = exc) -> None:
            raise exc

        with pytest.raises(type(exc)):
            breaker.call_sync(fail)
    assert breaker.state is CLOSED
    counting = bt.CircuitBreaker(consecutive_failures=1, ignore_on=(), clock=clock)
    with pytest.raises(bt.BulkheadFullError):
        counting.call_sync(lambda: (_ for _ in ()).throw(bt.BulkheadFullError("full")))
    assert counting.state is OPEN


def test_per_attempt_timeouts_count(clock: FakeClock) -> None:
    """A per-attempt bt.TimeoutError is a failure of the dependency."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, clock=clock)
    with pytest.raises(bt.TimeoutError):
        breaker.call_sync(lambda: (_ for _ in ()).throw(bt.TimeoutError("slow")))
    assert breaker.state is OPEN


def test_unrecorded_exceptions_count_as_success(clock: FakeClock) -> None:
    """Exceptions outside record_on are successes for the breaker (e.g. 4xx)."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, record_on=ConnectionError, clock=clock)
    with pytest.raises(ValueError):
        breaker.call_sync(int, "not a number")
    assert breaker.state is CLOSED
    assert breaker.stats().successes == 1


def test_record_result_counts_failures(clock: FakeClock) -> None:
    """record_result marks bad results as failures but still returns them."""
    breaker = bt.CircuitBreaker(
        consecutive_failures=2, record_result=lambda status: status >= 500, clock=clock
    )
    assert breaker.call_sync(lambda: 503) == 503
    assert breaker.call_sync(lambda: 502) == 502
    assert breaker.state is OPEN


async def test_cancellation_is_not_a_failure(clock: FakeClock) -> None:
    """A cancelled call counts as nothing."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, clock=clock)
    task = asyncio.create_task(breaker.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CLOSED
    assert breaker.stats().calls == 0


async def test_cancelled_probe_releases_its_permit(clock: FakeClock) -> None:
    """A probe cancelled mid-flight hands its permit back; another probe may run."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=1, half_open_calls=1, clock=clock)
    fail_times(breaker, 1)
    clock.advance(1)
    probe = asyncio.create_task(breaker.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    with pytest.raises(bt.CircuitOpenError):  # the only permit is taken
        await breaker.call(asyncio.sleep, 0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await breaker.call(asyncio.sleep, 0, "again") == "again"
    assert breaker.state is CLOSED


def test_stale_probe_outcome_is_ignored(clock: FakeClock) -> None:
    """A probe finishing after the breaker moved on does not disturb the new state."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=1, half_open_calls=2, clock=clock)
    fail_times(breaker, 1)
    clock.advance(1)
    first = breaker._acquire()
    second = breaker._acquire()
    breaker._record(second, True, 0.0)  # second probe fails: reopen
    assert breaker.state is OPEN
    breaker._record(first, False, 0.0)  # first probe's late success is stale
    assert breaker.state is OPEN


# -- manual control, events, stats -------------------------------------------------------------


def test_isolate_and_reset(clock: FakeClock, recorder: Recorder) -> None:
    """isolate() rejects everything until reset()."""
    breaker = bt.CircuitBreaker(clock=clock, name="pay")
    breaker.isolate()
    assert breaker.state is bt.BreakerState.ISOLATED
    clock.advance(10_000)
    with pytest.raises(bt.CircuitOpenError) as info:
        breaker.call_sync(ok)
    assert info.value.retry_after is None
    breaker.reset()
    assert breaker.call_sync(ok) == "ok"
    changes = [(e.old, e.new) for e in recorder.of(events.BreakerStateChanged)]  # type: ignore[attr-defined]
    assert changes == [(CLOSED, bt.BreakerState.ISOLATED), (bt.BreakerState.ISOLATED, CLOSED)]


def test_state_change_and_rejection_events(clock: FakeClock, recorder: Recorder) -> None:
    """Transitions emit BreakerStateChanged with a reason; rejections emit CallRejected."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=1, clock=clock, name="db")
    fail_times(breaker, 1)
    with pytest.raises(bt.CircuitOpenError):
        breaker.call_sync(ok)
    clock.advance(1)
    breaker.call_sync(ok)
    assert recorder.of(events.BreakerStateChanged) == [
        events.BreakerStateChanged("db", CLOSED, OPEN, "consecutive failures"),
        events.BreakerStateChanged("db", OPEN, HALF_OPEN, "open_for elapsed"),
        events.BreakerStateChanged("db", HALF_OPEN, CLOSED, "probes succeeded"),
    ]
    assert recorder.of(events.CallRejected) == [events.CallRejected("db", "breaker", 1.0)]


def test_stats_count_everything(clock: FakeClock) -> None:
    """stats() counts calls, successes, failures, rejections and openings exactly."""
    breaker = bt.CircuitBreaker(consecutive_failures=2, open_for=1, clock=clock)
    for _ in range(5):
        breaker.call_sync(ok)
    fail_times(breaker, 2)
    for _ in range(3):
        with pytest.raises(bt.CircuitOpenError):
            breaker.call_sync(ok)
    s = breaker.stats()
    assert (s.calls, s.successes, s.failures, s.rejections, s.opened) == (7, 5, 2, 3, 1)


def test_listener_errors_do_not_break_calls(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is logged; the call's outcome is unchanged."""

    def bad_listener(event: events.Event) -> None:
        raise RuntimeError("listener bug")

    breaker = bt.CircuitBreaker(consecutive_failures=1, clock=clock, listeners=[bad_listener])
    fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert "listener bug" in caplog.text


async def test_async_and_sync_share_state(clock: FakeClock) -> None:
    """One breaker serves async and sync callers with one state."""
    breaker = bt.CircuitBreaker(consecutive_failures=2, clock=clock)
    fail_times(breaker, 1)

    async def aboom() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await breaker.call(aboom)
    assert breaker.state is OPEN


# -- concurrency: half-open permits ------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    half_open_calls=st.integers(min_value=1, max_value=4),
    callers=st.integers(min_value=1, max_value=25),
    outcomes=st.lists(st.sampled_from(["ok", "fail", "cancel"]), min_size=25, max_size=25),
)
def test_never_more_probes_than_permits_tasks(
    half_open_calls: int, callers: int, outcomes: list[str]
) -> None:
    """However many tasks arrive in half-open, at most half_open_calls probes run at once."""

    async def scenario() -> None:
        clock = FakeClock()
        breaker = bt.CircuitBreaker(
            consecutive_failures=1, open_for=1, half_open_calls=half_open_calls, clock=clock
        )
        fail_times(breaker, 1)
        clock.advance(1)
        running = 0
        peak = 0
        gate = asyncio.Event()

        async def probe(outcome: str) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await gate.wait()
                if outcome == "fail":
                    raise ConnectionError
            finally:
                running -= 1

        tasks = [asyncio.create_task(breaker.call(probe, outcomes[i])) for i in range(callers)]
        await asyncio.sleep(0)
        for i, task in enumerate(tasks):
            if outcomes[i] == "cancel":
                task.cancel()
        gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= half_open_calls
        assert breaker._probes == 0 or breaker.state is not HALF_OPEN

    asyncio.run(scenario())


def test_never_more_probes_than_permits_threads() -> None:
    """Threads hammering a half-open breaker never run more probes than permitted."""
    clock = FakeClock()
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=1, half_open_calls=3, clock=clock)
    fail_times(breaker, 1)
    clock.advance(1)
    lock = threading.Lock()
    running = 0
    peak = 0
    start = threading.Barrier(16)
    release = threading.Event()

    def probe() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1

    def caller() -> None:
        start.wait()
        try:
            breaker.call_sync(probe)
        except bt.CircuitOpenError:
            pass

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    while breaker._probes < 3 and any(t.is_alive() for t in threads):
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert peak == 3
    assert breaker.state is CLOSED


# -- the reference model -----------------------------------------------------------------------


@dataclass
class Model:
    """The breaker's rules written as plainly as possible, for sequential calls."""

    consecutive: int | None
    rate: float | None
    window: Any
    min_calls: int
    open_for: float
    half_open_calls: int
    slow_call: float | None
    slow_rate: float
    state: str = "closed"
    run: int = 0
    outcomes: list[tuple[float, bool, bool]] = field(default_factory=list)
    open_until: float = 0.0
    probes_ok: int = 0

    def call(self, start: float, duration: float, failed: bool) -> str:
        if self.state == "open" and start >= self.open_until:
            self.state, self.probes_ok = "half_open", 0
        if self.state == "open":
            return "rejected"
        end = start + duration
        slow = self.slow_call is not None and duration >= self.slow_call
        if self.state == "half_open":
            if failed or slow:
                self._open(end)
            else:
                self.probes_ok += 1
                if self.probes_ok >= self.half_open_calls:
                    self.state, self.outcomes, self.run = "closed", [], 0
            return "ran"
        if self.consecutive is not None:
            self.run = self.run + 1 if failed or slow else 0
            if self.run >= self.consecutive:
                self._open(end)
            return "ran"
        self.outcomes.append((end, failed, slow))
        if isinstance(self.window, bt.CountWindow):
            recent = self.outcomes[-self.window.size :]
        else:
            width = self.window.seconds / self.window.buckets
            now_slot = int(end // width)
            recent = [
                o for o in self.outcomes if int(o[0] // width) > now_slot - self.window.buckets
            ]
        calls = len(recent)
        fails = sum(1 for o in recent if o[1])
        slows = sum(1 for o in recent if o[2])
        if calls >= self.min_calls:
            assert self.rate is not None
            if fails / calls >= self.rate or (
                self.slow_call is not None and slows / calls >= self.slow_rate
            ):
                self._open(end)
        return "ran"

    def _open(self, now: float) -> None:
        self.state, self.open_until, self.run = "open", now + self.open_for, 0


@st.composite
def breaker_configs(draw: st.DrawFn) -> dict[str, Any]:
    config: dict[str, Any] = {
        "open_for": draw(st.sampled_from([0.5, 1.0, 3.0])),
        "half_open_calls": draw(st.integers(min_value=1, max_value=3)),
    }
    if draw(st.booleans()):
        config["slow_call"] = draw(st.sampled_from([0.5, 1.0]))
        config["slow_call_rate"] = draw(st.sampled_from([0.5, 1.0]))
    mode = draw(st.sampled_from(["consecutive", "count", "time"]))
    if mode == "consecutive":
        config["consecutive_failures"] = draw(st.integers(min_value=1, max_value=4))
    else:
        config["failure_rate"] = draw(st.sampled_from([0.2, 0.5, 1.0]))
        if mode == "count":
            size = draw(st.integers(min_value=1, max_value=8))
            config["window"] = bt.CountWindow(size)
            config["min_calls"] = draw(st.integers(min_value=1, max_value=size))
        else:
            config["window"] = bt.TimeWindow(
                draw(st.sampled_from([1.0, 4.0])), buckets=draw(st.sampled_from([1, 4]))
            )
            config["min_calls"] = draw(st.integers(min_value=1, max_value=5))
    return config


@settings(max_examples=400, deadline=None)
@given(
    config=breaker_configs(),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["ok", "fail", "advance"]),
            st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 3.0]),
        ),
        max_size=80,
    ),
)
def test_matches_reference_model(config: dict[str, Any], ops: list[tuple[str, float]]) -> None:
    """Sequential calls: the breaker admits, rejects and changes state as the model does."""
    clock = FakeClock()
    breaker = bt.CircuitBreaker(clock=clock, **config)
    model = Model(
        consecutive=config.get("consecutive_failures"),
        rate=config.get("failure_rate"),
        window=config.get("window"),
        min_calls=config.get("min_calls", 0),
        open_for=config["open_for"],
        half_open_calls=config["half_open_calls"],
        slow_call=config.get("slow_call"),
        slow_rate=config.get("slow_call_rate", 0.5),
    )
    for op, value in ops:
        if op == "advance":
            clock.advance(value)
            continue
        failed = op == "fail"

        def call(duration: float = value, failed: bool = failed) -> None:
            clock.advance(duration)
            if failed:
                raise ConnectionError

        expected = model.call(clock.monotonic(), value, failed)
        try:
            breaker.call_sync(call)
            actual = "ran"
        except bt.CircuitOpenError:
            actual = "rejected"
        except ConnectionError:
            actual = "ran"
        assert actual == expected
        assert breaker.state.value == model.state or (
            model.state == "open" and breaker.state is HALF_OPEN
        )


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_rate": 1.5}, r"failure_rate must be a number in \(0, 1\], got 1.5"),
        ({"failure_rate": 0}, r"failure_rate must be a number in \(0, 1\], got 0"),
        ({"consecutive_failures": 0}, "consecutive_failures must be an int >= 1, got 0"),
        (
            {"consecutive_failures": 3, "failure_rate": 0.5},
            "consecutive_failures must be used alone",
        ),
        ({"window": 100}, "window must be a CountWindow or a TimeWindow, got 100"),
        (
            {"window": bt.CountWindow(10), "min_calls": 20},
            r"min_calls must be <= the window size \(10\)",
        ),
        ({"min_calls": 0}, "min_calls must be an int >= 1, got 0"),
        ({"open_for": -1}, "open_for must be a duration >= 0 seconds, got -1"),
        ({"half_open_calls": 0}, "half_open_calls must be an int >= 1, got 0"),
        ({"slow_call": 0}, "slow_call must be a duration > 0 seconds, got 0"),
        ({"slow_call_rate": 2}, r"slow_call_rate must be a number in \(0, 1\]"),
        ({"record_on": "Exception"}, "record_on must be an exception class"),
        ({"ignore_on": [1]}, "ignore_on must be an exception class"),
        ({"record_result": True}, "record_result must be a callable or None"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    """Each bad option is named with its value and the allowed range."""
    with pytest.raises(bt.ConfigError, match=message):
        bt.CircuitBreaker(**kwargs)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: bt.CountWindow(0), r"size must be an int in \[1, 1000000\], got 0"),
        (lambda: bt.TimeWindow(0), "seconds must be a duration > 0 seconds, got 0"),
        (lambda: bt.TimeWindow(10, buckets=0), r"buckets must be an int in \[1, 1000\], got 0"),
    ],
)
def test_bad_windows(factory: Any, message: str) -> None:
    """Windows validate themselves."""
    with pytest.raises(bt.ConfigError, match=message):
        factory()


def test_default_min_calls_fits_small_windows() -> None:
    """The default min_calls never exceeds a small count window."""
    assert bt.CircuitBreaker(window=bt.CountWindow(5)).min_calls == 5
    assert bt.CircuitBreaker().min_calls == 20
