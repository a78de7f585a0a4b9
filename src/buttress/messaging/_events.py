"""The events a consumer emits (see :mod:`buttress.events` for listeners).

Each is a frozen dataclass subclassing :class:`~buttress.events.Event`; ``policy`` is the
consumer's ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._events import Event

__all__ = [
    "ConsumerFetchFailed",
    "ConsumerStopped",
    "MessageDeadLettered",
    "MessageHandled",
    "MessageReleased",
    "MessageRetried",
    "MessageSettleFailed",
]


@dataclass(frozen=True, slots=True)
class MessageHandled(Event):
    """The handler succeeded and the message was acked; ``elapsed`` is the handler's
    time in seconds."""

    topic: str
    id: str
    key: str
    deliveries: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class MessageRetried(Event):
    """The handler failed (``exception``) and the message was given back, to be
    delivered again after ``delay`` seconds."""

    topic: str
    id: str
    key: str
    deliveries: int
    delay: float
    exception: BaseException | None


@dataclass(frozen=True, slots=True)
class MessageDeadLettered(Event):
    """The message was given up: copied to ``destination`` (``None``: dropped) and
    removed from the topic. ``reason``: ``"max_deliveries"`` (failed on its last
    allowed delivery), ``"redelivered"`` (arrived after ``max_deliveries`` deliveries:
    earlier ones crashed) or ``"rejected"`` (the handler raised :class:`Reject`, whose
    text is then the reason)."""

    topic: str
    id: str
    key: str
    deliveries: int
    reason: str
    destination: str | None
    exception: BaseException | None


@dataclass(frozen=True, slots=True)
class MessageReleased(Event):
    """A drain gave an unfinished message back without acking it."""

    topic: str
    id: str
    key: str
    deliveries: int


@dataclass(frozen=True, slots=True)
class MessageSettleFailed(Event):
    """Acking / giving back / dead-lettering a message failed at the broker
    (``action`` says which); the broker will deliver it again after its lease."""

    topic: str
    id: str
    action: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class ConsumerFetchFailed(Event):
    """Fetching failed (``error``); the consumer tries again after ``delay`` seconds."""

    topic: str
    error: BaseException
    delay: float


@dataclass(frozen=True, slots=True)
class ConsumerStopped(Event):
    """The consumer stopped: ``reason`` is ``"stopped"`` or ``"cancelled"``;
    ``released`` unfinished messages were given back unacked."""

    topic: str
    reason: str
    released: int
