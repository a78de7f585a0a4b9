"""Reliable messaging: at-least-once delivery with an exactly-once effect.

The exactly-once helpers work with any :class:`Publisher` (a transport whose
``publish`` returns after broker confirmation):

* inbox (idempotent consumer): :class:`RedisInbox`, :class:`SQLiteInbox`,
  :class:`PostgresInbox` — see ``docs/inbox.md``;
* transactional outbox: :class:`SQLiteOutbox`, :class:`PostgresOutbox`,
  :class:`OutboxRelay` — see ``docs/outbox.md``;
* store-and-forward for producers: :class:`StoreAndForward` — see
  ``docs/store-and-forward.md``;
* idempotency keys for HTTP APIs: the stores here and
  :class:`buttress.integrations.asgi.IdempotencyMiddleware` — see
  ``docs/idempotency-keys.md``.
"""

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

__all__ = [
    "Begin",
    "ForwardBufferFullError",
    "ForwardBuffered",
    "ForwardDrained",
    "ForwardDropped",
    "ForwardFailed",
    "ForwardStats",
    "IdempotencyStore",
    "InboxBusyError",
    "InboxDuplicate",
    "MemoryIdempotencyStore",
    "OutboxLag",
    "OutboxPublishFailed",
    "OutboxPublished",
    "OutboxRelay",
    "OutboxStats",
    "PostgresIdempotencyStore",
    "PostgresInbox",
    "PostgresOutbox",
    "Publisher",
    "RedisIdempotencyStore",
    "RedisInbox",
    "SQLiteIdempotencyStore",
    "SQLiteInbox",
    "SQLiteOutbox",
    "SavedResponse",
    "StoreAndForward",
]
