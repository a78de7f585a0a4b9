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
    "InboxBusyError",
    "InboxDuplicate",
    "OutboxLag",
    "OutboxPublishFailed",
    "OutboxPublished",
    "OutboxRelay",
    "OutboxStats",
    "PostgresInbox",
    "PostgresOutbox",
    "Publisher",
    "RedisInbox",
    "SQLiteInbox",
    "SQLiteOutbox",
]
