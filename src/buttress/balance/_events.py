"""The events a balancer emits (see :mod:`buttress.events` for listeners).

Each is a frozen dataclass subclassing :class:`~buttress.events.Event`; ``policy`` is the
balancer's ``name``. They go to the balancer's own listeners and to the global ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._events import Event

__all__ = [
    "EndpointEjected",
    "EndpointHealthChanged",
    "EndpointRestored",
    "PanicEntered",
    "PanicExited",
    "PriorityLoadChanged",
]


@dataclass(frozen=True, slots=True)
class EndpointEjected(Event):
    """Outlier detection ejected ``endpoint`` for ``seconds``.

    ``reason`` is ``"consecutive_failures"`` or ``"success_rate"``; ``ejections`` counts
    this endpoint's ejections so far (it multiplies the ejection time)."""

    endpoint: str
    reason: str
    seconds: float
    ejections: int


@dataclass(frozen=True, slots=True)
class EndpointRestored(Event):
    """``endpoint`` came back from an ejection: its time ran out (``reason="expired"``)
    or an active health check passed (``reason="health_check"``)."""

    endpoint: str
    reason: str


@dataclass(frozen=True, slots=True)
class EndpointHealthChanged(Event):
    """Active health checks moved ``endpoint`` to ``healthy``; ``reason`` is
    ``"threshold"`` (enough checks in a row) or ``"immediate"`` (a drain signal)."""

    endpoint: str
    healthy: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PanicEntered(Event):
    """The healthy share fell below ``panic_threshold``: the balancer now spreads load
    over every endpoint (``mode="all"``) or refuses requests (``mode="fail"``)."""

    healthy_share: float
    mode: str


@dataclass(frozen=True, slots=True)
class PanicExited(Event):
    """The healthy share is back at or above ``panic_threshold``."""

    healthy_share: float


@dataclass(frozen=True, slots=True)
class PriorityLoadChanged(Event):
    """The share of traffic sent to each priority group changed (failover or failback);
    ``loads`` holds ``(priority, share)`` pairs, shares summing to 1."""

    loads: tuple[tuple[int, float], ...]
