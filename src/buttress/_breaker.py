"""CircuitBreaker: stop calling a dependency that is failing, probe it, resume when healthy."""

from __future__ import annotations

import asyncio
import enum
import itertools
import math
import random as _random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from . import _validate as v
from ._backoff import Backoff
from ._clock import Clock, resolve
from ._errors import CircuitOpenError, DeadlineExceededError, RejectedError
from ._events import GLOBAL_LISTENERS, BreakerStateChanged, CallRejected, Event, Listener, emit
from ._policy import AsyncLink, Policy, SyncLink, next_index

__all__ = [
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "CountWindow",
    "TimeWindow",
]

_OPEN_FOR = "circuit breaker %r is open; retry after %.3f s"
_IN_STATE = "circuit breaker %r is %s"

# Outcomes that are neither success nor failure: the permit is released and nothing counts.
_NEUTRAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


class BreakerState(enum.Enum):
    """The state of a :class:`CircuitBreaker`.

    * ``CLOSED`` — calls flow; outcomes are recorded.
    * ``OPEN`` — calls are rejected with :class:`~buttress.CircuitOpenError` until
      ``open_for`` has passed.
    * ``HALF_OPEN`` — up to ``half_open_calls`` probe calls run; all succeeding closes the
      breaker, any failing opens it again.
    * ``ISOLATED`` — forced open by :meth:`CircuitBreaker.isolate` until
      :meth:`CircuitBreaker.reset`.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"


CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
ISOLATED = BreakerState.ISOLATED


@dataclass(frozen=True, slots=True)
class CountWindow:
    """Judge the failure rate over the last ``size`` calls.

    Raises:
        ConfigError: ``size`` is not an int in [1, 1_000_000].

    Example::

        bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(100), min_calls=20)
    """

    size: int = 100

    def __post_init__(self) -> None:
        v.integer("size", self.size, minimum=1, maximum=1_000_000)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Judge the failure rate over the calls of the last ``seconds``.

    The window is kept as ``buckets`` fixed slices (default 10) that expire whole, so a
    call is forgotten between ``seconds - seconds/buckets`` and ``seconds`` after it ended.

    Raises:
        ConfigError: ``seconds`` is not a positive finite duration, or ``buckets`` is not an
            int in [1, 1000].

    Example::

        bt.CircuitBreaker(failure_rate=0.25, window=bt.TimeWindow(60.0), min_calls=50)
    """

    seconds: float = 60.0
    buckets: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", v.seconds("seconds", self.seconds, allow_zero=False))
        v.integer("buckets", self.buckets, minimum=1, maximum=1000)


