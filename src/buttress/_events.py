"""Events: small frozen records of what a policy decided.

Listeners are plain callables taking one event. Register them on a policy
(``listeners=[...]`` or ``policy.add_listener(fn)``) or for every policy at once with
:func:`add_listener`. With no listener registered, emitting costs one truthiness check:
policies test ``policy._listeners or GLOBAL_LISTENERS`` before building an event.

A listener that raises is logged on the ``buttress`` logger and otherwise ignored: an
observer never changes the outcome of the call it observes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from ._breaker import BreakerState

__all__ = [
    "BreakerStateChanged",
    "BulkheadQueued",
    "CallRejected",
    "Event",
    "FallbackUsed",
    "HedgeLaunched",
    "LimitChanged",
    "Listener",
    "RetryGaveUp",
    "RetryScheduled",
    "StoreFellBack",
    "TimeoutFired",
    "TimeoutOverran",
    "add_listener",
    "remove_listener",
]

logger = logging.getLogger("buttress")

Listener: TypeAlias = Callable[["Event"], Any]
"""A callable that receives each :class:`Event`."""

GLOBAL_LISTENERS: list[Listener] = []
"""Listeners that receive the events of every policy. Mutated in place, never rebound."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event. ``policy`` is the ``name`` of the policy that emitted it."""

    policy: str


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """A retry will run after ``delay`` seconds; ``attempt`` is the attempt that just failed
    (1 for the first call). ``exception`` is what it raised, or ``None`` when its result
    was retried (then ``result`` holds it)."""

    attempt: int
    delay: float
    exception: BaseException | None
    result: object = None


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """A retry policy stopped retrying; the last outcome goes to the caller.

    ``reason`` is one of ``"attempts"``, ``"budget"``, ``"deadline"``, ``"total"``,
    ``"retry_after"`` (the server asked for a longer wait than ``max_retry_after``).
    """

    attempts: int
    reason: str
    exception: BaseException | None
    result: object = None


@dataclass(frozen=True, slots=True)
class BreakerStateChanged(Event):
    """A circuit breaker moved from ``old`` to ``new``; ``reason`` says why."""

    old: BreakerState
    new: BreakerState
    reason: str


@dataclass(frozen=True, slots=True)
class CallRejected(Event):
    """A policy refused a call. ``kind`` names the policy type (``"breaker"``,
    ``"bulkhead"``, ``"ratelimit"``, ...); ``retry_after`` is seconds or ``None``."""

    kind: str
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class TimeoutFired(Event):
    """A timeout cancelled a call after ``seconds``; ``by_deadline`` is ``True`` when the
    enclosing deadline, not the policy's own limit, was the shorter budget."""

    seconds: float
    by_deadline: bool


@dataclass(frozen=True, slots=True)
class TimeoutOverran(Event):
    """A sync call protected by a cooperative :class:`~buttress.Timeout` returned after its
    budget ran out (sync calls cannot be interrupted; see the Timeout docs)."""

    seconds: float
    elapsed: float


@dataclass(frozen=True, slots=True)
class BulkheadQueued(Event):
    """A call waits for a bulkhead slot; ``queued`` is the queue length including it."""

    queued: int


@dataclass(frozen=True, slots=True)
class FallbackUsed(Event):
    """A fallback replaced a failed call; ``exception`` is what the call raised, or
    ``None`` when its result was rejected (then ``result`` holds it)."""

    exception: BaseException | None
    result: object = None


@dataclass(frozen=True, slots=True)
class HedgeLaunched(Event):
    """A hedged call started extra attempt number ``attempt`` (2 = the first hedge) after
    ``delay`` seconds; ``reason`` is ``"delay"`` or ``"failure"``."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class StoreFellBack(Event):
    """A shared store failed (or is being skipped after failing) and the pattern decided
    by its ``on_store_error`` mode instead: ``mode`` is ``"fail_open"``, ``"fail_closed"``
    or ``"local"``; ``error`` is what went wrong."""

    mode: str
    error: BaseException


def emit(local: tuple[Listener, ...], event: Event) -> None:
    """Deliver ``event`` to a policy's listeners, then to the global ones."""
    for listener in local:
        _deliver(listener, event)
    for listener in tuple(GLOBAL_LISTENERS):
        _deliver(listener, event)


def _deliver(listener: Listener, event: Event) -> None:
    try:
        listener(event)
    except Exception:
        logger.exception("buttress event listener %r failed on %r", listener, event)


def add_listener(listener: Listener) -> None:
    """Receive the events of every policy in the process.

    Args:
        listener: a callable taking one :class:`Event`; its return value is ignored and
            an exception it raises is logged, never propagated.

    Raises:
        ConfigError: ``listener`` is not callable.

    Example::

        bt.add_listener(lambda e: print(e))
    """
    if not callable(listener):
        from ._validate import fail

        raise fail("listener", "a callable taking one event", listener)
    GLOBAL_LISTENERS.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop delivering events to a listener added with :func:`add_listener`.

    Raises:
        ConfigError: the listener was not registered.
    """
    try:
        GLOBAL_LISTENERS.remove(listener)
    except ValueError:
        from ._validate import fail

        raise fail("listener", "a listener registered with add_listener", listener) from None


@dataclass(frozen=True, slots=True)
class LimitChanged(Event):
    """An adaptive concurrency limit moved from ``old`` to ``new`` (whole calls); emitted
    only when the integer limit changes. ``rtt`` is the latency, in seconds, of the call
    whose sample moved it, and ``dropped`` whether that call counted as a drop."""

    old: int
    new: int
    rtt: float
    dropped: bool
