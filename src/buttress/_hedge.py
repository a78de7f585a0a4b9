"""Hedge: when a call is slow, start another attempt and take whichever answers first."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from . import _validate as v
from ._budget import RetryBudget
from ._clock import Clock, resolve
from ._events import GLOBAL_LISTENERS, HedgeLaunched, Listener, emit
from ._policy import AsyncLink, Policy, SyncLink, next_index
from ._timer import Entry, Site, TimerQueue

__all__ = ["Hedge", "HedgeStats", "LatencyPercentile"]

_NEVER = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


@dataclass(frozen=True, slots=True)
class LatencyPercentile:
    """A hedge delay that follows recent latency: the ``quantile`` of the last ``samples``
    successful attempts, never less than ``floor``; ``initial`` until ``min_samples`` are seen.

    "The Tail at Scale" (Dean & Barroso, 2013) suggests hedging after the 95th percentile:
    about 5 % extra load for a large cut in tail latency.

    Raises:
        ConfigError: an argument is out of range.

    Example::

        bt.Hedge(delay=bt.LatencyPercentile(0.95, initial=0.05))
    """

    quantile: float = 0.95
    samples: int = 1000
    min_samples: int = 20
    initial: float = 0.1
    floor: float = 0.0

    def __post_init__(self) -> None:
        v.number("quantile", self.quantile, low=0.0, high=1.0, low_open=True, high_open=True)
        v.integer("samples", self.samples, minimum=1, maximum=1_000_000)
        v.integer("min_samples", self.min_samples, minimum=1, maximum=self.samples)
        object.__setattr__(self, "initial", v.seconds("initial", self.initial))
        object.__setattr__(self, "floor", v.seconds("floor", self.floor))


class _Latencies:
    """Recent latencies and their cached quantile (re-sorted every few samples)."""

    __slots__ = ("_every", "_ring", "_seen", "_since", "_spec", "_value")

    def __init__(self, spec: LatencyPercentile) -> None:
        self._spec = spec
        self._ring: list[float] = []
        self._seen = 0
        self._since = 0
        self._every = max(1, spec.samples // 50)
        self._value = spec.initial

    def observe(self, seconds: float) -> None:
        spec = self._spec
        if len(self._ring) < spec.samples:
            self._ring.append(seconds)
        else:
            self._ring[self._seen % spec.samples] = seconds
        self._seen += 1
        self._since += 1
        if len(self._ring) >= spec.min_samples and self._since >= self._every:
            self._since = 0
            ordered = sorted(self._ring)
            index = min(len(ordered) - 1, int(spec.quantile * len(ordered)))
            self._value = max(spec.floor, ordered[index])

    def value(self) -> float:
        return self._value


@dataclass(frozen=True, slots=True)
class HedgeStats:
    """A snapshot of a :class:`Hedge`: calls, extra attempts launched, how many of them
    won, how many the budget refused, and the current hedge delay."""

    name: str
    calls: int
    hedges: int
    hedge_wins: int
    budget_denied: int
    delay: float


class _Call:
    """Per-call state of one hedged call.

    ``outcome`` is set once, by the first attempt that ends the call: ``(True, result)``
    for a success, ``(False, exc)`` for an error outside ``on``. ``errors`` collects the
    handled failures, the first attempt's first.
    """

    __slots__ = (
        "args",
        "context",
        "delay",
        "entry",
        "errors",
        "exhausted",
        "fn",
        "inner",
        "interrupted",
        "kwargs",
        "launched",
        "outcome",
        "primary_done",
        "queue",
        "running",
        "started",
        "task",
        "waiter",
    )

    def __init__(
        self, fn: Any, args: Any, kwargs: Any, inner: AsyncLink | None, task: asyncio.Task[Any]
    ) -> None:
        self.fn, self.args, self.kwargs, self.inner, self.task = fn, args, kwargs, inner, task
        self.context = contextvars.copy_context()
        self.launched = 0
        self.running: list[asyncio.Task[Any]] = []
        self.errors: list[BaseException] = []
        self.outcome: tuple[bool, Any] | None = None
        self.exhausted = False  # every attempt failed and no more may start
        self.primary_done = False
        self.interrupted = False  # the caller's task was cancelled to deliver the outcome
        self.waiter: asyncio.Future[None] | None = None
        self.entry: Entry | None = None
        self.queue: TimerQueue | None = None
        self.delay = 0.0
        self.started = 0.0

    @property
    def over(self) -> bool:
        return self.outcome is not None or self.exhausted

    def cancel_running(self) -> None:
        for task in self.running:
            task.cancel()


class Hedge(Policy):
    """Send a second request when the first is slow; use whichever answers first.

    The first attempt runs in the caller's task. If it has not finished after ``delay``
    seconds — a fixed delay, or a :class:`LatencyPercentile` of recent latencies — another
    attempt starts, up to ``max_extra`` extra attempts (each ``delay`` after the previous
    one). If the first attempt *fails* with an exception matching ``on``, the next attempt
    starts at once instead of waiting. The first success wins and every other attempt is
    cancelled. An attempt that fails with an exception *outside* ``on`` ends the call with
    that exception, whichever attempt it was. If all fail, the first attempt's error is
    raised, with a note for each other error and the others grouped in its
    ``__context__``: no error is lost.

    Extra load is capped by a :class:`~buttress.RetryBudget`: each call deposits, each
    extra attempt withdraws. The default budget allows 10 % extra attempts plus one per
    second; pass your own to share it with retries or to change the cap.

    Only idempotent calls may be hedged: the losers may have run, in part or in full.
    Hedging needs concurrency, so it is async only: ``call_sync`` raises ``TypeError``.
    Put it inside any Timeout that should bound the whole hedged call; the deadline
    applies to every attempt.

    Args:
        delay: seconds before the next attempt (``>= 0``), or a :class:`LatencyPercentile`.
        max_extra: extra attempts at most, ``>= 1``. Default 1.
        on: exceptions that launch the next attempt at once. Default ``(Exception,)``.
        budget: the :class:`~buttress.RetryBudget` capping extra load; ``None`` (default)
            means a private ``RetryBudget(ratio=0.1, min_per_second=1.0)``.
        clock: the clock. Default: the system clock.
        name: for events and stats. Default ``"hedge-N"``.
        listeners: event listeners (:class:`~buttress.events.HedgeLaunched`).

    Raises:
        ConfigError: an argument is out of range.

    Example::

        hedge = bt.Hedge(delay=bt.LatencyPercentile(0.95), max_extra=1)
        doc = await bt.pipeline(hedge, bt.Timeout(1.0)).call(store.get, key)
    """

    def __init__(
        self,
        *,
        delay: float | timedelta | LatencyPercentile,
        max_extra: int = 1,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.clock = resolve(clock)
        if isinstance(delay, LatencyPercentile):
            self.delay: float | LatencyPercentile = delay
            self._latencies: _Latencies | None = _Latencies(delay)
        else:
            self.delay = v.seconds("delay", delay)
            self._latencies = None
        self.max_extra = v.integer("max_extra", max_extra, minimum=1)
        self.on = v.exception_types("on", on)
        if budget is None:
            budget = RetryBudget(ratio=0.1, min_per_second=1.0, clock=self.clock)
        elif not isinstance(budget, RetryBudget):
            raise v.fail("budget", "a RetryBudget or None", budget)
        self.budget = budget
        self.name = v.name_of(name, "hedge", lambda: next_index("hedge"))
        self._listeners = v.listeners(listeners)
        self._calls = 0
        self._hedges = 0
        self._wins = 0
        self._denied = 0
        self._link()

    def __repr__(self) -> str:
        return f"Hedge(delay={self.delay!r}, max_extra={self.max_extra}, name={self.name!r})"

    def stats(self) -> HedgeStats:
        """Counters since construction and the delay currently in use."""
        return HedgeStats(
            self.name, self._calls, self._hedges, self._wins, self._denied, self._current_delay()
        )

    def _current_delay(self) -> float:
        if self._latencies is not None:
            return self._latencies.value()
        return self.delay  # type: ignore[return-value]

    # -- launching and settling extra attempts ----------------------------------------------

    def _on_timer(self, entry: Entry) -> None:
        self._launch(entry[3], "delay")

    def _launch(self, call: _Call, reason: str) -> bool:
        if call.over or call.launched >= self.max_extra:
            return False
        if not self.budget.try_withdraw():
            self._denied += 1
            return False
        call.launched += 1
        self._hedges += 1
        task = call.task.get_loop().create_task(self._attempt(call), context=call.context)
        call.running.append(task)
        task.add_done_callback(functools.partial(self._settled, call))
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, HedgeLaunched(self.name, call.launched + 1, call.delay, reason))
        if reason == "delay" and call.launched < self.max_extra and call.queue is not None:
            call.entry = call.queue.add(self.clock.monotonic() + call.delay, self._on_timer, call)
        return True

    async def _attempt(self, call: _Call) -> Any:
        started = self.clock.monotonic()
        inner = call.inner
        try:
            result = await (
                call.fn(*call.args, **call.kwargs)
                if inner is None
                else inner(call.fn, call.args, call.kwargs)
            )
        except asyncio.CancelledError:
            if call.outcome is not None:
                self._observe(started)  # lost the race: its latency is at least this
            raise
        self._observe(started)
        return result

    def _observe(self, started: float) -> None:
        # Successful attempts give exact latencies; attempts cancelled because another won
        # give lower bounds. Leaving the latter out would keep only the fast half of the
        # tail and drag the percentile (and so the hedge delay) down.
        if self._latencies is not None:
            self._latencies.observe(self.clock.monotonic() - started)

    def _finish(self, call: _Call, outcome: tuple[bool, Any]) -> None:
        """The first final outcome: stop everything else and deliver it to the caller."""
        call.outcome = outcome
        call.cancel_running()
        if not call.primary_done:
            # The first attempt still runs in the caller's task: interrupt it.
            call.interrupted = True
            call.task.cancel()
        elif call.waiter is not None and not call.waiter.done():
            call.waiter.set_result(None)

    def _settled(self, call: _Call, task: asyncio.Task[Any]) -> None:
        """Done callback of an extra attempt."""
        call.running.remove(task)
        if task.cancelled():
            return
        exc = task.exception()
        if call.over:
            return
        if exc is None:
            self._wins += 1
            self._finish(call, (True, task.result()))
        elif not isinstance(exc, self.on) or isinstance(exc, _NEVER):
            self._finish(call, (False, exc))  # not a failure we hedge: it ends the call
        else:
            call.errors.append(exc)
            if call.primary_done and not call.running and not self._launch(call, "failure"):
                call.exhausted = True
                if call.waiter is not None and not call.waiter.done():
                    call.waiter.set_result(None)

    async def _after_primary_failure(self, call: _Call, exc: BaseException) -> Any:
        # The first attempt's error leads the list: it is the one raised if all fail.
        call.errors.insert(0, exc)
        if not call.running and not self._launch(call, "failure"):
            call.exhausted = True
            self._raise_all(call)
        call.waiter = call.task.get_loop().create_future()
        try:
            await call.waiter
        except BaseException:
            call.exhausted = True
            call.cancel_running()
            raise
        return self._deliver(call)

    def _deliver(self, call: _Call) -> Any:
        if call.outcome is None:
            self._raise_all(call)
        ok, value = call.outcome
        if ok:
            return value
        raise value

    def _raise_all(self, call: _Call) -> NoReturn:
        first, others = call.errors[0], call.errors[1:]
        for index, error in enumerate(others, start=2):
            first.add_note(f"buttress.Hedge {self.name!r}: attempt {index} also failed: {error!r}")
        if not others:
            raise first
        try:
            raise BaseExceptionGroup("the other hedged attempts failed too", others)
        except BaseExceptionGroup:
            raise first  # noqa: B904 - the group becomes first.__context__ on purpose

    # -- runners ----------------------------------------------------------------------------

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        clock = self.clock
        now_fn = clock.monotonic
        budget = self.budget
        handled = self.on
        site = Site(clock)

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            self._calls += 1
            budget.deposit()
            task, queue, _ = site.locate()
            call = _Call(fn, args, kwargs, inner, task)
            call.started = started = now_fn()
            call.delay = delay = self._current_delay()
            call.queue = queue
            call.entry = queue.add(started + delay, self._on_timer, call)
            base = task.cancelling()
            try:
                result = await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            except BaseException as exc:
                call.primary_done = True
                queue.discard(call.entry)
                if call.interrupted:
                    if task.uncancel() <= base:
                        # An extra attempt ended the call and interrupted this one.
                        self._observe(started)
                        return self._deliver(call)
                    call.cancel_running()  # cancelled from outside as well: let it through
                    raise
                if isinstance(exc, _NEVER) or not isinstance(exc, handled):
                    call.exhausted = True
                    call.cancel_running()
                    raise
                return await self._after_primary_failure(call, exc)
            call.primary_done = True
            queue.discard(call.entry)
            if call.interrupted:
                task.uncancel()  # an extra attempt ended the call, but this one returned anyway
            else:
                call.outcome = (True, result)
                call.cancel_running()
            self._observe(started)
            return result

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            raise TypeError(
                f"Hedge {self.name!r} needs concurrency and only runs async calls: "
                "use `await policy.call(...)`, or leave the Hedge out of sync pipelines"
            )

        return run
