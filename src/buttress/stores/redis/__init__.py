"""RedisStore: shared state in Redis, for limits that hold across processes and hosts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ... import _validate as v
from ...ratelimit._gcra import Decision, RateSpec
from ._async import AsyncRedisOps
from ._sync import SyncRedisOps

__all__ = ["RedisStore"]


class RedisStore:
    """A :class:`~buttress.Store` in Redis, through redis-py.

    Give it a ``redis.asyncio.Redis`` client for async calls (``await
    limiter.try_acquire(...)``, ``await policy.call(...)``) or a ``redis.Redis`` client for
    sync calls; Redis Cluster clients work too. Calling the other kind raises a
    ``TypeError`` that says which client to pass.

    * **Atomic, one round trip.** Each operation is one Lua script run with EVALSHA; the
      script is loaded again on NOSCRIPT (after a server restart).
    * **Server time.** Shared limits use Redis ``TIME``, not the caller's clock: processes
      on different hosts have unrelated monotonic clocks (and wall clocks that drift), and
      one clock for every participant is what makes the limit exact. A ``FakeClock`` does
      not reach into Redis.
    * **Cluster-safe keys.** Every operation touches one key (one hash slot); keys are
      ``prefix`` + a limiter-specific part, where user-supplied parts longer than 100
      characters are replaced by their hash, and only ever travel as KEYS/ARGV.
    * **Failures.** Every redis-py error and every reply of an unexpected shape becomes a
      :class:`~buttress.StoreError`; the pattern using the store turns it into a decision
      (see ``on_store_error``). Set ``socket_timeout`` on a sync client: a sync call cannot
      be interrupted otherwise. Async calls are bounded by the pattern's ``store_timeout``.

    Args:
        client: a ``redis.asyncio.Redis`` / ``redis.Redis`` (or cluster) client.
        prefix: prepended to every key. Default ``"buttress:"``.

    Raises:
        ConfigError: ``client`` is not a redis-py client, or ``prefix`` is not a str.

    Example::

        import redis.asyncio as redis
        store = bt.RedisStore(redis.Redis(host="cache", socket_timeout=0.1))
        limiter = bt.RateLimiter(rate=1000, per=60, store=store, name="api-per-key")
    """

    shared = True

    def __init__(self, client: Any, *, prefix: str = "buttress:") -> None:
        import redis
        import redis.asyncio

        if not isinstance(prefix, str):
            raise v.fail("prefix", "a str", prefix)
        self.prefix = prefix
        self.client = client
        self._async: AsyncRedisOps | None = None
        self._sync: SyncRedisOps | None = None
        if isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            self._async = AsyncRedisOps(client, prefix)
        elif isinstance(client, redis.Redis | redis.RedisCluster):
            self._sync = SyncRedisOps(client, prefix)
        else:
            raise v.fail("client", "a redis.Redis or redis.asyncio.Redis client", client)

    def __repr__(self) -> str:
        kind = "async" if self._async is not None else "sync"
        return f"RedisStore({kind}, prefix={self.prefix!r})"

    def _need_async(self) -> AsyncRedisOps:
        if self._async is None:
            raise TypeError(
                "this RedisStore wraps a sync redis.Redis client: call the sync API "
                "(try_acquire_sync, call_sync) or build the store on redis.asyncio.Redis"
            )
        return self._async

    def _need_sync(self) -> SyncRedisOps:
        if self._sync is None:
            raise TypeError(
                "this RedisStore wraps a redis.asyncio client: call the async API "
                "(await try_acquire, await call) or build the store on redis.Redis"
            )
        return self._sync

    async def acquire(
        self, key: str, spec: RateSpec, cost: int, max_wait: float, now: float
    ) -> Decision:
        """One GCRA step in Redis (``now`` is ignored: Redis ``TIME`` is used)."""
        return await self._need_async().acquire(key, spec, cost, max_wait)

    def acquire_sync(
        self, key: str, spec: RateSpec, cost: int, max_wait: float, now: float
    ) -> Decision:
        """The sync form of :meth:`acquire`."""
        return self._need_sync().acquire(key, spec, cost, max_wait)

    async def acquire_many(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec, now: float
    ) -> list[Decision]:
        """One GCRA step per ``(key, cost)`` in one pipelined round trip."""
        return await self._need_async().acquire_many(requests, spec)

    def acquire_many_sync(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec, now: float
    ) -> list[Decision]:
        """The sync form of :meth:`acquire_many`."""
        return self._need_sync().acquire_many(requests, spec)
