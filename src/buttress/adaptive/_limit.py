"""AdaptiveLimit: a concurrency limit learnt from latency and drops; the excess is shed."""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
import threading
from dataclasses import dataclass
from typing import Any

from .. import _validate as v
from .._clock import Clock, resolve
from .._errors import (
    BulkheadFullError,
    CircuitOpenError,
    OverloadedError,
    RateLimitedError,
)
from .._errors import TimeoutError as _TimeoutError
from .._events import GLOBAL_LISTENERS, CallRejected, LimitChanged, Listener, emit
from .._policy import AsyncLink, Policy, SyncLink, next_index
from ._algorithms import LimitAlgorithm, LimitState, Vegas

__all__ = ["AdaptiveLimit", "AdaptiveLimitStats"]

logger = logging.getLogger("buttress")

_SHED = "adaptive limit %r is at its limit of %d calls in flight"

# Outcomes that say nothing about the dependency: the slot is released, no sample is taken.
_NEUTRAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class AdaptiveLimitStats:
    """A snapshot of an :class:`AdaptiveLimit`.

    ``limit`` is the current integer limit and ``estimate`` the algorithm's fractional
    value behind it; ``inflight`` the calls running now. Counters since construction:
    ``admitted`` calls let through, ``rejections`` calls shed, ``samples`` completed calls
    fed to the algorithm (``drops`` of them counted as drops), ``ignored`` calls that
    ended without a sample (cancelled, or ``ignore_on``). ``last_rtt`` is the latency of
    the last sample, seconds (``None`` before the first).
    """

    name: str
    limit: int
    estimate: float
    inflight: int
    admitted: int
    rejections: int
    samples: int
    drops: int
    ignored: int
    last_rtt: float | None


