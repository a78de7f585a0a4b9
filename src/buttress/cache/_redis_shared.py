"""What the async and the generated sync Redis cache cores share: keys, codec handling,
counters and the failure report. No I/O here."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from .._errors import CircuitOpenError, StoreError, TimeoutError
from .._events import GLOBAL_LISTENERS, Listener, StoreFellBack, emit
from ._codec import Codec

__all__ = [
    "MISSING",
    "STORE_FAILURES",
    "AsyncLoader",
    "AsyncWait",
    "Shared",
    "SyncLoader",
    "SyncWait",
    "bounded",
]

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""The "no value" sentinel (``None`` is a value a loader may return and cache)."""

STORE_FAILURES = (StoreError, CircuitOpenError, TimeoutError)
"""What a guarded Redis call raises when Redis is down, slow or skipped by the breaker."""

AsyncLoader: TypeAlias = Callable[[], Awaitable[Any]]
SyncLoader: TypeAlias = Callable[[], Any]
AsyncWait: TypeAlias = Callable[[str, float], Awaitable[None]]
"""``wait(key, seconds)``: pause a lease waiter (woken early by a notification, if any)."""
SyncWait: TypeAlias = Callable[[str, float], None]

MAX_KEY = 200
"""User keys longer than this (in characters) are stored under their SHA-256."""


def bounded(key: object) -> str:
    """The key part stored in Redis: the key itself, or ``#`` + its SHA-256 if it is long
    (or starts with ``#``, so that no key can pass for the hashed form of another).

    Raises:
        ConfigError: ``key`` is not a non-empty str.
    """
    # The common case first, in one expression: this runs on every near-cache hit.
    if key.__class__ is str and 0 < len(key) <= MAX_KEY and key[0] != "#":
        return key
    if not isinstance(key, str) or not key:
        from .. import _validate as v

        raise v.fail("key", "a non-empty str", key)
    return "#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class Shared:
    """The settings and counters of one Redis cache, read by its async or sync core.

    Key layout, for ``prefix="buttress:cache:"`` and ``name="users"``::

        buttress:cache:users:{42}         the value of key "42"
        buttress:cache:users:{42}:lease   the lease of whoever is loading it
        buttress:cache:users:~events      the pub/sub channel (invalidations, fills)

    The braces are a Redis Cluster hash tag: a value and its lease share a slot, so each
    Lua script touches one slot. (A key containing ``}`` ends the tag early, but both keys
    still share the text up to it, so they still share the slot.)
    """

    def __init__(
        self,
        *,
        name: str,
        prefix: str,
        codec: Codec,
        lease_ms: int,
        poll_min: float,
        poll_max: float,
        mode: str,
        listeners: tuple[Listener, ...],
    ) -> None:
        self.name = name
        self.namespace = f"{prefix}{name}:"
        self.channel = f"{self.namespace}~events"
        self.codec = codec
        self.lease_ms = lease_ms
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.mode = mode
        self.listeners = listeners
        # Identifies this process's messages on the channel (a TieredCache skips its own
        # invalidations: it already applied them) and prefixes lease tokens.
        self.origin = os.urandom(8).hex()
        self._tokens = 0
        self.hits = 0
        self.misses = 0
        self.loads = 0
        self.lease_waits = 0
        self.fell_back = 0
        self.undecodable = 0
        self.report: Callable[[BaseException], None] = self.fell_back_event

    def value_key(self, bounded_key: str) -> str:
        return f"{self.namespace}{{{bounded_key}}}"

    def lease_key(self, bounded_key: str) -> str:
        return f"{self.namespace}{{{bounded_key}}}:lease"

    def token(self) -> str:
        """A lease token unique to this call (origin + a counter)."""
        self._tokens += 1
        return f"{self.origin}:{self._tokens}:{os.urandom(4).hex()}"

    def invalidation(self, bounded_key: str) -> bytes:
        """The channel message for "this key changed" (``i`` + origin + ``|`` + key)."""
        return f"i{self.origin}|{bounded_key}".encode("utf-8", "surrogatepass")

    def fill_message(self, bounded_key: str) -> bytes:
        """The channel message for "this key was loaded" (wakes lease waiters)."""
        return f"f{self.origin}|{bounded_key}".encode("utf-8", "surrogatepass")

    def cleared(self) -> bytes:
        return f"*{self.origin}|".encode()

    def scan_pattern(self) -> str:
        """A SCAN MATCH pattern for every key of this namespace (glob chars escaped)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.namespace)
        return escaped + "{*"

    def encode(self, value: Any) -> bytes:
        return self.codec.encode(value)

    def decode(self, data: Any, default: Any) -> Any:
        """The value in ``data`` (counting a hit), or ``default`` for an entry that cannot
        be decoded (counted as undecodable and as a miss)."""
        try:
            value = self.codec.decode(data)
        except ValueError:
            self.undecodable += 1
            self.misses += 1
            return default
        self.hits += 1
        return value

    def fell_back_event(self, error: BaseException) -> None:
        """Count a store failure and emit StoreFellBack (mode: this cache's policy)."""
        self.fell_back += 1
        if self.listeners or GLOBAL_LISTENERS:
            emit(self.listeners, StoreFellBack(self.name, self.mode, error))

    def lease_reply(self, reply: Any) -> tuple[int, Any]:
        """Check the get_or_lease.lua reply: ``(1, bytes)``, ``(2, None)`` or ``(3, ms)``."""
        if reply.__class__ is list and len(reply) == 2:
            kind, payload = reply
            if kind == 1 and isinstance(payload, bytes):
                return 1, payload
            if kind == 2:
                return 2, None
            if kind == 3 and payload.__class__ is int:
                return 3, payload
        raise StoreError(f"unexpected reply from Redis for a cache lease: {reply!r:.200}")
