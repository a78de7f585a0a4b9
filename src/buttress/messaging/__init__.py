"""Reliable messaging: at-least-once consumers on real brokers (Redis Streams, NATS
JetStream) or in memory. See ``docs/messaging.md``.

Example::

    from buttress.messaging import Consumer, MemoryTransport

    transport = MemoryTransport()
    consumer = Consumer(transport, "orders", handle, group="billing", concurrency=4)
    await transport.publish("orders", b"...", msg_id="order-17")
"""

from ._consumer import Consumer, ConsumerStats, Handler
from ._core import Settlement, on_arrival, on_failure
from ._errors import (
    BrokerError,
    BrokerUnavailableError,
    MessagingError,
    Reject,
    RequestTimeoutError,
    Requeue,
)
from ._events import (
    ConsumerFetchFailed,
    ConsumerStopped,
    MessageDeadLettered,
    MessageHandled,
    MessageReleased,
    MessageRetried,
    MessageSettleFailed,
)
from ._memory import MemoryTransport
from ._message import (
    HEADER_DEAD_LETTER_DELIVERIES,
    HEADER_DEAD_LETTER_ID,
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTER_TOPIC,
    HEADER_MSG_ID,
    HEADER_REPLY_TO,
    Message,
)
from ._redis import RedisFeatures, RedisStreamsTransport
from ._transport import Subscription, Transport

__all__ = [
    "HEADER_DEAD_LETTER_DELIVERIES",
    "HEADER_DEAD_LETTER_ID",
    "HEADER_DEAD_LETTER_REASON",
    "HEADER_DEAD_LETTER_TOPIC",
    "HEADER_MSG_ID",
    "HEADER_REPLY_TO",
    "BrokerError",
    "BrokerUnavailableError",
    "Consumer",
    "ConsumerFetchFailed",
    "ConsumerStats",
    "ConsumerStopped",
    "Handler",
    "MemoryTransport",
    "Message",
    "MessageDeadLettered",
    "MessageHandled",
    "MessageReleased",
    "MessageRetried",
    "MessageSettleFailed",
    "MessagingError",
    "RedisFeatures",
    "RedisStreamsTransport",
    "Reject",
    "RequestTimeoutError",
    "Requeue",
    "Settlement",
    "Subscription",
    "Transport",
    "on_arrival",
    "on_failure",
]
