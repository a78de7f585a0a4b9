"""Time, as every policy sees it.

Every time-based object takes ``clock=``; the default is :data:`SYSTEM_CLOCK` (the
monotonic clock, ``asyncio.sleep``, ``time.sleep``). Tests pass
:class:`buttress.testing.FakeClock`, whose time only moves when told to (or when the
event loop is idle), so timing logic is tested without sleeping for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "TimerHandle"]


@runtime_checkable
class TimerHandle(Protocol):
    """What :meth:`Clock.call_later` returns: something that can be cancelled."""

    def cancel(self) -> None:
        """Stop the callback from running; a no-op once it ran."""


@runtime_checkable
class Clock(Protocol):
    """The source of time for a policy.

    ``monotonic()`` returns seconds from an arbitrary origin and never goes back.
    ``sleep``/``sleep_sync`` wait; ``call_later`` runs a callback after a delay on the
    running event loop (it is only called from async code).

    Example::

        class MyClock:
            def monotonic(self) -> float: ...
            async def sleep(self, seconds: float) -> None: ...
            def sleep_sync(self, seconds: float) -> None: ...
            def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle: ...
    """

    def monotonic(self) -> float:
        """Seconds since an arbitrary origin; never decreases."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` without blocking the event loop."""
        ...

    def sleep_sync(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds on the running event loop."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`asyncio.sleep`, :func:`time.sleep`.

    Use the shared instance :data:`SYSTEM_CLOCK`; every policy defaults to it.
    """

    __slots__ = ()

    # Plain functions as class attributes: reading ``clock.monotonic`` gives the C function
    # itself, with no bound-method overhead on hot paths.
    monotonic = staticmethod(time.monotonic)
    sleep_sync = staticmethod(time.sleep)

    async def sleep(self, seconds: float) -> None:
        """Wait on the running loop (``asyncio.sleep``)."""
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """``loop.call_later`` on the running loop (whose time base is ``time.monotonic``)."""
        return asyncio.get_running_loop().call_later(delay, callback)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
"""The process-wide default clock."""


def resolve(clock: Clock | None) -> Clock:
    """``clock`` or the system clock; rejects objects that are not clocks."""
    if clock is None:
        return SYSTEM_CLOCK
    if not isinstance(clock, Clock):
        from ._validate import fail

        raise fail(
            "clock",
            "a Clock (monotonic, sleep, sleep_sync, call_later) or None",
            clock,
        )
    return clock
