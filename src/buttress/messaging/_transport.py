"""What a transport offers the consumer: the :class:`Transport` and
:class:`Subscription` protocols. Every transport (in-memory, Redis Streams, NATS
JetStream) implements both with the same semantics; see docs/messaging.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from ._message import Message

__all__ = ["Subscription", "Transport"]


@runtime_checkable
class Subscription(Protocol):
    """One consumer's handle on a topic within a consumer group.

    Messages fetched are *leased* to this consumer for ``lease`` seconds: unless acked,
    given back or extended by then, the broker delivers them again (to any consumer of
    the group), with ``deliveries`` one higher.
    """

    lease: float
    """Seconds a fetched message stays leased to this consumer without an extension."""

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        """Up to ``max_messages`` messages: redeliveries first, then new ones. Waits up
        to ``wait`` seconds when there is nothing (never a busy loop)."""
        ...

    async def ack(self, message: Message) -> None:
        """Done: the message is never delivered to this group again."""
        ...

    async def retry(self, message: Message, delay: float) -> None:
        """Give the message back, to be delivered again after about ``delay`` seconds."""
        ...

    async def reject(self, message: Message) -> None:
        """Stop delivering the message (after it was dead-lettered, or to drop it)."""
        ...

    async def extend(self, messages: Sequence[Message]) -> None:
        """Renew the lease of messages still being handled."""
        ...

    async def close(self) -> None:
        """Release the subscription's resources (not the messages it holds)."""
        ...


@runtime_checkable
class Transport(Protocol):
    """A broker connection: publish, subscribe, request-reply."""

    name: str

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Publish and return the transport id once the broker confirmed it."""
        ...

    async def subscribe(
        self, topic: str, *, group: str, consumer: str, lease: float
    ) -> Subscription:
        """Join consumer group ``group`` on ``topic`` as ``consumer``."""
        ...

    async def request(
        self,
        topic: str,
        body: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the reply wait, part of the protocol
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Publish with a ``Reply-To`` header and wait up to ``timeout`` for the reply."""
        ...

    async def reply(
        self, message: Message, body: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer a request received as ``message``."""
        ...

    async def close(self) -> None:
        """Close the transport (connections it created)."""
        ...
