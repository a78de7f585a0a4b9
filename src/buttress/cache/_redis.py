"""RedisCache: a cache shared by every process that reaches one Redis."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from .. import _validate as v
from .._backoff import Backoff
from .._breaker import CircuitBreaker
from .._errors import DeadlineExceededError, StoreError
from .._events import Listener
from .._policy import Policy, pipeline
from .._timeout import Timeout
from ._codec import Codec, JsonCodec
from ._flight import Flights
from ._redis_async import AsyncCacheCore
from ._redis_shared import MISSING, STORE_FAILURES, Shared, bounded
from ._redis_sync import SyncCacheCore

__all__ = ["RedisCache", "RedisCacheStats"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisCacheStats:
    """A snapshot of a :class:`RedisCache` (or the Redis tier of a TieredCache).

    ``hits``/``misses`` count lookups; ``loads`` loader runs in this process;
    ``lease_waits`` lookups that waited for another loader (in any process);
    ``fell_back`` store failures decided by ``on_store_error``; ``undecodable`` entries
    the codec could not read (treated as misses).
    """

    name: str
    hits: int
    misses: int
    loads: int
    lease_waits: int
    fell_back: int
    undecodable: int

    @property
    def hit_ratio(self) -> float:
        """``hits / (hits + misses)``, 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _ttl_ms(name: str, ttl: float | timedelta | None) -> int:
    """A TTL in whole milliseconds for Redis PX (0: no expiry); at least 1 ms."""
    if ttl is None:
        return 0
    seconds = v.seconds(name, ttl, allow_zero=False)
    return max(1, math.ceil(seconds * 1000))


def store_breaker_for(
    value: CircuitBreaker | Literal["default"] | None, name: str
) -> CircuitBreaker | None:
    """The ``store_breaker`` option, as RateLimiter reads it."""
    if value == "default":
        return CircuitBreaker(
            consecutive_failures=2,
            open_for=Backoff.exponential(base=0.5, cap=5.0, jitter="none"),
            record_on=(StoreError, TimeoutError),
            name=f"{name}.store",
        )
    if value is not None and not isinstance(value, CircuitBreaker):
        raise v.fail("store_breaker", "a CircuitBreaker, None or 'default'", value)
    return value


async def _sleep(key: str, seconds: float) -> None:
    await asyncio.sleep(seconds)


def _sleep_sync(key: str, seconds: float) -> None:
    time.sleep(seconds)


