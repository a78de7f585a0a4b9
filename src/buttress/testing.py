"""Helpers for testing code that uses buttress (and for buttress's own tests).

:class:`FakeClock` is a :class:`~buttress.Clock` whose time moves only when told to, so
retries, breakers, timeouts and hedges can be tested in microseconds, deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable
from datetime import timedelta

from . import _validate as v

__all__ = ["FakeClock"]


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A virtual clock for tests: sleeps return at once, having moved time forward.

    Args:
        start: the initial reading of :meth:`monotonic`. Default ``0.0``.
        autojump: when ``True`` (the default), async sleeps and timers advance time by
            themselves as soon as the event loop has nothing else to run, the way a real
            clock would appear to a program that only waits. With ``False`` time moves only
            through :meth:`advance`, for tests that want to step it by hand.

    Behaviour:
        * ``monotonic()`` returns the virtual time.
        * ``advance(seconds)`` moves time forward, running every timer that falls due, in
          order, each at its own due time.
        * ``sleep_sync(seconds)`` advances time at once (there is nothing to wait for).
        * ``await sleep(seconds)`` waits until virtual time reaches ``now + seconds``;
          with ``autojump`` that happens as soon as every task is waiting, so two tasks
          that sleep 1 s concurrently both wake at ``t = 1``, not ``t = 2``.
        * ``call_later(delay, callback)`` schedules a callback in virtual time.

    Autojump looks at whether asyncio's default event loop has ready callbacks. Two
    consequences: a test that busy-waits with ``await asyncio.sleep(0)`` keeps the loop
    busy, so virtual time never moves (wait on the clock instead: ``await
    clock.sleep(0.5)``); and mixed with real I/O, time jumps while a socket is pending
    (use ``autojump=False`` and :meth:`advance` there).

    Raises:
        ConfigError: a negative duration or a non-numeric start.

    Example::

        clock = FakeClock()
        retry = bt.Retry(attempts=3, on=ConnectionError, clock=clock)
        ...
        assert clock.monotonic() == pytest.approx(0.3)
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = v.number("start", start, low=-1e300)
        self._autojump = bool(autojump)
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._jumping: set[asyncio.AbstractEventLoop] = set()

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, pending_timers={self.pending_timers})"

    # -- reading ----------------------------------------------------------------------------

    def monotonic(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    @property
    def pending_timers(self) -> int:
        """How many scheduled, not cancelled timers are waiting (sleeps included)."""
        with self._lock:
            return sum(1 for _, _, t in self._timers if not t.cancelled)

    # -- moving time ------------------------------------------------------------------------

    def advance(self, seconds: float | timedelta) -> None:
        """Move time forward by ``seconds``, firing due timers in order at their due times."""
        delta = v.seconds("seconds", seconds)
        self._advance_to(self._now + delta)

    def _advance_to(self, target: float) -> None:
        while True:
            with self._lock:
                timers = self._timers
                while timers and timers[0][2].cancelled:
                    heapq.heappop(timers)
                if not timers or timers[0][0] > target:
                    if target > self._now:
                        self._now = target
                    return
                when, _, timer = heapq.heappop(timers)
                if when > self._now:
                    self._now = when
            # Never run user callbacks while holding the lock.
            timer.callback()

    def _jump_to_next(self) -> bool:
        """Advance to the earliest pending timer and fire every timer due then."""
        with self._lock:
            timers = self._timers
            while timers and timers[0][2].cancelled:
                heapq.heappop(timers)
            if not timers:
                return False
            target = timers[0][0]
        self._advance_to(target)
        return True

    # -- sleeping and timers ----------------------------------------------------------------

    def sleep_sync(self, seconds: float) -> None:
        """Advance time by ``seconds`` at once, firing due timers."""
        self.advance(seconds)

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time reaches ``now + seconds`` (see the class docs)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        handle = self.call_later(seconds, wake)
        try:
            await future
        finally:
            handle.cancel()

    def call_later(self, delay: float, callback: Callable[[], object]) -> _FakeTimer:
        """Run ``callback`` once virtual time has moved ``delay`` seconds on."""
        timer = _FakeTimer(self._now + max(0.0, delay), callback)
        with self._lock:
            heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        if self._autojump:
            self._ensure_jumper()
        return timer

    def _ensure_jumper(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # sync code: time moves through advance()/sleep_sync()
        if loop not in self._jumping:
            self._jumping.add(loop)
            loop.call_soon(self._jump, loop)

    def _jump(self, loop: asyncio.AbstractEventLoop) -> None:
        # Jump only when the loop is idle: nothing is ready but jumpers (of this or other
        # fake clocks, which would otherwise wait for each other forever). asyncio's
        # default loops keep ready callbacks in ``_ready``; without it, jump every turn.
        ready = getattr(loop, "_ready", None)
        if ready and not all(_is_jumper(handle) for handle in ready):
            loop.call_soon(self._jump, loop)
            return
        if self._jump_to_next():
            loop.call_soon(self._jump, loop)
        else:
            self._jumping.discard(loop)


def _is_jumper(handle: object) -> bool:
    callback = getattr(handle, "_callback", None)
    return getattr(callback, "__func__", None) is FakeClock._jump
