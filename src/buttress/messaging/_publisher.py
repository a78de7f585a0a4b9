"""The one thing the exactly-once helpers need from a transport: a confirmed publish."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["Publisher"]


@runtime_checkable
class Publisher(Protocol):
    """Anything that publishes a message and returns once the broker confirmed it.

    The buttress transports (in-memory, Redis Streams, NATS JetStream) all fit; so does a
    small adapter around any client. ``publish`` must raise when the broker did not take
    the message (connection refused, timeout, negative ack) and return the broker's id of
    the message otherwise. ``msg_id`` is the deduplication id the broker (and the
    consumer's inbox) sees; the outbox and store-and-forward always pass one, so a message
    sent twice after a crash can be recognised.

    Example::

        class Printer:
            async def publish(self, topic, body, *, msg_id=None, headers=None) -> str:
                print(topic, body)
                return msg_id or "1"
    """

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Publish ``body`` to ``topic``; return once the broker confirmed it."""
        ...