class RedisCache:
    """A cache in Redis, shared by every process using the same Redis, ``prefix`` and
    ``name``, with cross-process single flight: a cold key is loaded once, not once per
    process.

    Give it a ``redis.asyncio.Redis`` client for the async API (``await cache.get(k)``)
    or a ``redis.Redis`` client for the sync one (``cache.get_sync(k)``); calling the
    other kind raises ``TypeError``. The client must return bytes
    (``decode_responses=False``, the default).

    **Loading.** ``get_or_load(key, loader)`` returns the cached value or, on a miss,
    takes a lease in Redis (``SET NX PX`` with a random token) and runs ``loader``; every
    other caller — in this process or another — waits for it, polling with a pause that
    doubles from ``poll_min`` to ``poll_max`` (clamped to the lease's time left and to the
    enclosing :func:`~buttress.deadline`), then reads the filled value. Concurrent async
    callers in one process share one wait. A loader that fails releases the lease at once
    and its error reaches the caller (the others then try, one at a time); a process that
    dies while loading leaves a lease that expires after ``lease`` seconds. A ``set`` or
    ``delete`` during a load cancels the lease, so the load cannot write back a value
    older than that write (memcache's "stale set" problem).

    **Failures.** Every Redis call goes through a store breaker and, in async calls,
    ``store_timeout``. When Redis fails, ``on_store_error`` decides for reads and loads:
    ``"fail_open"`` (default) treats it as a miss (``get`` returns the default,
    ``get_or_load`` runs the loader and returns its value unstored, ``set`` is skipped);
    ``"fail_closed"`` raises :class:`~buttress.StoreError`. Either way
    :class:`~buttress.events.StoreFellBack` is emitted. ``delete`` and ``clear`` always
    raise ``StoreError`` when Redis fails: an invalidation that did not happen must not
    look as if it had. A load that succeeded but could not be stored is returned anyway.

    **Keys and values.** Keys are non-empty str; keys longer than 200 characters (or
    starting with ``#``) are stored under their SHA-256. Values go through ``codec`` (default
    :class:`~buttress.JsonCodec`: bytes and str as they are, the rest as JSON — safe on a
    shared Redis; :class:`~buttress.PickleCodec` only for a Redis you trust).

    Args:
        client: a ``redis.asyncio.Redis`` / ``redis.Redis`` client (cluster clients too).
        name: the cache's namespace; processes sharing entries use the same name.
        ttl: default time to live of entries, seconds (or ``timedelta``), ``> 0``;
            ``None`` (default): no expiry.
        codec: a :class:`~buttress.cache.Codec`. Default :class:`JsonCodec`.
        prefix: prepended to every key and channel. Default ``"buttress:cache:"``.
        lease: how long a loader's lease lives, seconds, ``> 0``: longer than the slowest
            load you expect. Default 10.
        poll_min: first pause of a waiting caller, seconds, ``> 0``. Default 0.005.
        poll_max: longest pause of a waiting caller, seconds, ``>= poll_min``. Default 0.1.
        on_store_error: ``"fail_open"`` (default) or ``"fail_closed"``.
        store_timeout: the longest an async Redis call may take, seconds, ``> 0``, real
            time. Default 0.25. (Sync calls: set the client's ``socket_timeout``.)
        store_breaker: the :class:`~buttress.CircuitBreaker` that skips a failing Redis;
            ``"default"``: open after 2 consecutive failures, for 0.5 s doubling to 5 s;
            ``None``: always try Redis.
        listeners: event listeners (:class:`~buttress.events.StoreFellBack`).

    Raises:
        ConfigError: an option is out of range; at call time, a key that is not a
            non-empty str or a bad ``ttl``.
        StoreError: Redis failed and the operation is a ``delete``/``clear`` or
            ``on_store_error="fail_closed"``.
        DeadlineExceededError: the enclosing deadline ran out while waiting for another
            process's load.

    Example::

        import redis.asyncio as redis

        users = bt.RedisCache(redis.Redis(host="cache"), name="users", ttl=300)

        async def user(user_id: str) -> dict[str, object]:
            return await users.get_or_load(user_id, lambda: db.fetch_user(user_id))
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        ttl: float | timedelta | None = None,
        codec: Codec | None = None,
        prefix: str = "buttress:cache:",
        lease: float | timedelta = 10.0,
        poll_min: float | timedelta = 0.005,
        poll_max: float | timedelta = 0.1,
        on_store_error: Literal["fail_open", "fail_closed"] = "fail_open",
        store_timeout: float | timedelta = 0.25,
        store_breaker: CircuitBreaker | Literal["default"] | None = "default",
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        import redis
        import redis.asyncio

        if not isinstance(name, str) or not name:
            raise v.fail("name", "a non-empty str", name)
        if not isinstance(prefix, str):
            raise v.fail("prefix", "a str", prefix)
        self.name = name
        self.prefix = prefix
        self.ttl = None if ttl is None else v.seconds("ttl", ttl, allow_zero=False)
        self._ttl_ms = _ttl_ms("ttl", ttl)
        if codec is None:
            codec = JsonCodec()
        elif not isinstance(codec, Codec):
            raise v.fail("codec", "a Codec (an object with encode and decode)", codec)
        self.codec = codec
        self.lease = v.seconds("lease", lease, allow_zero=False)
        p_min = v.seconds("poll_min", poll_min, allow_zero=False)
        p_max = v.seconds("poll_max", poll_max, allow_zero=False)
        if p_max < p_min:
            raise v.fail("poll_max", f">= poll_min ({p_min})", poll_max)
        self.on_store_error = v.choice(
            "on_store_error", on_store_error, ("fail_open", "fail_closed")
        )
        self.store_timeout = v.seconds("store_timeout", store_timeout, allow_zero=False)
        self.store_breaker = store_breaker_for(store_breaker, name)
        self._shared = Shared(
            name=name,
            prefix=prefix,
            codec=codec,
            lease_ms=max(1, math.ceil(self.lease * 1000)),
            poll_min=p_min,
            poll_max=p_max,
            mode=self.on_store_error,
            listeners=v.listeners(listeners),
        )
        guards: list[Policy] = [] if self.store_breaker is None else [self.store_breaker]
        self.client = client
        self._async: AsyncCacheCore | None = None
        self._sync: SyncCacheCore | None = None
        if isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            self._async = AsyncCacheCore(
                client, self._shared, pipeline(*guards, Timeout(self.store_timeout))
            )
        elif isinstance(client, redis.Redis | redis.RedisCluster):
            self._sync = SyncCacheCore(client, self._shared, pipeline(*guards))
        else:
            raise v.fail("client", "a redis.Redis or redis.asyncio.Redis client", client)
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        if kwargs.get("decode_responses"):
            raise v.fail("client", "a client with decode_responses=False (bytes replies)", client)
        self._flights = Flights()

    def __repr__(self) -> str:
        kind = "async" if self._async is not None else "sync"
        return f"RedisCache({kind}, name={self.name!r}, prefix={self.prefix!r})"

    @property
    def channel(self) -> str:
        """The pub/sub channel where writes are announced (what TieredCache listens to)."""
        return self._shared.channel

    def stats(self) -> RedisCacheStats:
        """Counters since construction (this process only)."""
        s = self._shared
        return RedisCacheStats(
            self.name, s.hits, s.misses, s.loads, s.lease_waits, s.fell_back, s.undecodable
        )

    def _need_async(self) -> AsyncCacheCore:
        if self._async is None:
            raise TypeError(
                "this RedisCache wraps a sync redis.Redis client: call the *_sync methods "
                "or build the cache on redis.asyncio.Redis"
            )
        return self._async

    def _need_sync(self) -> SyncCacheCore:
        if self._sync is None:
            raise TypeError(
                "this RedisCache wraps a redis.asyncio client: await the async methods "
                "or build the cache on redis.Redis"
            )
        return self._sync

    def _entry_ttl(self, ttl: float | timedelta | None) -> int:
        return self._ttl_ms if ttl is None else _ttl_ms("ttl", ttl)

    def _failed(self, exc: BaseException) -> None:
        """Report a store failure; raise it under ``fail_closed``."""
        self._shared.report(exc)
        if self.on_store_error == "fail_closed":
            if isinstance(exc, StoreError):
                raise exc
            raise StoreError(f"Redis unavailable: {exc!r}") from exc

    # -- async API ---------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value cached under ``key``, or ``default``.

        Raises:
            ConfigError: ``key`` is not a non-empty str.
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
        """
        core = self._need_async()
        try:
            value = await core.get(bounded(key))
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._failed(exc)
            return default
        return default if value is MISSING else value

    async def set(self, key: str, value: Any, ttl: float | timedelta | None = None) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` seconds (default: the cache's ``ttl``).

        Cancels any load of ``key`` in progress (its result will not be stored).

        Raises:
            ConfigError: bad ``key`` or ``ttl``.
            TypeError: the codec cannot encode ``value``.
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
        """
        core = self._need_async()
        key, ttl_ms = bounded(key), self._entry_ttl(ttl)
        data = self._shared.encode(value)
        try:
            await core.write(key, data, ttl_ms)
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._failed(exc)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it was there. Cancels any load of it in progress.

        Raises:
            ConfigError: bad ``key``.
            StoreError: Redis failed (whatever ``on_store_error`` says).
        """
        try:
            return await self._need_async().write(bounded(key), None, 0) > 0
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._shared.report(exc)
            raise exc if isinstance(exc, StoreError) else StoreError(repr(exc)) from exc

    async def ttl_of(self, key: str) -> float | None:
        """Seconds ``key`` has left; ``math.inf`` if it never expires; ``None`` if it is
        not cached (or Redis failed under ``fail_open``).

        Raises:
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
        """
        try:
            return _ttl_reply(await self._need_async().ttl(bounded(key)))
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._failed(exc)
            return None

    async def clear(self) -> int:
        """Remove every entry of this cache's namespace; returns how many keys went.

        Not atomic: entries written while it runs may survive.

        Raises:
            StoreError: Redis failed (whatever ``on_store_error`` says).
        """
        try:
            return await self._need_async().clear()
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._shared.report(exc)
            raise exc if isinstance(exc, StoreError) else StoreError(repr(exc)) from exc

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | timedelta | None = None,
    ) -> T:
        """The value cached under ``key``, loading it with ``await loader()`` on a miss —
        once across every process (see the class docs).

        Raises:
            Exception: whatever ``loader`` raised (nothing is cached then).
            ConfigError: bad ``key`` or ``ttl``.
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
            DeadlineExceededError: the deadline ran out while waiting for another loader.
        """
        core = self._need_async()
        bkey, ttl_ms = bounded(key), self._entry_ttl(ttl)
        return await self._flights.run(  # type: ignore[no-any-return]
            bkey, lambda: self._load(core, bkey, loader, ttl_ms)
        )

    async def _load(
        self, core: AsyncCacheCore, key: str, loader: Callable[[], Awaitable[Any]], ttl_ms: int
    ) -> Any:
        started = False

        async def run() -> Any:
            nonlocal started
            started = True
            return await loader()

        try:
            return await core.get_or_load(key, run, ttl_ms, _sleep)
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            if started:
                raise  # the loader's own error (it may well be a TimeoutError)
            self._failed(exc)
        self._shared.loads += 1
        return await loader()

    # -- sync API ----------------------------------------------------------------------------

    def get_sync(self, key: str, default: Any = None) -> Any:
        """The sync form of :meth:`get`."""
        core = self._need_sync()
        try:
            value = core.get(bounded(key))
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._failed(exc)
            return default
        return default if value is MISSING else value

    def set_sync(self, key: str, value: Any, ttl: float | timedelta | None = None) -> None:
        """The sync form of :meth:`set`."""
        core = self._need_sync()
        key, ttl_ms = bounded(key), self._entry_ttl(ttl)
        data = self._shared.encode(value)
        try:
            core.write(key, data, ttl_ms)
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._failed(exc)

    def delete_sync(self, key: str) -> bool:
        """The sync form of :meth:`delete`."""
        try:
            return self._need_sync().write(bounded(key), None, 0) > 0
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._shared.report(exc)
            raise exc if isinstance(exc, StoreError) else StoreError(repr(exc)) from exc

    def ttl_of_sync(self, key: str) -> float | None:
        """The sync form of :meth:`ttl_of`."""
        try:
            return _ttl_reply(self._need_sync().ttl(bounded(key)))
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._failed(exc)
            return None

    def clear_sync(self) -> int:
        """The sync form of :meth:`clear`."""
        try:
            return self._need_sync().clear()
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._shared.report(exc)
            raise exc if isinstance(exc, StoreError) else StoreError(repr(exc)) from exc

    def get_or_load_sync(
        self, key: str, loader: Callable[[], T], *, ttl: float | timedelta | None = None
    ) -> T:
        """The sync form of :meth:`get_or_load` (``loader`` is a plain function). Threads
        of one process each take part in the Redis lease; still one load in all."""
        core = self._need_sync()
        bkey, ttl_ms = bounded(key), self._entry_ttl(ttl)
        started = False

        def run() -> Any:
            nonlocal started
            started = True
            return loader()

        try:
            return core.get_or_load(bkey, run, ttl_ms, _sleep_sync)  # type: ignore[no-any-return]
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            if started:
                raise
            self._failed(exc)
        self._shared.loads += 1
        return loader()


def _ttl_reply(ms: Any) -> float | None:
    if not isinstance(ms, int) or ms < -2:
        raise StoreError(f"unexpected reply from Redis for PTTL: {ms!r:.200}")
    if ms == -2:
        return None
    if ms == -1:
        return math.inf
    return ms / 1000
