"""TieredCache: an in-process near cache in front of a shared RedisCache."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from .. import _validate as v
from .._breaker import CircuitBreaker
from .._clock import Clock, resolve
from .._errors import DeadlineExceededError, StoreError
from .._events import GLOBAL_LISTENERS, Listener, StoreFellBack, emit
from .._policy import next_index
from ._codec import Codec
from ._core import Cache
from ._flight import Flights
from ._local import LocalTier
from ._redis import RedisCache, RedisCacheStats
from ._redis_async import AsyncCacheCore
from ._redis_events import NearCacheFlushed
from ._redis_shared import MISSING, STORE_FAILURES, bounded

__all__ = ["TieredCache", "TieredCacheStats"]

T = TypeVar("T")

_RECONNECT_MIN = 0.05
_RECONNECT_MAX = 2.0


@dataclass(frozen=True, slots=True)
class TieredCacheStats:
    """A snapshot of a :class:`TieredCache`: ``near_hits`` answered by the local tier;
    ``redis`` the Redis tier's counters (far hits are ``redis.hits``); ``invalidations``
    messages from other processes applied; ``flushes`` times the local tier was emptied
    because messages may have been missed; ``fell_back`` store failures decided by
    ``on_store_error``; ``subscribed`` whether invalidations are being received now."""

    name: str
    near_hits: int
    redis: RedisCacheStats
    invalidations: int
    flushes: int
    fell_back: int
    subscribed: bool


def _size(local: LocalTier) -> int:
    try:
        return len(local)  # type: ignore[arg-type]
    except TypeError:
        return -1


def _default_local(size: int, clock: Clock) -> LocalTier:
    return Cache(max_size=size, clock=clock)


class TieredCache:
    """A two-level cache: an in-process near cache (nanoseconds) in front of a shared
    :class:`RedisCache` (one round trip), kept coherent across processes, with
    cross-process single flight on misses. Async API only.

    **Reads.** ``get`` / ``get_or_load`` answer from the local tier when they can, else
    from Redis (then keep the value locally for ``local_ttl`` seconds), else
    ``get_or_load`` loads it once across every process: concurrent callers in this
    process share one flight, and across processes one takes a Redis lease while the
    others wait for it (woken by a pub/sub message when the value lands, or by polling
    at most every ``poll_max`` seconds, clamped to the deadline).

    **Coherence.** Every ``set``/``delete``/``clear`` (here or through a RedisCache on
    the same ``prefix`` and ``name``) publishes an invalidation on a Redis pub/sub
    channel; every TieredCache subscribes and drops the key from its local tier. A
    local entry is written only if no invalidation arrived while it was being read, so
    a read racing a write cannot reinstall the old value. When the subscription is lost
    (Redis restart, network), messages may be missed: when it is back, the local tier is
    emptied (:class:`~buttress.events.NearCacheFlushed`). ``local_ttl`` bounds how long a
    local entry can be stale in the worst case (a message lost without the connection
    dropping). We use pub/sub rather than RESP3 client tracking: it works with any
    redis-py client and RESP2, through proxies and on Redis Cluster, and the same channel
    wakes lease waiters; tracking needs RESP3, and redis-py implements it for its sync
    client only.

    **Failures.** ``on_store_error`` decides when Redis is down, slow or skipped by the
    store breaker: ``"local"`` (default) keeps serving the local tier and runs the loader
    on a miss (one flight per key per process), keeping its result locally;
    ``"fail_open"`` does not trust the local tier while invalidations cannot be received
    and runs the loader on every miss; ``"fail_closed"`` raises
    :class:`~buttress.StoreError`. Each decision emits
    :class:`~buttress.events.StoreFellBack`. Recovery is automatic: the store breaker
    probes Redis again, the subscriber reconnects (backing off up to 2 s) and flushes.
    ``delete``/``clear`` raise ``StoreError`` when Redis fails, whatever the mode (after
    dropping the local copy).

    Values in the local tier are shared objects: do not mutate what you get.

    Args:
        client: a ``redis.asyncio.Redis`` client (``decode_responses=False``).
        name: the cache's namespace; processes sharing entries use the same name.
        local: the local tier, any :class:`~buttress.cache.LocalTier`; default a
            :class:`~buttress.Cache` of ``local_size`` entries on ``clock``.
        local_size: entries in the default local tier, ``>= 1``. Default 10_000.
        local_ttl: how long a value stays in the local tier, seconds, ``> 0``; capped at
            ``ttl``. Default 60.
        ttl: default time to live in Redis, seconds, ``> 0``, or ``None`` (default).
        codec, prefix, lease, poll_min, poll_max, store_timeout, store_breaker: as for
            :class:`RedisCache` (defaults ``JsonCodec()``, ``"buttress:cache:"``, 10,
            0.005, 0.1, 0.25, ``"default"``).
        on_store_error: ``"local"`` (default), ``"fail_open"`` or ``"fail_closed"``.
        clock: the clock of the default local tier. Default: the system clock.
        listeners: event listeners (``StoreFellBack``, ``NearCacheFlushed``).

    Raises:
        ConfigError: an option is out of range, or ``client`` is not an asyncio client.
        StoreError: see Failures.
        DeadlineExceededError: the deadline ran out waiting for another process's load.

    Example::

        import redis.asyncio as redis

        products = bt.TieredCache(redis.Redis(host="cache"), name="products", ttl=600)

        async def product(pid: str) -> dict[str, object]:
            return await products.get_or_load(pid, lambda: db.product(pid))

        ...
        await products.aclose()   # or: async with products: ...
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        local: LocalTier | None = None,
        local_size: int = 10_000,
        local_ttl: float | timedelta = 60.0,
        ttl: float | timedelta | None = None,
        codec: Codec | None = None,
        prefix: str = "buttress:cache:",
        lease: float | timedelta = 10.0,
        poll_min: float | timedelta = 0.005,
        poll_max: float | timedelta = 0.1,
        on_store_error: Literal["local", "fail_open", "fail_closed"] = "local",
        store_timeout: float | timedelta = 0.25,
        store_breaker: CircuitBreaker | Literal["default"] | None = "default",
        clock: Clock | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        import redis.asyncio

        if not isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            raise v.fail("client", "a redis.asyncio.Redis client", client)
        self.on_store_error = v.choice(
            "on_store_error", on_store_error, ("local", "fail_open", "fail_closed")
        )
        self._listeners = v.listeners(listeners)
        self.remote = RedisCache(
            client,
            name=name,
            ttl=ttl,
            codec=codec,
            prefix=prefix,
            lease=lease,
            poll_min=poll_min,
            poll_max=poll_max,
            on_store_error="fail_closed",
            store_timeout=store_timeout,
            store_breaker=store_breaker,
            listeners=self._listeners,
        )
        self.name = name
        self.clock = resolve(clock)
        local_size = v.integer("local_size", local_size, minimum=1)
        self.local_ttl = v.seconds("local_ttl", local_ttl, allow_zero=False)
        if self.remote.ttl is not None and self.remote.ttl < self.local_ttl:
            self.local_ttl = self.remote.ttl
        if local is None:
            local = _default_local(local_size, self.clock)
        elif not isinstance(local, LocalTier):
            raise v.fail("local", "a LocalTier (get, set, delete, clear) or None", local)
        self.local = local
        self._client: Any = client
        self._shared = self.remote._shared
        self._shared.mode = self.on_store_error  # fill failures are reported in our mode
        core = self.remote._async
        assert core is not None
        self._core: AsyncCacheCore = core
        self._flights = Flights()
        self._wakeups: dict[str, asyncio.Event] = {}
        # Every invalidation bumps _gen and is remembered in _recent (the last 1024):
        # a read stores its result locally only if no invalidation of its key (or of
        # everything) arrived while it was in flight. See _unchanged.
        self._gen = 0
        self._recent: deque[tuple[int, str | None]] = deque(maxlen=1024)
        self._subscribed = False
        self._ever_subscribed = False
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._near_hits = 0
        self._invalidations = 0
        self._flushes = 0
        self._index = next_index("tieredcache")

    def __repr__(self) -> str:
        return f"TieredCache(name={self.name!r}, local={self.local!r})"

    @property
    def subscribed(self) -> bool:
        """Whether invalidations from other processes are being received right now."""
        return self._subscribed

    def stats(self) -> TieredCacheStats:
        """Counters since construction (this process only)."""
        return TieredCacheStats(
            self.name,
            self._near_hits,
            self.remote.stats(),
            self._invalidations,
            self._flushes,
            self._shared.fell_back,
            self._subscribed,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, wait: float = 5.0) -> bool:
        """Start listening for invalidations and wait up to ``wait`` seconds (real
        time) for the subscription; ``True`` once subscribed. Optional: the first call
        of any other method starts listening too (without waiting)."""
        self._ensure_listener()
        assert self._ready is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait)
        return self._subscribed

    async def aclose(self) -> None:
        """Stop listening. The cache still works afterwards, without the local tier."""
        self._closed = True
        self._subscribed = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.local.clear()

    async def __aenter__(self) -> TieredCache:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _ensure_listener(self) -> None:
        if self._closed:
            return
        task = self._task
        if task is None or task.done():
            if self._ready is None:
                self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name=f"buttress-tieredcache-{self.name}"
            )

    async def _listen(self) -> None:
        pause = _RECONNECT_MIN
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._shared.channel)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "subscribe":
                        self._on_subscribed()
                        pause = _RECONNECT_MIN
                    elif kind == "message":
                        self._on_message(message.get("data"))
            except asyncio.CancelledError:
                self._subscribed = False
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())
                raise
            except Exception:
                # The connection is gone (or redis-py gave up reconnecting): messages may
                # be lost from now on. Try again, backing off.
                pass
            self._subscribed = False
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            if self._closed:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RECONNECT_MAX)

    def _on_subscribed(self) -> None:
        # Messages sent before this point (or while the connection was down) were not
        # seen: nothing in the local tier can be trusted. (redis-py may reconnect and
        # resubscribe by itself; its confirmation arrives here too.)
        self._bump(None)
        entries = _size(self.local)
        self.local.clear()
        if self._ever_subscribed:
            self._flushes += 1
            self._emit(NearCacheFlushed(self.name, "resubscribed", entries))
        self._ever_subscribed = True
        self._subscribed = True
        if self._ready is not None:
            self._ready.set()

    def _on_message(self, data: object) -> None:
        if not isinstance(data, bytes) or len(data) < 2:
            return
        text = data.decode("utf-8", "surrogatepass")
        kind, rest = text[0], text[1:]
        origin, _, key = rest.partition("|")
        mine = origin == self._shared.origin
        if kind == "*":
            if not mine:
                self._bump(None)
                self._invalidations += 1
                entries = _size(self.local)
                self.local.clear()
                self._flushes += 1
                self._emit(NearCacheFlushed(self.name, "cleared", entries))
            for event in self._wakeups.values():
                event.set()
            self._wakeups.clear()
            return
        if kind == "i" and not mine:
            self._bump(key)
            self._invalidations += 1
            self.local.delete(key)
        waiting = self._wakeups.pop(key, None)
        if waiting is not None:
            waiting.set()

    async def _wait(self, key: str, seconds: float) -> None:
        """A lease waiter's pause: until the key is filled or changed, or ``seconds``."""
        event = self._wakeups.get(key)
        if event is None:
            event = self._wakeups[key] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            if self._wakeups.get(key) is event:
                del self._wakeups[key]

    def _bump(self, key: str | None) -> None:
        """Record an invalidation of ``key`` (``None``: of everything)."""
        self._gen += 1
        self._recent.append((self._gen, key))

    def _unchanged(self, gen: int, key: str) -> bool:
        """Whether nothing invalidated ``key`` since ``_gen`` was ``gen`` (and the cache
        still listens: after ``aclose`` nothing is kept locally)."""
        if self._closed:
            return False
        now = self._gen
        if now == gen:
            return True
        recent = self._recent
        if now - gen > len(recent):
            return False  # too many to tell: assume the worst
        for index in range(len(recent) - 1, len(recent) - 1 - (now - gen), -1):
            if recent[index][1] is None or recent[index][1] == key:
                return False
        return True

    def _emit(self, event: Any) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, event)

    def _fallback(self, exc: BaseException) -> None:
        """Report a store failure; raise under ``fail_closed``."""
        self._shared.fell_back += 1
        self._emit(StoreFellBack(self.name, self.on_store_error, exc))
        if self.on_store_error == "fail_closed":
            if isinstance(exc, StoreError):
                raise exc
            raise StoreError(f"Redis unavailable: {exc!r}") from exc

    def _near(self, key: str) -> Any:
        if self._subscribed or (self.on_store_error == "local" and not self._closed):
            value = self.local.get(key, MISSING)
            if value is not MISSING:
                self._near_hits += 1
            return value
        return MISSING

    # -- the API -----------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` from the local tier, else Redis, else ``default``.

        Raises:
            ConfigError: ``key`` is not a non-empty str.
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
        """
        bkey = bounded(key)
        self._ensure_listener()
        value = self._near(bkey)
        if value is not MISSING:
            return value
        gen = self._gen
        try:
            value = await self._core.get(bkey)
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._fallback(exc)
            return default
        if value is MISSING:
            return default
        if self._unchanged(gen, bkey):
            self.local.set(bkey, value, self.local_ttl)
        return value

    async def set(self, key: str, value: Any, ttl: float | timedelta | None = None) -> None:
        """Cache ``value`` under ``key`` in Redis (``ttl``: default the cache's) and here,
        and invalidate it in every other process.

        When Redis fails: ``"local"`` keeps the value in this process only,
        ``"fail_open"`` drops this process's copy, ``"fail_closed"`` raises.

        Raises:
            ConfigError: bad ``key`` or ``ttl``.
            TypeError: the codec cannot encode ``value``.
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
        """
        bkey, ttl_ms = bounded(key), self.remote._entry_ttl(ttl)
        data = self._shared.encode(value)
        self._ensure_listener()
        local_ttl = self.local_ttl if ttl_ms == 0 else min(self.local_ttl, ttl_ms / 1000)
        try:
            await self._core.write(bkey, data, ttl_ms)
        except DeadlineExceededError:
            self._bump(bkey)
            self.local.delete(bkey)
            raise
        except STORE_FAILURES as exc:
            self._bump(bkey)
            self.local.delete(bkey)
            self._fallback(exc)
            if self.on_store_error == "local":
                self.local.set(bkey, value, local_ttl)
            return
        self._bump(bkey)
        self.local.set(bkey, value, local_ttl)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` here, in Redis and in every other process's local tier;
        ``True`` if Redis had it.

        Raises:
            ConfigError: bad ``key``.
            StoreError: Redis failed (whatever ``on_store_error`` says).
        """
        bkey = bounded(key)
        self._ensure_listener()
        self._bump(bkey)
        self.local.delete(bkey)
        try:
            return await self._core.write(bkey, None, 0) > 0
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._shared.fell_back += 1
            self._emit(StoreFellBack(self.name, self.on_store_error, exc))
            raise exc if isinstance(exc, StoreError) else StoreError(repr(exc)) from exc
        finally:
            self._bump(bkey)  # a read that started before the write must not store its result

    async def clear(self) -> int:
        """Empty the local tier, Redis's entries of this namespace and every other
        process's local tier; returns how many Redis keys went.

        Raises:
            StoreError: Redis failed (whatever ``on_store_error`` says).
        """
        self._ensure_listener()
        self._bump(None)
        self.local.clear()
        try:
            return await self._core.clear()
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            self._shared.fell_back += 1
            self._emit(StoreFellBack(self.name, self.on_store_error, exc))
            raise exc if isinstance(exc, StoreError) else StoreError(repr(exc)) from exc
        finally:
            self._bump(None)

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | timedelta | None = None,
    ) -> T:
        """The value under ``key`` (local tier, then Redis), loading it with
        ``await loader()`` on a miss — once across every process.

        Raises:
            Exception: whatever ``loader`` raised (nothing is cached then).
            ConfigError: bad ``key`` or ``ttl``.
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
            DeadlineExceededError: the deadline ran out while waiting for another loader.
        """
        bkey, ttl_ms = bounded(key), self.remote._entry_ttl(ttl)
        self._ensure_listener()
        value = self._near(bkey)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        return await self._flights.run(  # type: ignore[no-any-return]
            bkey, lambda: self._load(bkey, loader, ttl_ms)
        )

    async def _load(self, key: str, loader: Callable[[], Awaitable[Any]], ttl_ms: int) -> Any:
        local_ttl = self.local_ttl if ttl_ms == 0 else min(self.local_ttl, ttl_ms / 1000)
        gen = self._gen
        started = False

        async def run() -> Any:
            nonlocal started
            started = True
            return await loader()

        try:
            value = await self._core.get_or_load(key, run, ttl_ms, self._wait)
        except DeadlineExceededError:
            raise
        except STORE_FAILURES as exc:
            if started:
                raise  # the loader's own error
            self._fallback(exc)
            value = await loader()
            self._shared.loads += 1
            if self.on_store_error == "local" and self._unchanged(gen, key):
                self.local.set(key, value, local_ttl)
            return value
        if self._unchanged(gen, key):
            self.local.set(key, value, local_ttl)
        return value
