"""The Redis cache's I/O for asyncio clients. ``_redis_async.py`` is written by hand and
``_redis_sync.py`` is generated from it by ``scripts/unasync.py``; a test fails if the two
drift apart. Logic that is not I/O lives in ``_redis_shared.py``.

Every Redis call goes through ``guard`` (the cache's store breaker and, for async calls,
its ``store_timeout``) and every redis-py error becomes a :class:`~buttress.StoreError`;
the public classes turn those into decisions (``on_store_error``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError

from .._deadline import get_current
from .._errors import DeadlineExceededError, StoreError
from .._policy import Policy
from . import _redis_shared as sh
from ._redis_shared import MISSING, STORE_FAILURES, Shared
from ._scripts import FILL, GET_OR_LEASE, RELEASE, WRITE, Script

__all__ = ["AsyncCacheCore"]


class AsyncCacheCore:
    """Cache operations on one Redis client; ``shared`` holds keys, codec and counters."""

    def __init__(self, client: Redis | RedisCluster, shared: Shared, guard: Policy) -> None:
        # Any: redis-py types its commands as "Awaitable[T] | T" for every client kind.
        self.client: Any = client
        self.s = shared
        self.guard = guard

    async def _eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.client.script_load(script.text)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except RedisError as exc:
            raise StoreError(f"Redis failed: {exc!r}") from exc

    async def _get(self, key: str) -> Any:
        try:
            return await self.client.get(key)
        except RedisError as exc:
            raise StoreError(f"Redis failed: {exc!r}") from exc

    async def _pttl(self, key: str) -> Any:
        try:
            return await self.client.pttl(key)
        except RedisError as exc:
            raise StoreError(f"Redis failed: {exc!r}") from exc

    async def _clear(self) -> int:
        removed = 0
        try:
            batch: list[Any] = []
            async for key in self.client.scan_iter(match=self.s.scan_pattern(), count=500):
                batch.append(key)
                if len(batch) >= 500:
                    removed += await self.client.unlink(*batch)
                    batch = []
            if batch:
                removed += await self.client.unlink(*batch)
            await self.client.publish(self.s.channel, self.s.cleared())
        except RedisError as exc:
            raise StoreError(f"Redis failed: {exc!r}") from exc
        return removed

    async def get(self, key: str) -> Any:
        """The decoded value under the bounded ``key``, or MISSING. Raises store failures."""
        data = await self.guard.call(self._get, self.s.value_key(key))
        if data is None:
            self.s.misses += 1
            return MISSING
        return self.s.decode(data, MISSING)

    async def write(self, key: str, data: bytes | None, ttl_ms: int) -> int:
        """Set (``data`` bytes) or delete (``None``) the bounded ``key``, cancel its lease
        and announce it on the channel. Raises store failures."""
        s = self.s
        args = ("set", data, ttl_ms) if data is not None else ("del", "", 0)
        reply = await self.guard.call(
            self._eval,
            WRITE,
            (s.value_key(key), s.lease_key(key)),
            (*args, s.channel, s.invalidation(key)),
        )
        return int(reply)

    async def ttl(self, key: str) -> Any:
        """PTTL of the bounded ``key`` in milliseconds (-2 missing, -1 no expiry)."""
        return await self.guard.call(self._pttl, self.s.value_key(key))

    async def clear(self) -> int:
        """Remove every key of the namespace (SCAN + UNLINK) and announce it."""
        return int(await self.guard.call(self._clear))

    async def get_or_load(
        self, key: str, loader: sh.AsyncLoader, ttl_ms: int, wait: sh.AsyncWait
    ) -> Any:
        """The value under the bounded ``key``; on a miss, load it under a Redis lease.

        One caller across every process takes the lease (SET NX PX) and runs ``loader``;
        the others call ``wait(key, seconds)`` (polling with a doubling pause, clamped to
        the lease's time left and the enclosing deadline) and look again. A lease whose
        holder died expires; the next caller to look takes it. A loader error releases
        the lease at once and reaches this caller. Redis failures before the load raise
        (the caller decides what to do); a failure to store the loaded value is reported
        and the value returned.
        """
        s = self.s
        value_key, lease_key = s.value_key(key), s.lease_key(key)
        token = s.token()
        pause = s.poll_min
        waited = False
        while True:
            reply = await self.guard.call(
                self._eval, GET_OR_LEASE, (value_key, lease_key), (token, s.lease_ms)
            )
            kind, payload = s.lease_reply(reply)
            if kind == 1:
                value = s.decode(payload, MISSING)
                if value is not MISSING:
                    return value
                # Undecodable (another codec wrote it): load and overwrite, without a lease.
                value = await loader()
                s.loads += 1
                try:
                    await self.write(key, s.encode(value), ttl_ms)
                except STORE_FAILURES as exc:
                    s.report(exc)
                return value
            if kind == 2:
                if not waited:
                    s.misses += 1
                try:
                    value = await loader()
                    data = s.encode(value)
                except BaseException:
                    try:
                        await self.guard.call(
                            self._eval,
                            RELEASE,
                            (lease_key,),
                            (token, s.channel, s.fill_message(key)),
                        )
                    except Exception:
                        pass  # the lease expires on its own; the loader's error matters more
                    raise
                s.loads += 1
                try:
                    await self.guard.call(
                        self._eval,
                        FILL,
                        (value_key, lease_key),
                        (token, data, ttl_ms, s.channel, s.fill_message(key)),
                    )
                except STORE_FAILURES as exc:
                    s.report(exc)  # loaded but not stored: the value is still good
                return value
            if not waited:
                waited = True
                s.lease_waits += 1
                s.misses += 1
            seconds = pause
            if 0 < payload < seconds * 1000:
                seconds = payload / 1000
            current = get_current()
            if current is not None:
                left = current[0] - current[1].monotonic()
                if left <= 0:
                    raise DeadlineExceededError(
                        f"deadline reached while waiting for another loader of {key!r}"
                    )
                if left < seconds:
                    seconds = left
            await wait(key, seconds)
            pause = min(pause * 2, s.poll_max)