class _CountRing:
    """Outcomes of the last ``size`` calls: bit 0 failure, bit 1 slow."""

    __slots__ = ("calls", "failures", "index", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.reset()

    def reset(self) -> None:
        self.ring = bytearray(self.size)
        self.index = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> tuple[int, int, int]:
        ring, index = self.ring, self.index
        if self.calls == self.size:
            old = ring[index]
            self.failures -= old & 1
            self.slow -= old >> 1
        else:
            self.calls += 1
        ring[index] = failed | (slow << 1)
        self.failures += failed
        self.slow += slow
        self.index = index + 1 if index + 1 < self.size else 0
        return self.calls, self.failures, self.slow

    def totals(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow

    def add_successes(self, count: int, at: float) -> None:
        """Record ``count`` plain successes (no failure, not slow)."""
        if count >= self.size:
            self.ring = bytearray(self.size)
            self.index = 0
            self.calls = self.size
            self.failures = self.slow = 0
            return
        for _ in range(count):
            self.record(at, False, False)


class _TimeBuckets:
    """Per-bucket counts of calls, failures and slow calls over a sliding time window."""

    __slots__ = ("buckets", "calls", "current", "failures", "n", "slow", "width")

    def __init__(self, seconds: float, buckets: int) -> None:
        self.n = buckets
        self.width = seconds / buckets
        self.reset()

    def reset(self) -> None:
        self.buckets = [[0, 0, 0] for _ in range(self.n)]
        self.current: int | None = None
        self.calls = self.failures = self.slow = 0

    def _rotate(self, now: float) -> list[int]:
        slot = int(now // self.width)
        current = self.current
        if current is None or slot - current >= self.n:
            if current is not None:
                for bucket in self.buckets:
                    bucket[0] = bucket[1] = bucket[2] = 0
                self.calls = self.failures = self.slow = 0
        elif slot > current:
            for expiring in range(current + 1, slot + 1):
                bucket = self.buckets[expiring % self.n]
                self.calls -= bucket[0]
                self.failures -= bucket[1]
                self.slow -= bucket[2]
                bucket[0] = bucket[1] = bucket[2] = 0
        if current is None or slot > current:
            self.current = slot
        return self.buckets[self.current % self.n]  # type: ignore[operator]

    def record(self, now: float, failed: bool, slow: bool) -> tuple[int, int, int]:
        bucket = self._rotate(now)
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow
        return self.calls, self.failures, self.slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._rotate(now)
        return self.calls, self.failures, self.slow

    def add_successes(self, count: int, at: float) -> None:
        """Record ``count`` plain successes that happened in the bucket containing ``at``."""
        if not count:
            return
        bucket = self._rotate(at)
        bucket[0] += count
        self.calls += count

    def bucket_end(self, at: float) -> float:
        """When the bucket containing ``at`` ends."""
        return (int(at // self.width) + 1) * self.width


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A snapshot of a :class:`CircuitBreaker`.

    ``window_calls``/``window_failures``/``window_slow`` describe the current window (rate
    mode) and ``failure_rate``/``slow_call_rate`` their ratios (``0.0`` while empty);
    ``consecutive_failures`` is the current run (consecutive mode). ``opened`` counts
    transitions to OPEN since construction; the other counters count calls.
    """

    name: str
    state: BreakerState
    calls: int
    successes: int
    failures: int
    slow_calls: int
    rejections: int
    opened: int
    window_calls: int
    window_failures: int
    window_slow: int
    failure_rate: float
    slow_call_rate: float
    consecutive_failures: int
    retry_after: float | None


class CircuitBreaker(Policy):
    """Fail fast while a dependency is failing; probe it; resume when it is healthy.

    **Modes.** With ``consecutive_failures=N`` the breaker opens after N failures in a row.
    Otherwise (the default) it judges the **failure rate** over a ``window`` — the last N
    calls (:class:`CountWindow`, default 100) or the last T seconds (:class:`TimeWindow`) —
    and opens when at least ``min_calls`` calls are in the window and the share of failures
    reaches ``failure_rate``, or the share of calls slower than ``slow_call`` reaches
    ``slow_call_rate``.

    **Open, half-open.** While OPEN every call is rejected at once with
    :class:`~buttress.CircuitOpenError` carrying ``retry_after``. After ``open_for`` the next
    calls become probes: at most ``half_open_calls`` run at once (permits are reserved
    atomically, whatever the number of threads and tasks). When that many probes have
    succeeded the breaker closes with a fresh window; any failed (or slow) probe opens it
    again. ``open_for`` may be a :class:`~buttress.Backoff` to grow the open time on
    repeated openings (it restarts from the first step once the breaker closes).
    A probe that is cancelled, or ends in an ignored exception, hands its permit back.

    **What counts.** An exception matching ``record_on`` (default: any ``Exception``) is a
    failure unless it matches ``ignore_on``, which makes the call count as nothing; other
    exceptions count as successes. By default ``ignore_on`` holds buttress's own local
    rejections (:class:`~buttress.RejectedError`: a full bulkhead or an open inner breaker
    inside this one) and :class:`~buttress.DeadlineExceededError` (the caller's budget ran
    out): neither says the dependency is failing. A per-attempt
    :class:`~buttress.TimeoutError` does count. ``record_result(result)`` returning true
    makes a returned result a failure (it is still returned). Cancellation,
    ``KeyboardInterrupt`` and ``SystemExit`` never count. In consecutive mode a slow call
    counts as a failure.

    **Concurrency.** No lock is held while the protected call runs. The closed-state happy
    path of consecutive mode takes no lock at all; windows take one briefly to record.

    Args:
        failure_rate: open at this share of failures, in (0, 1]. Default 0.5 (rate mode).
        consecutive_failures: open after this many failures in a row (consecutive mode);
            cannot be combined with ``failure_rate`` or ``window``.
        window: :class:`CountWindow` (default ``CountWindow(100)``) or :class:`TimeWindow`.
        min_calls: calls needed in the window before the rate is judged, ``>= 1``.
            Default: ``min(20, window.size)`` for a count window, 20 for a time window.
        open_for: seconds to stay open, or a :class:`~buttress.Backoff` indexed by the
            number of consecutive openings. Default 30.
        half_open_calls: probe calls allowed at once, and successes needed to close, ``>= 1``.
            Default 1.
        slow_call: a call taking at least this many seconds is slow; ``None`` (default)
            disables slow-call detection.
        slow_call_rate: open at this share of slow calls, in (0, 1]. Default 0.5.
        record_on: exceptions counted as failures. Default ``(Exception,)``.
        ignore_on: exceptions that count as neither success nor failure (and hand back a
            probe permit). Default ``(RejectedError, DeadlineExceededError)``; pass ``()``
            to count them.
        record_result: optional predicate ``(result) -> bool``; true counts a failure.
        clock: the clock. Default: the system clock.
        random: the ``random.Random`` for a jittered ``open_for`` backoff.
        name: for events and stats. Default ``"breaker-N"``.
        listeners: event listeners (:class:`~buttress.events.BreakerStateChanged`,
            :class:`~buttress.events.CallRejected`).

    Raises:
        ConfigError: an argument is out of range, or the modes are mixed.
        CircuitOpenError: (at call time) the breaker rejected the call.

    Example::

        breaker = bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(50),
                                    min_calls=10, open_for=15.0, half_open_calls=2)
        try:
            profile = await breaker.call(client.get_profile, uid)
        except bt.CircuitOpenError as exc:
            profile = cached_profile(uid)   # exc.retry_after says when it will probe
    """

    def __init__(
        self,
        *,
        failure_rate: float | None = None,
        consecutive_failures: int | None = None,
        window: CountWindow | TimeWindow | None = None,
        min_calls: int | None = None,
        open_for: float | timedelta | Backoff = 30.0,
        half_open_calls: int = 1,
        slow_call: float | timedelta | None = None,
        slow_call_rate: float = 0.5,
        record_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        ignore_on: type[BaseException] | tuple[type[BaseException], ...] = (
            RejectedError,
            DeadlineExceededError,
        ),
        record_result: Callable[[Any], bool] | None = None,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        if consecutive_failures is not None:
            if failure_rate is not None or window is not None or min_calls is not None:
                raise v.fail(
                    "consecutive_failures",
                    "used alone: failure_rate, window and min_calls belong to rate mode",
                    consecutive_failures,
                )
            self.consecutive_failures: int | None = v.integer(
                "consecutive_failures", consecutive_failures, minimum=1
            )
            self.failure_rate: float | None = None
            self.window: CountWindow | TimeWindow | None = None
            self.min_calls = 0
            self._window: _CountRing | _TimeBuckets | None = None
        else:
            self.consecutive_failures = None
            self.failure_rate = v.number(
                "failure_rate",
                0.5 if failure_rate is None else failure_rate,
                low=0.0,
                high=1.0,
                low_open=True,
            )
            if window is None:
                window = CountWindow(100)
            if isinstance(window, CountWindow):
                default_min = min(20, window.size)
                self._window = _CountRing(window.size)
            elif isinstance(window, TimeWindow):
                default_min = 20
                self._window = _TimeBuckets(window.seconds, window.buckets)
            else:
                raise v.fail("window", "a CountWindow or a TimeWindow", window)
            self.window = window
            self.min_calls = v.integer(
                "min_calls", default_min if min_calls is None else min_calls, minimum=1
            )
            if isinstance(window, CountWindow) and self.min_calls > window.size:
                raise v.fail("min_calls", f"<= the window size ({window.size})", self.min_calls)
        if isinstance(open_for, Backoff):
            self.open_for: float | Backoff = open_for
        else:
            self.open_for = v.seconds("open_for", open_for)
        self.half_open_calls = v.integer("half_open_calls", half_open_calls, minimum=1)
        self.slow_call = v.optional_seconds("slow_call", slow_call, allow_zero=False)
        self.slow_call_rate = v.number(
            "slow_call_rate", slow_call_rate, low=0.0, high=1.0, low_open=True
        )
        self.record_on = v.exception_types("record_on", record_on)
        ignore = v.exception_types("ignore_on", ignore_on) if ignore_on != () else ()
        # ``ignore_on`` wins over ``record_on``: a type in both counts as nothing.
        self.ignore_on: tuple[type[BaseException], ...] = ignore
        self.record_result = v.optional_callable("record_result", record_result)
        self.clock = resolve(clock)
        self.random = v.rng(random)
        self.name = v.name_of(name, "breaker", lambda: next_index("breaker"))
        self._listeners = v.listeners(listeners)

        self._lock = threading.Lock()
        self._state = CLOSED
        self._generation = 0  # bumped on every transition; stale probe permits are ignored
        self._consecutive = 0
        self._open_until = 0.0
        self._openings = 0  # consecutive openings without a close, for a growing open_for
        self._last_open_for = 0.0
        self._probes = 0  # probe permits out
        self._probe_successes = 0
        # Closed-state successes are usually only *ticked* on this counter (atomic, no lock)
        # and folded into the window later, under the lock, by _drain. That is exact while
        # the breaker is "warm": the window holds at least min_calls calls, so a success
        # can only lower the failure rate and cannot trip the breaker. In a time window the
        # rate may also rise when old buckets expire, so ticking stops at the end of the
        # bucket of the last judgement. Other successes are judged under the lock.
        self._tally = itertools.count()
        self._tally_mark = next(self._tally)
        self._drained_at = self.clock.monotonic()
        self._timed_window = isinstance(self._window, _TimeBuckets)
        warm = self._window is None  # consecutive mode: a success never trips
        self._bucket_end = math.inf if self._window is None else -math.inf
        # The runners' fast path: the plainest success (closed, no slow-call or result
        # check, no time window) may be ticked while warm. One attribute, read per call.
        self._plain = (
            self.slow_call is None and self.record_result is None and not self._timed_window
        )
        self._tick_ok = self._plain and warm
        # Counters for stats().
        self._calls = self._successes = self._failures = self._slow = 0
        self._rejections = self._opened = 0
        self._link()

    def __repr__(self) -> str:
        if self.consecutive_failures is not None:
            mode = f"consecutive_failures={self.consecutive_failures}"
        else:
            mode = f"failure_rate={self.failure_rate}, window={self.window!r}"
        return f"CircuitBreaker({mode}, name={self.name!r}, state={self.state.value})"

    # -- reading ----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state. An OPEN breaker whose ``open_for`` has passed reads as
        HALF_OPEN (the transition itself happens on the next call)."""
        state = self._state
        if state is OPEN and self.clock.monotonic() >= self._open_until:
            return HALF_OPEN
        return state

    def stats(self) -> BreakerStats:
        """A consistent snapshot of counters, window and state."""
        with self._lock:
            now = self.clock.monotonic()
            self._drain(now)
            if self._window is not None:
                calls, failures, slow = self._window.totals(now)
            else:
                calls = failures = slow = 0
            state = self._state
            retry_after: float | None = None
            if state is OPEN:
                if now >= self._open_until:
                    state = HALF_OPEN
                else:
                    retry_after = self._open_until - now
            return BreakerStats(
                name=self.name,
                state=state,
                calls=self._calls,
                successes=self._successes,
                failures=self._failures,
                slow_calls=self._slow,
                rejections=self._rejections,
                opened=self._opened,
                window_calls=calls,
                window_failures=failures,
                window_slow=slow,
                failure_rate=failures / calls if calls else 0.0,
                slow_call_rate=slow / calls if calls else 0.0,
                consecutive_failures=self._consecutive,
                retry_after=retry_after,
            )

    # -- manual control ---------------------------------------------------------------------

    def isolate(self) -> None:
        """Force the breaker open (state ISOLATED) until :meth:`reset`; calls are rejected."""
        with self._lock:
            events = self._transition(ISOLATED, "isolated by hand", self.clock.monotonic())
        self._emit_all(events)

    def reset(self) -> None:
        """Close the breaker with an empty window, whatever its state."""
        with self._lock:
            events = self._transition(CLOSED, "reset by hand", self.clock.monotonic())
        self._emit_all(events)

    # -- the decision core ------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        """Fold the ticked successes into counters and window. Caller holds the lock.

        Every success ticked since the last drain happened after it; in a time window the
        runner drains before ticking past the end of the last drain's bucket, so they all
        belong to that bucket.
        """
        mark = next(self._tally)
        count = mark - self._tally_mark - 1
        self._tally_mark = mark
        if count:
            self._calls += count
            self._successes += count
            if self._state is CLOSED:
                if self._window is not None:
                    self._window.add_successes(count, self._drained_at)
                else:
                    self._consecutive = 0
        self._drained_at = now

    def _judge(self, now: float, calls: int, failures: int, slow: int) -> list[Event]:
        """Judge the closed window after recording a call. Caller holds the lock."""
        # Ratios, not products: 3 / 10 >= 0.3 holds, 3 >= 0.3 * 10 does not.
        if calls >= self.min_calls:
            if failures / calls >= self.failure_rate:  # type: ignore[operator]
                return self._transition(OPEN, "failure rate", now)
            if self.slow_call is not None and slow / calls >= self.slow_call_rate:
                return self._transition(OPEN, "slow call rate", now)
            self._tick_ok = self._plain
            # Until when successes may be ticked without judging: the end of this bucket
            # for a time window, forever for a count window.
            if self._timed_window:
                self._bucket_end = self._window.bucket_end(now)  # type: ignore[union-attr]
            else:
                self._bucket_end = math.inf
        else:
            self._tick_ok = False
            self._bucket_end = -math.inf
        return []

    def _transition(self, new: BreakerState, reason: str, now: float) -> list[Event]:
        """Move to ``new``. Caller holds the lock; returns events to emit after releasing it."""
        self._drain(now)
        old = self._state
        self._generation += 1
        self._probes = 0
        self._probe_successes = 0
        self._consecutive = 0
        if new is OPEN:
            self._openings += 1
            self._opened += 1
            if isinstance(self.open_for, Backoff):
                duration = self.open_for.compute(self._openings, self._last_open_for, self.random)
            else:
                duration = self.open_for
            self._last_open_for = duration
            self._open_until = now + duration
        elif new is CLOSED:
            self._openings = 0
            self._last_open_for = 0.0
            if self._window is not None:
                self._window.reset()
                self._tick_ok = False
                self._bucket_end = -math.inf
        self._state = new
        if old is new or not (self._listeners or GLOBAL_LISTENERS):
            return []
        return [BreakerStateChanged(self.name, old, new, reason)]

    def _emit_all(self, events: list[Event]) -> None:
        for event in events:
            emit(self._listeners, event)

    def _acquire(self) -> int | None:
        """Slow path (state was not CLOSED): a probe permit, ``None`` if closed, or raise."""
        if self._state is OPEN:
            # Rejecting while open needs no lock: a stale read can only turn away a call
            # that was about to become a probe, and the next call sees the new state.
            # Raised right here (not in a helper): each frame a raise crosses costs.
            now = self.clock.monotonic()
            until = self._open_until
            if now < until:
                self._rejections += 1
                if self._listeners or GLOBAL_LISTENERS:
                    emit(self._listeners, CallRejected(self.name, "breaker", until - now))
                raise CircuitOpenError._lazy(
                    self.name, until - now, _OPEN_FOR, (self.name, until - now)
                )
        events: list[Event] = []
        with self._lock:
            state = self._state
            if state is CLOSED:
                return None
            now = self.clock.monotonic()
            if state is OPEN and now >= self._open_until:
                events = self._transition(HALF_OPEN, "open_for elapsed", now)
                state = HALF_OPEN
            if state is HALF_OPEN and self._probes < self.half_open_calls:
                self._probes += 1
                permit: int | None = self._generation
            else:
                permit = None
                retry_after = self._open_until - now if state is OPEN else None
        if events:
            self._emit_all(events)
        if permit is None:
            self._reject(retry_after, state)
        return permit

    def _reject(self, retry_after: float | None, state: BreakerState) -> NoReturn:
        self._rejections += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, CallRejected(self.name, "breaker", retry_after))
        if retry_after is None:
            raise CircuitOpenError._lazy(self.name, None, _IN_STATE, (self.name, state.value))
        raise CircuitOpenError._lazy(self.name, retry_after, _OPEN_FOR, (self.name, retry_after))

    def _release(self, permit: int | None) -> None:
        """Hand back a probe permit whose call counted as nothing."""
        if permit is None:
            return
        with self._lock:
            if permit == self._generation and self._state is HALF_OPEN:
                self._probes -= 1

    def _on_exception(self, permit: int | None, exc: BaseException, started: float) -> None:
        if isinstance(exc, _NEUTRAL) or (self.ignore_on and isinstance(exc, self.ignore_on)):
            self._release(permit)
            return
        self._record(permit, isinstance(exc, self.record_on), started)

    def _on_success(self, permit: int | None, started: float, result: object) -> None:
        """Any success but the plainest (which the runner ticks itself)."""
        failed = self.record_result is not None and bool(self.record_result(result))
        if permit is None and not failed:
            if self.slow_call is None:
                now = self.clock.monotonic() if self._timed_window else 0.0
                slow = False
            else:
                now = self.clock.monotonic()
                slow = now - started >= self.slow_call
            if not slow and now < self._bucket_end:  # -inf while not warm
                next(self._tally)
                return
        self._record(permit, failed, started)

    def _record(self, permit: int | None, failed: bool, started: float) -> None:
        """A failure, a slow call, or a probe's outcome: decided under the lock."""
        now = self.clock.monotonic()
        slow = self.slow_call is not None and now - started >= self.slow_call
        events: list[Event] = []
        with self._lock:
            self._drain(now)
            self._calls += 1
            if failed:
                self._failures += 1
            else:
                self._successes += 1
            if slow:
                self._slow += 1
            state = self._state
            if permit is not None:
                if permit == self._generation and state is HALF_OPEN:
                    self._probes -= 1
                    if failed or slow:
                        events = self._transition(OPEN, "probe failed", now)
                    else:
                        self._probe_successes += 1
                        if self._probe_successes >= self.half_open_calls:
                            events = self._transition(CLOSED, "probes succeeded", now)
            elif state is CLOSED:
                window = self._window
                if window is None:
                    if failed or slow:
                        self._consecutive += 1
                        if self._consecutive >= self.consecutive_failures:  # type: ignore[operator]
                            events = self._transition(OPEN, "consecutive failures", now)
                    else:
                        self._consecutive = 0
                else:
                    events = self._judge(now, *window.record(now, failed, slow))
        self._emit_all(events)

    # -- runners ----------------------------------------------------------------------------
    # The plainest success (closed, no slow-call or result check, count window or
    # consecutive mode) is one tick of an atomic counter; anything else is a method call.

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        acquire, on_exception, on_success = self._acquire, self._on_exception, self._on_success
        tick = self._tally.__next__
        timed = self.slow_call is not None
        now = self.clock.monotonic
        closed = CLOSED

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            permit = None if self._state is closed else acquire()
            started = now() if timed else 0.0
            try:
                result = await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            except BaseException as exc:
                on_exception(permit, exc, started)
                raise
            if self._tick_ok and permit is None:
                tick()
            else:
                on_success(permit, started, result)
            return result

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        acquire, on_exception, on_success = self._acquire, self._on_exception, self._on_success
        tick = self._tally.__next__
        timed = self.slow_call is not None
        now = self.clock.monotonic
        closed = CLOSED

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            permit = None if self._state is closed else acquire()
            started = now() if timed else 0.0
            try:
                result = fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            except BaseException as exc:
                on_exception(permit, exc, started)
                raise
            if self._tick_ok and permit is None:
                tick()
            else:
                on_success(permit, started, result)
            return result

        return run
