"""The Store protocol: intent-level, atomic operations on shared state.

A store never exposes get/set pairs: every method is one decision taken atomically where
the state lives (under a lock in memory, in one Lua script in Redis), so two processes can
never race between reading and writing. Each operation exists in an async and a sync
form; a store may support only one of them (a Redis store built on an asyncio client is
async only) and raises a clear ``TypeError`` for the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..ratelimit._gcra import Decision, RateSpec

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """Shared state for buttress patterns (today: rate limits).

    ``now`` is the caller's clock reading; a store shared between processes ignores it
    and uses one clock of its own (Redis ``TIME``), since monotonic clocks of different
    hosts cannot be compared.

    Example::

        limiter = bt.RateLimiter(rate=100, store=bt.MemoryStore())
        limiter = bt.RateLimiter(rate=100, store=bt.RedisStore(redis.asyncio.Redis()), name="api")
    """

    shared: bool
    """True when several processes see the same state (then limiters need a ``name``)."""

    async def acquire(
        self, key: str, spec: RateSpec, cost: int, max_wait: float, now: float
    ) -> Decision:
        """One GCRA step on ``key``: admit ``cost`` units or refuse, atomically."""
        ...

    def acquire_sync(
        self, key: str, spec: RateSpec, cost: int, max_wait: float, now: float
    ) -> Decision:
        """The sync form of :meth:`acquire`."""
        ...

    async def acquire_many(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec, now: float
    ) -> list[Decision]:
        """One GCRA step for each ``(key, cost)``, in one round trip; never waits."""
        ...

    def acquire_many_sync(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec, now: float
    ) -> list[Decision]:
        """The sync form of :meth:`acquire_many`."""
        ...
