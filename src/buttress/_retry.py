"""Retry: run a call again after a retryable failure, with backoff, budget and deadline."""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import _validate as v
from ._backoff import Backoff
from ._budget import RetryBudget
from ._clock import Clock, resolve
from ._deadline import get_current
from ._errors import DeadlineExceededError
from ._events import GLOBAL_LISTENERS, Listener, RetryGaveUp, RetryScheduled, emit, logger
from ._policy import AsyncLink, Policy, SyncLink, next_index

__all__ = ["Retry", "RetryStats"]

# Never retried, whatever ``on`` says: cancellation and interpreter exits must go through,
# and a spent deadline cannot be fixed by trying again.
_NEVER = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    DeadlineExceededError,
)

ExceptionFilter = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)


@dataclass(frozen=True, slots=True)
class RetryStats:
    """A snapshot of a :class:`Retry`'s counters.

    ``calls`` counts logical calls, ``retries`` the extra attempts scheduled,
    ``gave_up`` the calls that ended on a retryable failure it did not retry.
    """

    name: str
    calls: int
    retries: int
    gave_up: int


class _Attempts:
    """Per-call state, made on the first failure only (the happy path allocates nothing)."""

    __slots__ = ("attempt", "previous", "started")

    def __init__(self, started: float) -> None:
        self.attempt = 0
        self.previous = 0.0
        self.started = started


