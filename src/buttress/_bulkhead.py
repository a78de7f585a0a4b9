"""Bulkhead: bound how many calls run at once, with a bounded, time-limited queue."""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import _validate as v
from ._clock import Clock, resolve
from ._deadline import get_current
from ._errors import BulkheadFullError, DeadlineExceededError
from ._events import GLOBAL_LISTENERS, BulkheadQueued, CallRejected, Listener, emit
from ._policy import AsyncLink, Policy, SyncLink, next_index

__all__ = ["Bulkhead", "BulkheadStats"]

_WAITING = 0
_GRANTED = 1
_ABANDONED = 2


@dataclass(frozen=True, slots=True)
class BulkheadStats:
    """A snapshot of a :class:`Bulkhead`: slots in use, queue length, counters."""

    name: str
    max_concurrent: int
    max_queued: int
    active: int
    queued: int
    calls: int
    rejections: int


class _Waiter:
    """A queued call. It is granted under the bulkhead lock and woken after it; async and
    thread waiters differ only in how they are woken."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = _WAITING

    def wake(self) -> None:
        raise NotImplementedError


class _AsyncWaiter(_Waiter):
    __slots__ = ("future", "loop", "thread")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[bool] = self.loop.create_future()
        self.thread = threading.get_ident()

    def wake(self) -> None:
        if threading.get_ident() == self.thread:
            _resolve(self.future, True)
        else:  # released from a sync caller in another thread
            self.loop.call_soon_threadsafe(_resolve, self.future, True)


class _ThreadWaiter(_Waiter):
    __slots__ = ("lock",)

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.lock.acquire()

    def wake(self) -> None:
        self.lock.release()


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class Bulkhead(Policy):
    """Run at most ``max_concurrent`` calls at once; queue at most ``max_queued`` more.

    A call that finds every slot taken waits in a FIFO queue if there is room, for at most
    ``queue_timeout`` seconds and never past the enclosing :func:`~buttress.deadline`;
    otherwise it is rejected at once with :class:`~buttress.BulkheadFullError`. A freed
    slot goes straight to the first waiter, so a burst of new arrivals cannot overtake the
    queue. A waiter that is cancelled leaves the queue (or passes on a slot it was just
    given). Sync and async callers can share one bulkhead: the counts are one, only the
    way of waiting differs (a future for tasks, a lock for threads).

    Args:
        max_concurrent: calls allowed to run at once, ``>= 1``. Default 10.
        max_queued: calls allowed to wait, ``>= 0``. Default 0 (reject at once when full).
        queue_timeout: the longest wait in the queue, seconds, or ``None`` (default) to
            wait as long as the deadline allows (forever without one).
        clock: the clock for async queue timeouts. Default: the system clock.
        name: for events and stats. Default ``"bulkhead-N"``.
        listeners: event listeners (:class:`~buttress.events.BulkheadQueued`,
            :class:`~buttress.events.CallRejected`).

    Raises:
        ConfigError: an argument is out of range.
        BulkheadFullError: (at call time) no slot and no room or time in the queue.
        DeadlineExceededError: (at call time) the deadline ran out while queued.

    Example::

        db = bt.Bulkhead(max_concurrent=20, max_queued=50, queue_timeout=0.25)
        rows = await db.call(conn.fetch, query)
    """

    def __init__(
        self,
        *,
        max_concurrent: int = 10,
        max_queued: int = 0,
        queue_timeout: float | timedelta | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.max_concurrent = v.integer("max_concurrent", max_concurrent, minimum=1)
        self.max_queued = v.integer("max_queued", max_queued, minimum=0)
        self.queue_timeout = v.optional_seconds("queue_timeout", queue_timeout)
        self.clock = resolve(clock)
        self.name = v.name_of(name, "bulkhead", lambda: next_index("bulkhead"))
        self._listeners = v.listeners(listeners)
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._calls = 0
        self._rejections = 0
        self._link()

    def __repr__(self) -> str:
        return (
            f"Bulkhead(max_concurrent={self.max_concurrent}, max_queued={self.max_queued}, "
            f"name={self.name!r})"
        )

    def stats(self) -> BulkheadStats:
        """Slots in use, queue length and counters, read under the lock."""
        with self._lock:
            return BulkheadStats(
                self.name,
                self.max_concurrent,
                self.max_queued,
                self._active,
                len(self._waiters),
                self._calls,
                self._rejections,
            )

    # -- the core: admission, hand-off, abandonment -----------------------------------------

    def _enter(self, make_waiter: type[_Waiter]) -> _Waiter | None:
        """``None``: a slot is ours. A waiter: wait on it. Raises when the queue is full."""
        with self._lock:
            self._calls += 1
            if self._active < self.max_concurrent and not self._waiters:
                self._active += 1
                return None
            budget, by_deadline = self._wait_budget()
            if len(self._waiters) >= self.max_queued:
                why = "no free slot and the queue is full"
            elif budget == 0.0:
                why = "no free slot and no time to wait"
            else:
                waiter = make_waiter()
                self._waiters.append(waiter)
                queued = len(self._waiters)
                why = ""
            if why:
                self._rejections += 1
        if why:
            if budget == 0.0 and by_deadline:
                raise DeadlineExceededError(
                    f"bulkhead {self.name!r}: no free slot and the deadline is spent", timeout=0.0
                )
            raise self._full(why)
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, BulkheadQueued(self.name, queued))
        return waiter

    def _leave(self) -> None:
        """Free our slot, handing it straight to the first live waiter if there is one."""
        granted = None
        with self._lock:
            waiters = self._waiters
            while waiters:
                waiter = waiters.popleft()
                if waiter.state == _WAITING:
                    waiter.state = _GRANTED  # the slot is theirs from here on
                    granted = waiter
                    break
            else:
                self._active -= 1
        # Woken outside the lock: waking a task from another thread writes to the loop's
        # self-pipe. A waiter that timed out meanwhile finds itself GRANTED in _abandon.
        if granted is not None:
            granted.wake()

    def _abandon(self, waiter: _Waiter) -> bool:
        """Stop waiting. ``True`` if the slot was granted meanwhile (the caller owns it)."""
        with self._lock:
            if waiter.state == _GRANTED:
                return True
            waiter.state = _ABANDONED
            try:
                self._waiters.remove(waiter)
            except ValueError:  # pragma: no cover - only granted waiters leave the queue
                pass
            return False

    def _wait_budget(self) -> tuple[float | None, bool]:
        """(seconds we may wait or None for unbounded, whether the deadline binds)."""
        budget = self.queue_timeout
        current = get_current()
        if current is not None:
            left = current[0] - current[1].monotonic()
            left = left if left > 0.0 else 0.0
            if budget is None or left < budget:
                return left, True
        return budget, False

    def _full(self, why: str) -> BulkheadFullError:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, CallRejected(self.name, "bulkhead", None))
        return BulkheadFullError(f"bulkhead {self.name!r}: {why}", policy=self.name)

    def _timed_out(self, by_deadline: bool) -> Exception:
        with self._lock:
            self._rejections += 1
        if by_deadline:
            return DeadlineExceededError(
                f"bulkhead {self.name!r}: deadline exceeded while queued", timeout=0.0
            )
        return self._full(f"waited {self.queue_timeout} s in the queue")

    # -- runners ----------------------------------------------------------------------------

    async def _wait_async(self, waiter: _AsyncWaiter) -> None:
        budget, by_deadline = self._wait_budget()
        handle = None
        if budget is not None:
            handle = self.clock.call_later(budget, lambda: _resolve(waiter.future, False))
        try:
            granted = await waiter.future
        except BaseException:
            if self._abandon(waiter):
                self._leave()  # pass on the slot we were handed while being cancelled
            raise
        finally:
            if handle is not None:
                handle.cancel()
        if not granted and not self._abandon(waiter):
            raise self._timed_out(by_deadline)

    def _wait_sync(self, waiter: _ThreadWaiter) -> None:
        budget, by_deadline = self._wait_budget()
        try:
            acquired = waiter.lock.acquire(timeout=-1 if budget is None else budget)
        except BaseException:
            if self._abandon(waiter):
                self._leave()
            raise
        if not acquired and not self._abandon(waiter):
            raise self._timed_out(by_deadline)

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        enter, leave, wait = self._enter, self._leave, self._wait_async

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            waiter = enter(_AsyncWaiter)
            if waiter is not None:
                await wait(waiter)  # type: ignore[arg-type]
            try:
                return await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            finally:
                leave()

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        enter, leave, wait = self._enter, self._leave, self._wait_sync

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            waiter = enter(_ThreadWaiter)
            if waiter is not None:
                wait(waiter)  # type: ignore[arg-type]
            try:
                return fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            finally:
                leave()

        return run