class AdaptiveLimit(Policy):
    """Shed load: admit a call while fewer than ``limit`` run, and learn the limit.

    A call is admitted when the calls in flight are fewer than the current limit; otherwise
    it is rejected at once, without running, with :class:`~buttress.OverloadedError`
    (``retry_after=None``: a slot frees when any running call ends). Each admitted call
    that completes is a **sample** for the ``algorithm``: its latency, measured on
    ``clock`` from admission to completion, the number of calls in flight when it was
    admitted (itself included), and whether it was a **drop** — it raised one of
    ``drop_on``. From the samples the algorithm moves the limit: up while latency stays
    near its no-load value, down when queueing makes it rise or calls are dropped.

    * :class:`~buttress.Vegas` (default): estimates the queue from the latency above the
      lowest (no-load) latency and keeps it between ``alpha`` and ``beta`` calls; holds
      the limit down under sustained overload.
    * :class:`~buttress.Gradient2`: compares the latency with its long-term average;
      tolerant of noisy latencies and quick to react to a rise, but under sustained
      overload the average catches up and the limit creeps back up.
    * :class:`~buttress.AIMD`: +1 while the limit is in use, times ``backoff_ratio`` on a
      drop or a call slower than its ``timeout``; ignores latency below that.

    The limit stays within ``[min_limit, max_limit]``. A call that is cancelled (or
    interrupted), or raises one of ``ignore_on``, releases its slot without a sample; any
    other exception is an ordinary sample (its latency counts). ``drop_on`` is checked
    first. By default ``ignore_on`` holds the rejections that say nothing about how busy
    the dependency is — an open breaker, a full bulkhead, a rate limit — and whose
    near-zero latency would otherwise pass for a very fast call. Put other fast failures
    (a validation error answered at once) there too. Sync and async callers share one
    limiter: admission and the algorithm's update take a short internal lock, never held
    while the call runs.

    Use it client-side (a pipeline policy around calls to a dependency, to fail fast
    instead of queueing on it) or server-side
    (:class:`~buttress.integrations.asgi.LoadShedMiddleware`, to answer 503 instead of
    queueing requests the service cannot serve in time).

    Args:
        algorithm: a :class:`~buttress.Gradient2`, :class:`~buttress.Vegas` or
            :class:`~buttress.AIMD` (or any :class:`~buttress.adaptive.LimitAlgorithm`).
            Default ``Vegas()``, as in Netflix's limiters.
        initial_limit: the limit before any sample, in ``[min_limit, max_limit]``.
            Default 20.
        min_limit: the lowest limit, ``>= 1``. Default 1.
        max_limit: the highest limit, ``>= min_limit``. Default 200.
        drop_on: exceptions that count as drops. Default
            ``(bt.TimeoutError, bt.OverloadedError)``: a timed-out call and a dependency
            that answered "overloaded" (``bt.DeadlineExceededError`` is a
            ``bt.TimeoutError``).
        ignore_on: exceptions after which no sample is taken (unless they match
            ``drop_on``). Default ``(bt.CircuitOpenError, bt.BulkheadFullError,
            bt.RateLimitedError)``; pass ``()`` to sample them.
        clock: the clock latencies are measured on. Default: the system clock.
        random: the ``random.Random`` of algorithms that draw (Vegas's probe jitter).
        name: for events, stats and the rejection message. Default ``"adaptive-limit-N"``.
        listeners: event listeners (:class:`~buttress.events.LimitChanged`,
            :class:`~buttress.events.CallRejected`).

    Raises:
        ConfigError: an argument is out of range or of the wrong type.
        OverloadedError: (at call time) the limit is reached; the call did not run.

    Example::

        limiter = bt.AdaptiveLimit(algorithm=bt.Vegas(), initial_limit=10, max_limit=100)
        try:
            answer = await limiter.call(client.get, url)
        except bt.OverloadedError:
            answer = None   # shed: serve something cheaper, or tell the caller to back off
    """

    def __init__(
        self,
        *,
        algorithm: LimitAlgorithm | None = None,
        initial_limit: int = 20,
        min_limit: int = 1,
        max_limit: int = 200,
        drop_on: ExceptionTypes = (_TimeoutError, OverloadedError),
        ignore_on: ExceptionTypes = (CircuitOpenError, BulkheadFullError, RateLimitedError),
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        if algorithm is None:
            algorithm = Vegas()
        elif not isinstance(algorithm, LimitAlgorithm):
            raise v.fail("algorithm", "a Gradient2, Vegas, AIMD or other LimitAlgorithm", algorithm)
        self.algorithm = algorithm
        self.min_limit = v.integer("min_limit", min_limit, minimum=1)
        self.max_limit = v.integer("max_limit", max_limit, minimum=self.min_limit)
        self.initial_limit = v.integer(
            "initial_limit", initial_limit, minimum=self.min_limit, maximum=self.max_limit
        )
        self.drop_on = v.exception_types("drop_on", drop_on)
        self.ignore_on = v.exception_types("ignore_on", ignore_on)
        self.clock = resolve(clock)
        self.random = v.rng(random)
        self.name = v.name_of(name, "adaptive-limit", lambda: next_index("adaptive-limit"))
        self._listeners = v.listeners(listeners)
        state = algorithm.start(
            initial_limit=self.initial_limit,
            min_limit=self.min_limit,
            max_limit=self.max_limit,
            random=self.random,
        )
        if not isinstance(state, LimitState):
            raise v.fail("algorithm", "an algorithm whose start() returns a LimitState", algorithm)
        self._state: LimitState = state
        self._lock = threading.Lock()
        self._limit = self.initial_limit
        self._estimate = float(self.initial_limit)
        self._inflight = 0
        self._admitted = self._rejections = self._samples = self._drops = self._ignored = 0
        self._last_rtt: float | None = None
        self._link()

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimit(algorithm={self.algorithm!r}, limit={self._limit}, name={self.name!r})"
        )

    # -- reading ----------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The current limit: calls admitted at once."""
        return self._limit

    @property
    def inflight(self) -> int:
        """The calls running now."""
        return self._inflight

    def stats(self) -> AdaptiveLimitStats:
        """A consistent snapshot, read under the lock."""
        with self._lock:
            return AdaptiveLimitStats(
                name=self.name,
                limit=self._limit,
                estimate=self._estimate,
                inflight=self._inflight,
                admitted=self._admitted,
                rejections=self._rejections,
                samples=self._samples,
                drops=self._drops,
                ignored=self._ignored,
                last_rtt=self._last_rtt,
            )

    # -- the core: admit, sample, release ---------------------------------------------------

    def _admit(self) -> tuple[float, int]:
        """``(start time, calls in flight including this one)``; raises when at the limit."""
        with self._lock:
            inflight = self._inflight
            limit = self._limit
            if inflight < limit:
                inflight += 1
                self._inflight = inflight
                self._admitted += 1
                # Read inside the lock: samples of calls admitted later start no earlier.
                return self.clock.monotonic(), inflight
            self._rejections += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, CallRejected(self.name, "adaptive_limit", None))
        raise OverloadedError._lazy(self.name, None, _SHED, (self.name, limit))

    def _finish(self, started: float, inflight: int, exc: BaseException | None) -> None:
        """Release the slot of a call admitted at ``started``, and feed its sample."""
        dropped = exc is not None and isinstance(exc, self.drop_on)
        if exc is not None and (
            isinstance(exc, _NEUTRAL) or (not dropped and isinstance(exc, self.ignore_on))
        ):
            with self._lock:
                self._inflight -= 1
                self._ignored += 1
            return
        with self._lock:
            now = self.clock.monotonic()
            rtt = now - started
            self._inflight -= 1
            self._samples += 1
            self._drops += dropped
            self._last_rtt = rtt
            old = self._limit
            failure: Exception | None = None
            try:
                estimate = float(self._state.update(rtt, inflight, dropped, now))
                if not math.isfinite(estimate):
                    raise ValueError(f"update() returned {estimate!r}")
            except Exception as error:
                # A custom algorithm's bug must not turn a finished call into a failure:
                # keep the limit, and say so once the lock is released.
                failure, estimate = error, self._estimate
            self._estimate = estimate
            new = int(estimate)
            new = self.min_limit if new < self.min_limit else min(new, self.max_limit)
            self._limit = new
        if failure is not None:
            logger.error(
                "adaptive limit %r: %r failed", self.name, self.algorithm, exc_info=failure
            )
        if new != old and (self._listeners or GLOBAL_LISTENERS):
            emit(self._listeners, LimitChanged(self.name, old, new, rtt, dropped))

    # -- runners ----------------------------------------------------------------------------

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        admit, finish = self._admit, self._finish

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            started, inflight = admit()
            try:
                result = await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            except BaseException as exc:
                finish(started, inflight, exc)
                raise
            finish(started, inflight, None)
            return result

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        admit, finish = self._admit, self._finish

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            started, inflight = admit()
            try:
                result = fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            except BaseException as exc:
                finish(started, inflight, exc)
                raise
            finish(started, inflight, None)
            return result

        return run
