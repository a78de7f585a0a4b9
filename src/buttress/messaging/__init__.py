"""Reliable messaging: at-least-once consumers on real brokers (Redis Streams, NATS
JetStream) or in memory. See ``docs/messaging.md``.

The exactly-once helpers work with any :class:`Publisher` (a transport whose
``publish`` returns after broker confirmation): the inbox (:class:`RedisInbox`,
:class:`SQLiteInbox`, :class:`PostgresInbox`, ``docs/inbox.md``), the transactional
outbox (:class:`SQLiteOutbox`, :class:`PostgresOutbox`, :class:`OutboxRelay`,
``docs/outbox.md``), store-and-forward (:class:`StoreAndForward`,
``docs/store-and-forward.md``) and idempotency-key stores for
:class:`buttress.integrations.asgi.IdempotencyMiddleware` (``docs/idempotency-keys.md``).

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
from ._forward import (
    ForwardBuffered,
    ForwardBufferFullError,
    ForwardDrained,
    ForwardDropped,
    ForwardFailed,
    ForwardStats,
    StoreAndForward,
)
from ._idempotency import (
    Begin,
    IdempotencyStore,
    MemoryIdempotencyStore,
    PostgresIdempotencyStore,
    RedisIdempotencyStore,
    SavedResponse,
    SQLiteIdempotencyStore,
)
from ._inbox import InboxBusyError, InboxDuplicate, PostgresInbox, RedisInbox, SQLiteInbox
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
from ._outbox import (
    OutboxLag,
    OutboxPublished,
    OutboxPublishFailed,
    OutboxRelay,
    OutboxStats,
    PostgresOutbox,
    SQLiteOutbox,
)
from ._publisher import Publisher
from ._redis import RedisFeatures, RedisStreamsTransport
from ._transport import Subscription, Transport

__all__ = [
    "HEADER_DEAD_LETTER_DELIVERIES",
    "HEADER_DEAD_LETTER_ID",
    "HEADER_DEAD_LETTER_REASON",
    "HEADER_DEAD_LETTER_TOPIC",
    "HEADER_MSG_ID",
    "HEADER_REPLY_TO",
    "Begin",
    "BrokerError",
    "BrokerUnavailableError",
    "Consumer",
    "ConsumerFetchFailed",
    "ConsumerStats",
    "ConsumerStopped",
    "ForwardBufferFullError",
    "ForwardBuffered",
    "ForwardDrained",
    "ForwardDropped",
    "ForwardFailed",
    "ForwardStats",
    "Handler",
    "IdempotencyStore",
    "InboxBusyError",
    "InboxDuplicate",
    "MemoryIdempotencyStore",
    "MemoryTransport",
    "Message",
    "MessageDeadLettered",
    "MessageHandled",
    "MessageReleased",
    "MessageRetried",
    "MessageSettleFailed",
    "MessagingError",
    "OutboxLag",
    "OutboxPublishFailed",
    "OutboxPublished",
    "OutboxRelay",
    "OutboxStats",
    "PostgresIdempotencyStore",
    "PostgresInbox",
    "PostgresOutbox",
    "Publisher",
    "RedisFeatures",
    "RedisIdempotencyStore",
    "RedisInbox",
    "RedisStreamsTransport",
    "Reject",
    "RequestTimeoutError",
    "Requeue",
    "SQLiteIdempotencyStore",
    "SQLiteInbox",
    "SQLiteOutbox",
    "SavedResponse",
    "Settlement",
    "StoreAndForward",
    "Subscription",
    "Transport",
    "on_arrival",
    "on_failure",
]