def _hint_seconds(value: object) -> float | None:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class Retry(Policy):
    """Retry a call that fails in a way worth retrying.

    The call runs; if it raises an exception matched by ``on`` (or returns a result for
    which ``on_result`` is true), the policy waits per ``backoff`` and runs it again, up to
    ``attempts`` attempts in total. It stops early — and hands the last outcome to the
    caller — when the shared ``budget`` is empty, when the wait would not fit in the
    enclosing :func:`~buttress.deadline` or in ``total``, or when the failure asks for a
    longer wait than ``max_retry_after``.

    When it gives up after an exception, **the last original exception is raised** (no
    wrapper); after a rejected result, that result is returned.

    Server hints: an exception or result with a ``retry_after`` attribute (seconds or a
    ``timedelta``) — for example :class:`~buttress.CircuitOpenError`,
    :class:`~buttress.RateLimitedError`, or your own exception carrying an HTTP
    ``Retry-After`` — makes the wait ``max(backoff, retry_after)``. A hint longer than
    ``max_retry_after`` (or than the remaining deadline) ends the retries at once: waiting
    would outlive the caller's patience.

    Never retried, whatever ``on`` says: ``asyncio.CancelledError``, ``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit`` and :class:`~buttress.DeadlineExceededError`.

    Args:
        attempts: total attempts including the first, ``>= 1``. Default 3.
        on: what to retry (required, there is no catch-all default): an exception class, a
            tuple of them, or a predicate ``(exc) -> bool``.
        on_result: optional predicate ``(result) -> bool``; true means retry.
        backoff: a :class:`~buttress.Backoff` or a number of seconds (constant). Default
            ``Backoff.exponential(base=0.1, cap=10.0, jitter="full")``.
        budget: a :class:`~buttress.RetryBudget` shared with other policies, or ``None``.
        total: a limit in seconds on the whole call, sleeps included, or ``None``.
        max_retry_after: the longest server-requested wait to honour, seconds. Default 60.
        clock: the clock for sleeps and time limits. Default: the system clock.
        random: the ``random.Random`` for jitter. Default: a private unseeded instance.
        name: for events and stats. Default ``"retry-N"``.
        listeners: event listeners (:class:`~buttress.events.RetryScheduled`,
            :class:`~buttress.events.RetryGaveUp`).

    Raises:
        ConfigError: an argument is out of range or of the wrong type.

    Example::

        retry = bt.Retry(attempts=4, on=(ConnectionError, bt.TimeoutError),
                         backoff=bt.Backoff.exponential(base=0.05, cap=1.0),
                         budget=bt.RetryBudget(ratio=0.1))

        @retry
        async def fetch(url: str) -> bytes: ...
    """

    def __init__(
        self,
        *,
        attempts: int = 3,
        on: ExceptionFilter,
        on_result: Callable[[Any], bool] | None = None,
        backoff: Backoff | float | timedelta | None = None,
        budget: RetryBudget | None = None,
        total: float | timedelta | None = None,
        max_retry_after: float | timedelta = 60.0,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.attempts = v.integer("attempts", attempts, minimum=1)
        if isinstance(on, type | tuple | list):
            types = v.exception_types("on", on)
            self.on: ExceptionFilter = types
            self._matches: Callable[[BaseException], bool] = lambda exc: isinstance(exc, types)
        elif callable(on):
            self.on = on
            self._matches = on
        else:
            raise v.fail(
                "on", "an exception class, a tuple of them, or a predicate (exc) -> bool", on
            )
        self.on_result = v.optional_callable("on_result", on_result)
        if backoff is None:
            backoff = Backoff.exponential()
        elif not isinstance(backoff, Backoff):
            backoff = Backoff.constant(v.seconds("backoff", backoff))
        self.backoff: Backoff = backoff
        if budget is not None and not isinstance(budget, RetryBudget):
            raise v.fail("budget", "a RetryBudget or None", budget)
        self.budget = budget
        self.total = v.optional_seconds("total", total, allow_zero=False)
        self.max_retry_after = v.seconds("max_retry_after", max_retry_after)
        self.clock = resolve(clock)
        self.random = v.rng(random)
        self.name = v.name_of(name, "retry", lambda: next_index("retry"))
        self._listeners = v.listeners(listeners)
        self._calls = 0
        self._retries = 0
        self._gave_up = 0
        self._link()

    def __repr__(self) -> str:
        return f"Retry(attempts={self.attempts}, on={self.on!r}, name={self.name!r})"

    def stats(self) -> RetryStats:
        """Counters since construction."""
        return RetryStats(self.name, self._calls, self._retries, self._gave_up)

    # -- the decision core (pure: no sleeping, no I/O) ---------------------------------------

    def _start(self, started: float) -> _Attempts:
        return _Attempts(started)

    def _after_exception(self, state: _Attempts, exc: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to re-raise ``exc``."""
        if isinstance(exc, _NEVER):
            return None
        try:
            retryable = self._matches(exc)
        except Exception:
            logger.exception("retry predicate %r failed; not retrying", self.on)
            return None
        if not retryable:
            return None
        return self._decide(state, exc, None, getattr(exc, "retry_after", None))

    def _after_result(self, state: _Attempts, result: object) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to return ``result``."""
        return self._decide(state, None, result, getattr(result, "retry_after", None))

    def _decide(
        self, state: _Attempts, exc: BaseException | None, result: object, hint: object
    ) -> float | None:
        state.attempt += 1
        attempt = state.attempt
        if attempt >= self.attempts:
            self._give_up(state, "attempts", exc, result)
            return None
        delay = self.backoff.compute(attempt, state.previous, self.random)
        server = None if hint is None else _hint_seconds(hint)
        if server is not None:
            if server > self.max_retry_after:
                self._give_up(state, "retry_after", exc, result)
                return None
            delay = max(delay, server)
        if self.total is not None:
            elapsed = self.clock.monotonic() - state.started
            if elapsed + delay >= self.total:
                self._give_up(state, "total", exc, result)
                return None
        current = get_current()
        if current is not None and current[0] - current[1].monotonic() <= delay:
            self._give_up(state, "deadline", exc, result)
            return None
        # The budget is asked last, so a token is only spent on a retry that will happen.
        if self.budget is not None and not self.budget.try_withdraw():
            self._give_up(state, "budget", exc, result)
            return None
        state.previous = delay
        self._retries += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, RetryScheduled(self.name, attempt, delay, exc, result))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: attempt %d failed (%r); retrying in %.3f s",
                self.name,
                attempt,
                exc if exc is not None else result,
                delay,
            )
        return delay

    def _give_up(
        self, state: _Attempts, reason: str, exc: BaseException | None, result: object
    ) -> None:
        self._gave_up += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, RetryGaveUp(self.name, state.attempt, reason, exc, result))

    # -- runners: the same few lines, once awaiting and once not ------------------------------

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        on_result = self.on_result
        budget = self.budget
        sleep = self.clock.sleep
        now = self.clock.monotonic
        timed = self.total is not None
        start, after_exception = self._start, self._after_exception
        after_result = self._after_result

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            self._calls += 1
            if budget is not None:
                budget.deposit()
            started = now() if timed else 0.0
            state = None
            while True:
                try:
                    result = await (
                        fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
                    )
                except BaseException as exc:
                    if state is None:
                        state = start(started)
                    delay = after_exception(state, exc)
                    if delay is None:
                        raise
                else:
                    if on_result is None or not on_result(result):
                        return result
                    if state is None:
                        state = start(started)
                    delay = after_result(state, result)
                    if delay is None:
                        return result
                await sleep(delay)

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        on_result = self.on_result
        budget = self.budget
        sleep = self.clock.sleep_sync
        now = self.clock.monotonic
        timed = self.total is not None
        start, after_exception = self._start, self._after_exception
        after_result = self._after_result

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            self._calls += 1
            if budget is not None:
                budget.deposit()
            started = now() if timed else 0.0
            state = None
            while True:
                try:
                    result = fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
                except BaseException as exc:
                    if state is None:
                        state = start(started)
                    delay = after_exception(state, exc)
                    if delay is None:
                        raise
                else:
                    if on_result is None or not on_result(result):
                        return result
                    if state is None:
                        state = start(started)
                    delay = after_result(state, result)
                    if delay is None:
                        return result
                if delay > 0.0:  # time.sleep(0) is a system call; skip it
                    sleep(delay)

        return run
