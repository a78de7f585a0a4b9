"""AdaptiveThrottle: client-side throttling from the Google SRE book ("Handling Overload")."""

from __future__ import annotations

import asyncio
import random as _random
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .. import _validate as v
from .._clock import Clock, resolve
from .._errors import OverloadedError, RateLimitedError
from .._events import GLOBAL_LISTENERS, CallRejected, Listener, emit
from .._policy import AsyncLink, Policy, SyncLink, next_index

__all__ = ["AdaptiveThrottle", "AdaptiveThrottleStats"]

_THROTTLED = "adaptive throttle %r rejected the call locally (p=%.3f)"

# A cancelled call got no answer: it is taken out of the counts altogether.
_NEUTRAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class AdaptiveThrottleStats:
    """A snapshot of an :class:`AdaptiveThrottle`.

    ``requests`` and ``accepts`` are the counts in the current window (locally rejected
    requests included in ``requests``), ``probability`` the rejection probability they
    give now. ``calls`` counts every call since construction and ``rejections`` the ones
    rejected locally.
    """

    name: str
    k: float
    requests: int
    accepts: int
    probability: float
    calls: int
    rejections: int


_EMPTY = -(2**62)
"""The slot of a bucket never used (far before any clock reading)."""


class _Window:
    """Requests and accepts per bucket over a sliding window of ``n`` fixed-width buckets.

    A bucket remembers which slot of time (``int(now // width)``) it holds, so a request
    taken back after its bucket was reused is simply not found.
    """

    __slots__ = ("accepts", "n", "requests", "slots", "width")

    def __init__(self, seconds: float, buckets: int) -> None:
        self.n = buckets
        self.width = seconds / buckets
        self.slots = [_EMPTY] * buckets
        self.requests = [0] * buckets
        self.accepts = [0] * buckets

    def _bucket(self, now: float) -> tuple[int, int]:
        slot = int(now // self.width)
        index = slot % self.n
        if self.slots[index] != slot:
            self.slots[index] = slot
            self.requests[index] = 0
            self.accepts[index] = 0
        return slot, index

    def totals(self, now: float) -> tuple[int, int]:
        """(requests, accepts) in the buckets of the last ``n`` slots."""
        current = int(now // self.width)
        requests = accepts = 0
        for index, slot in enumerate(self.slots):
            if current - self.n < slot <= current:
                requests += self.requests[index]
                accepts += self.accepts[index]
        return requests, accepts

    def add_request(self, now: float) -> int:
        slot, index = self._bucket(now)
        self.requests[index] += 1
        return slot

    def add_accept(self, now: float) -> None:
        _, index = self._bucket(now)
        self.accepts[index] += 1

    def remove_request(self, slot: int) -> None:
        index = slot % self.n
        if self.slots[index] == slot and self.requests[index] > 0:
            self.requests[index] -= 1


class AdaptiveThrottle(Policy):
    """Reject calls locally, at random, in proportion to how often the backend refuses.

    The client-side throttle of Google's *Site Reliability Engineering* book (chapter
    "Handling Overload"). Over a sliding ``window`` the throttle counts **requests** (every
    call, the locally rejected ones included) and **accepts** (calls the backend did not
    refuse). Before each call it rejects it locally, with
    :class:`~buttress.OverloadedError` and without sending it, with probability::

        p = max(0, (requests - k * accepts) / (requests + 1))

    While the backend accepts more than one request in ``k`` this is 0 and nothing
    changes; once it refuses more, the client sheds the excess itself, cheaply, instead of
    sending requests the backend would spend resources refusing. When the backend
    recovers, the refusals age out of the window and traffic comes back: each accept
    offsets ``k`` requests. ``k = 2`` (the book's value) lets through about twice what the
    backend accepts; a lower ``k`` is more aggressive, a higher one lets more probes
    through.

    **What counts.** A call that raises one of ``on`` (default: an
    :class:`~buttress.OverloadedError` or :class:`~buttress.RateLimitedError`, the
    backend's "too busy") was refused. Any other outcome — a result, or another
    exception — was accepted: the backend took the request. A cancelled call (or one
    interrupted) got no answer and is taken out of the counts. Requests are counted when
    the call starts, accepts when it ends.

    The window is kept as ``buckets`` fixed slices of ``window / buckets`` seconds that
    expire whole. Until the window holds ``min_requests`` requests nothing is rejected.
    Sync and async callers share the counts; a short lock guards them, never held while
    the call runs.

    Args:
        k: the accepts multiplier, ``>= 1``. Default 2.0.
        window: seconds (or ``timedelta``) of history, ``> 0``. Default 120.
        buckets: slices of the window, in [1, 1000]. Default 12 (10 s each by default).
        on: exceptions meaning the backend refused the request. Default
            ``(bt.OverloadedError, bt.RateLimitedError)``.
        min_requests: requests the window must hold before any local rejection, ``>= 0``.
            Default 0.
        clock: the clock. Default: the system clock.
        random: the ``random.Random`` drawing the rejections; seed it for reproducible
            runs. Default: a private unseeded one.
        name: for events, stats and the rejection message. Default ``"throttle-N"``.
        listeners: event listeners (:class:`~buttress.events.CallRejected`).

    Raises:
        ConfigError: an argument is out of range.
        OverloadedError: (at call time) the call was rejected locally; it was not sent.

    Example::

        throttle = bt.AdaptiveThrottle(k=2.0, on=(bt.OverloadedError, BackendBusy))
        try:
            reply = await throttle.call(stub.Query, request)
        except bt.OverloadedError:
            reply = None   # refused by the backend, or locally on its behalf
    """

    def __init__(
        self,
        *,
        k: float = 2.0,
        window: float | timedelta = 120.0,
        buckets: int = 12,
        on: ExceptionTypes = (OverloadedError, RateLimitedError),
        min_requests: int = 0,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.k = v.number("k", k, low=1.0)
        self.window = v.seconds("window", window, allow_zero=False)
        self.buckets = v.integer("buckets", buckets, minimum=1, maximum=1000)
        self.on = v.exception_types("on", on)
        self.min_requests = v.integer("min_requests", min_requests, minimum=0)
        self.clock = resolve(clock)
        self.random = v.rng(random)
        self.name = v.name_of(name, "throttle", lambda: next_index("throttle"))
        self._listeners = v.listeners(listeners)
        self._lock = threading.Lock()
        self._window = _Window(self.window, self.buckets)
        self._calls = 0
        self._rejections = 0
        self._link()

    def __repr__(self) -> str:
        return f"AdaptiveThrottle(k={self.k}, window={self.window}, name={self.name!r})"

    # -- reading ----------------------------------------------------------------------------

    def _probability(self, requests: int, accepts: int) -> float:
        if requests < self.min_requests:
            return 0.0
        p = (requests - self.k * accepts) / (requests + 1)
        return p if p > 0.0 else 0.0

    @property
    def probability(self) -> float:
        """The probability that a call made now is rejected locally."""
        with self._lock:
            return self._probability(*self._window.totals(self.clock.monotonic()))

    def stats(self) -> AdaptiveThrottleStats:
        """A consistent snapshot of the window and the counters."""
        with self._lock:
            requests, accepts = self._window.totals(self.clock.monotonic())
            return AdaptiveThrottleStats(
                name=self.name,
                k=self.k,
                requests=requests,
                accepts=accepts,
                probability=self._probability(requests, accepts),
                calls=self._calls,
                rejections=self._rejections,
            )

    # -- the core ---------------------------------------------------------------------------

    def _admit(self) -> int:
        """Count a request; its bucket's slot if it may go, else raise."""
        with self._lock:
            now = self.clock.monotonic()
            window = self._window
            p = self._probability(*window.totals(now))
            slot = window.add_request(now)
            self._calls += 1
            # Draw only when it can matter: with p == 0 the sequence of draws is untouched.
            if p <= 0.0 or self.random.random() >= p:
                return slot
            self._rejections += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, CallRejected(self.name, "adaptive_throttle", None))
        raise OverloadedError._lazy(self.name, None, _THROTTLED, (self.name, p))

    def _settle(self, slot: int, exc: BaseException | None) -> None:
        """Record how the call admitted in ``slot`` ended."""
        if exc is not None:
            if isinstance(exc, _NEUTRAL):
                with self._lock:
                    self._window.remove_request(slot)
                return
            if isinstance(exc, self.on):
                return  # refused: the request is counted already, and no accept is
        with self._lock:
            self._window.add_accept(self.clock.monotonic())

    # -- runners ----------------------------------------------------------------------------

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        admit, settle = self._admit, self._settle

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            slot = admit()
            try:
                result = await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            except BaseException as exc:
                settle(slot, exc)
                raise
            settle(slot, None)
            return result

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        admit, settle = self._admit, self._settle

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            slot = admit()
            try:
                result = fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            except BaseException as exc:
                settle(slot, exc)
                raise
            settle(slot, None)
            return result

        return run
