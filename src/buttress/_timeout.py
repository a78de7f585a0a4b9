"""Timeout: bound one attempt, clamped to the enclosing deadline."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from dataclasses import dataclass
from typing import Any, Literal

from . import _validate as v
from ._clock import Clock, resolve
from ._deadline import get_current, reset_current, set_current
from ._errors import DeadlineExceededError, TimeoutError
from ._events import GLOBAL_LISTENERS, Listener, TimeoutFired, TimeoutOverran, emit
from ._policy import AsyncLink, Policy, SyncLink, next_index
from ._timer import DONE, FIRED, LIVE, Site, cancel_task, task_of
from ._validate import Seconds

__all__ = ["Timeout", "TimeoutStats"]


@dataclass(frozen=True, slots=True)
class TimeoutStats:
    """A snapshot of a :class:`Timeout`'s counters."""

    name: str
    seconds: float
    timeouts: int
    overruns: int


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=32, thread_name_prefix="buttress-timeout"
            )
        return _executor


class Timeout(Policy):
    """Give each call at most ``seconds``, or less if the enclosing deadline is sooner.

    **Async calls** are cancelled when the time runs out and :class:`~buttress.TimeoutError`
    is raised (:class:`~buttress.DeadlineExceededError` when the enclosing deadline was the
    shorter budget). Cancellation works like ``asyncio.timeout`` — the callee sees a
    ``CancelledError`` and may clean up — and an outside cancellation that arrives at the
    same time still propagates as ``CancelledError``. It costs far less:
    one shared timer per event loop instead of one loop timer per call (see ``_timer.py``).

    The budget is also *propagated*: inside the call, :func:`~buttress.remaining` and
    :func:`~buttress.deadline_headers` see ``min(seconds, enclosing deadline)``, so nested
    policies and upstream requests use the same budget.

    **Sync calls** cannot be interrupted safely in Python (a thread cannot be killed, and
    signals only work on the main thread). With ``sync="cooperative"`` (the default) the
    timeout: fails fast with ``TimeoutError`` when no time is left before the call; sets
    the budget so code inside can pass it on (``sock.settimeout(bt.remaining())``,
    database statement timeouts); and, if the call overruns anyway, returns its result and
    emits :class:`~buttress.events.TimeoutOverran`. With ``sync="thread"`` — only when you
    ask for it — the call runs in a worker thread of a shared pool and the caller stops
    waiting at the timeout; the worker thread runs on to completion and its result is
    dropped, so use it only for calls that are safe to abandon.

    A budget that is already spent when the call starts (``seconds=0`` or an expired
    deadline) raises at once without calling the function; ``asyncio.timeout(0)`` would
    still run it up to its first suspension.

    Args:
        seconds: the limit per call, in seconds or as a ``timedelta``; ``>= 0``.
        sync: ``"cooperative"`` (default) or ``"thread"``, see above.
        clock: the clock. Default: the system clock.
        name: for events and stats. Default ``"timeout-N"``.
        listeners: event listeners for this policy.

    Raises:
        ConfigError: ``seconds`` is negative, NaN or infinite; ``sync`` is unknown.
        TimeoutError: (at call time) the call did not finish in time.

    Example::

        policy = bt.pipeline(bt.Retry(attempts=3, on=(TimeoutError, ConnectionError)),
                             bt.Timeout(0.5))
        body = await policy.call(fetch, url)
    """

    def __init__(
        self,
        seconds: Seconds,
        *,
        sync: Literal["cooperative", "thread"] = "cooperative",
        clock: Clock | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.seconds = v.seconds("seconds", seconds)
        self.sync = v.choice("sync", sync, ("cooperative", "thread"))
        self.clock = resolve(clock)
        self.name = v.name_of(name, "timeout", lambda: next_index("timeout"))
        self._listeners = v.listeners(listeners)
        self._timeouts = 0
        self._overruns = 0
        self._link()

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, name={self.name!r})"

    def stats(self) -> TimeoutStats:
        """Counters since construction: timeouts and sync overruns."""
        return TimeoutStats(self.name, self.seconds, self._timeouts, self._overruns)

    def _expired(self, budget: float, by_deadline: bool) -> TimeoutError:
        self._timeouts += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, TimeoutFired(self.name, budget, by_deadline))
        if by_deadline:
            return DeadlineExceededError(
                f"{self.name}: the deadline ran out after {budget:.3f} s", timeout=budget
            )
        return TimeoutError(f"{self.name} timed out after {budget:.3f} s", timeout=budget)

    def _budget(self, now: float) -> tuple[float, bool]:
        """(expiry time on our clock, whether the deadline is the shorter budget)."""
        when = now + self.seconds
        current = get_current()
        if current is not None:
            expires_at, clock = current
            limit = expires_at if clock is self.clock else now + (expires_at - clock.monotonic())
            if limit < when:
                return limit, True
        return when, False

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        clock = self.clock
        now_fn = clock.monotonic
        seconds = self.seconds
        expired = self._expired
        site = Site(clock, seconds)
        get_ident = threading.get_ident
        CancelledError = asyncio.CancelledError

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            now = now_fn()
            when = now + seconds
            by_deadline = False
            current = get_current()
            if current is not None:
                expires_at, its_clock = current
                if its_clock is not clock:
                    expires_at = now + (expires_at - its_clock.monotonic())
                if expires_at < when:
                    when, by_deadline = expires_at, True
            if when <= now:
                raise expired(0.0, by_deadline)
            # Site.locate's fast path, inlined: this runs on every call. One tuple read,
            # so a thread never pairs its loop with another thread's queue.
            loop, queue, lane = site.state
            if loop is not None and loop._thread_id == get_ident():
                task = task_of(loop)
                if task is None:  # pragma: no cover - a running loop runs a task here
                    task, queue, lane = site.locate()
            else:
                task, queue, lane = site.locate()
            entry = [when, 0, cancel_task, task, LIVE, task.cancelling()]
            # TimerQueue's lane fast path, inlined: entries of one duration arrive in
            # deadline order; a clamped one that would break the order goes to the heap.
            if by_deadline or (lane and lane[-1][0] > when):
                queue.push(entry)
                lane = None
            else:
                lane.append(entry)
                if when < queue.armed_at:
                    queue.arm(when)
            token = set_current((when, clock))
            try:
                result = await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            except BaseException as exc:
                if entry[4] == LIVE:
                    raise
                # Our timer fired. Report a timeout unless another cancellation is pending.
                if task.uncancel() <= entry[5] and isinstance(exc, CancelledError):
                    raise expired(when - now, by_deadline) from exc
                raise
            finally:
                reset_current(token)
                if entry[4] == LIVE:
                    if lane is not None and lane[0] is entry and len(lane) == 1:
                        entry[4] = DONE
                        lane.pop()
                    else:
                        queue.discard(entry, lane)
            if entry[4] == FIRED:
                # Fired, but the callee swallowed the cancellation and returned: keep the
                # task's cancel count balanced, as asyncio.timeout does, and keep the result.
                task.uncancel()
            return result

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        clock = self.clock
        now_fn = clock.monotonic
        budget_fn = self._budget
        expired = self._expired
        threaded = self.sync == "thread"

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            now = now_fn()
            when, by_deadline = budget_fn(now)
            if when <= now:
                raise expired(0.0, by_deadline)
            token = set_current((when, clock))
            try:
                if threaded:
                    return self._run_in_thread(fn, args, kwargs, inner, when - now, by_deadline)
                result = fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            finally:
                reset_current(token)
            elapsed = now_fn() - now
            if elapsed > when - now:
                self._overruns += 1
                if self._listeners or GLOBAL_LISTENERS:
                    emit(self._listeners, TimeoutOverran(self.name, when - now, elapsed))
            return result

        return run

    def _run_in_thread(
        self,
        fn: Any,
        args: Any,
        kwargs: Any,
        inner: SyncLink | None,
        budget: float,
        by_deadline: bool,
    ) -> Any:
        context = contextvars.copy_context()
        if inner is None:
            future = _thread_pool().submit(context.run, fn, *args, **kwargs)
        else:
            future = _thread_pool().submit(context.run, inner, fn, args, kwargs)
        try:
            return future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            future.cancel()  # drops it if it never started; a running thread runs on
            raise self._expired(budget, by_deadline) from None
