"""Clients and names for the Redis cache tests."""

from __future__ import annotations

import itertools
from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff

from ..servers import RedisServer

_names = itertools.count()


def fresh_name() -> str:
    """A namespace no other test uses (tests share the session's redis-server)."""
    return f"t{next(_names)}"


def async_client(server: RedisServer, **kwargs: Any) -> Any:
    """An asyncio client with no client-side retries (the cache's breaker decides)."""
    from redis.asyncio.retry import Retry

    return redis.asyncio.Redis.from_url(
        server.url, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0), **kwargs
    )


def sync_client(server: RedisServer, **kwargs: Any) -> Any:
    """A sync client with a socket timeout and no client-side retries."""
    from redis.retry import Retry

    return redis.Redis.from_url(
        server.url,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
        **kwargs,
    )
