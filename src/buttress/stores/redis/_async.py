"""Redis operations for asyncio clients. ``_async.py`` is written by hand and ``_sync.py``
is generated from it by ``scripts/unasync.py``; ``tests/test_unasync.py`` fails if they
drift apart.

Every operation is one Lua script run by EVALSHA (one round trip, atomic), loaded again
transparently when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH).
Every redis-py error becomes a :class:`~buttress.StoreError` (``raise ... from``), and so
does a reply of an unexpected shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError, ResponseError

from ..._errors import StoreError
from ...ratelimit._gcra import Decision, RateSpec
from ._replies import gcra_decision
from ._scripts import GCRA, Script

__all__ = ["AsyncRedisOps"]


def _gcra_args(spec: RateSpec, cost: int, max_wait: float) -> tuple[str, int, int, str]:
    return (repr(spec.interval * 1e6), spec.burst, cost, repr(max_wait * 1e6))


class AsyncRedisOps:
    """The store operations on one Redis client; keys are prefixed with ``prefix``."""

    def __init__(self, client: Redis | RedisCluster, prefix: str) -> None:
        # Kept as Any: redis-py types its commands as "Awaitable[T] | T" for every client
        # kind, which neither the async nor the generated sync code could await/use as is.
        self.client: Any = client
        self.prefix = prefix

    async def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.client.script_load(script.text)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except RedisError as exc:
            raise StoreError(f"Redis failed: {exc!r}") from exc

    async def acquire(self, key: str, spec: RateSpec, cost: int, max_wait: float) -> Decision:
        """One GCRA step on ``prefix + key``, on the server's clock."""
        reply = await self._run(GCRA, (self.prefix + key,), _gcra_args(spec, cost, max_wait))
        return gcra_decision(reply, spec)

    async def acquire_many(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec
    ) -> list[Decision]:
        """One GCRA step per ``(key, cost)`` in one pipelined round trip (not a transaction:
        each step is atomic on its own key, so Redis Cluster can spread them)."""
        interval, burst = repr(spec.interval * 1e6), spec.burst  # formatted once per batch
        prefix, sha = self.prefix, GCRA.sha
        for attempt in range(2):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, cost in requests:
                        pipe.evalsha(sha, 1, prefix + key, interval, burst, cost, "0.0")
                    replies = await pipe.execute(raise_on_error=False)
            except RedisError as exc:
                raise StoreError(f"Redis failed: {exc!r}") from exc
            missing = [r for r in replies if isinstance(r, NoScriptError)]
            if missing and attempt == 0:
                # The server lost its scripts; none of the steps ran. Load and go again.
                try:
                    await self.client.script_load(GCRA.text)
                except RedisError as exc:
                    raise StoreError(f"Redis failed: {exc!r}") from exc
                continue
            failed = [r for r in replies if isinstance(r, ResponseError | RedisError)]
            if failed:
                raise StoreError(f"Redis failed: {failed[0]!r}")
            return [gcra_decision(reply, spec) for reply in replies]
        raise StoreError("Redis kept answering NOSCRIPT")  # pragma: no cover
