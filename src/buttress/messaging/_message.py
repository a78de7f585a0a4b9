"""The message a transport delivers, and the header names buttress uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "HEADER_DEAD_LETTER_DELIVERIES",
    "HEADER_DEAD_LETTER_ID",
    "HEADER_DEAD_LETTER_REASON",
    "HEADER_DEAD_LETTER_TOPIC",
    "HEADER_MSG_ID",
    "HEADER_REPLY_TO",
    "Message",
]

HEADER_MSG_ID = "Msg-Id"
"""The header carrying the producer's ``msg_id`` (``Nats-Msg-Id`` is set too on NATS)."""
HEADER_REPLY_TO = "Reply-To"
"""The header naming where a request's reply goes (set by ``transport.request``)."""
HEADER_DEAD_LETTER_TOPIC = "Dead-Letter-Topic"
"""On a dead-lettered copy: the topic the message came from."""
HEADER_DEAD_LETTER_ID = "Dead-Letter-Id"
"""On a dead-lettered copy: the transport id of the original message."""
HEADER_DEAD_LETTER_DELIVERIES = "Dead-Letter-Deliveries"
"""On a dead-lettered copy: how many times the original was delivered."""
HEADER_DEAD_LETTER_REASON = "Dead-Letter-Reason"
"""On a dead-lettered copy: why it was given up (``"max_deliveries"``, ``"rejected"``...)."""

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery of a message, as every transport hands it to a handler.

    Attributes:
        id: the transport's id for this message: the Redis stream entry id
            (``"1700000000000-0"``), the JetStream stream sequence (``"42"``), or a
            counter for the in-memory transport. Unique within a topic.
        topic: the topic (Redis stream / NATS subject) it was published to.
        body: the payload, as published.
        headers: the headers published with it (read-only; may be empty).
        key: the deduplication / idempotency key: the producer's ``msg_id`` when one
            was given to ``publish``, else ``id``. Inboxes and dedup stores key on this.
        deliveries: how many times the broker has delivered this message, this delivery
            included (1 the first time). Crashed deliveries count: it comes from the
            broker (the Redis PEL delivery counter, JetStream ``num_delivered``).
        published_at: when the broker stored it, Unix seconds, when the broker says
            (the Redis entry id's milliseconds, the JetStream timestamp); else ``None``.

    Example::

        async def handle(msg: Message) -> None:
            if await inbox.seen(msg.key):
                return
            order = json.loads(msg.body)
    """

    id: str
    topic: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    key: str = ""
    deliveries: int = 1
    published_at: float | None = None

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.id)

    @property
    def reply_to(self) -> str | None:
        """Where a reply to this message goes (``Reply-To`` header), or ``None``."""
        return self.headers.get(HEADER_REPLY_TO)
