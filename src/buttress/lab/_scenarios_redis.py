"""The redis-outage scenario: the Redis behind a shared rate limit turns slow, then dies.

It needs a Redis (``buttress lab --redis URL``), which it never harms: each arm reaches it
through its own :class:`~buttress.chaos.ProxyServer` fault proxy on loopback, and the
faults are the proxy's. Every request first asks a rate limit shared through Redis
(:data:`LIMIT` per second, above the offered load: when Redis is healthy it admits
everything), then calls the upstream, which stays healthy throughout. Phases:

* **healthy**;
* **redis-slow**: every Redis answer is held :data:`SLOW_MS` ms (a latency toxic);
* **redis-down**: the proxy is disabled: connections are closed and refused;
* **recovered**: the proxy is back.

The **naked** service does what a hand-written shared limit tends to do: a fixed-window
counter (``INCR`` + ``EXPIRE`` in one transaction) with 1 s socket timeouts and no
fallback, so Redis's trouble becomes the service's: slow while Redis is slow, failing
while it is down. The **protected** service asks a :class:`~buttress.RateLimiter` on a
:class:`~buttress.RedisStore` with ``on_store_error="local"``: a store call that takes
over :data:`STORE_TIMEOUT` s, or fails, is decided by a local limiter instead, a store
breaker then skips Redis until a probe finds it back, and the shared limit resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import buttress as bt

from .._events import Event, StoreFellBack
from ._hosting import HostContext, Service
from ._hypotheses import Hypothesis, answered_at_least
from ._model import BuildContext, Phase, Scenario, register
from ._results import ArmResult

__all__ = ["LIMIT", "REDIS_OUTAGE", "SLOW_MS", "STORE_TIMEOUT", "NaiveLimitError"]

LIMIT = 150
"""Requests per second the shared limit admits: above the lab's default 100/s."""
BURST = 20
SLOW_MS = 250
"""Milliseconds the fault proxy holds each Redis answer in the redis-slow phase."""
STORE_TIMEOUT = 0.05
"""Seconds the protected limiter waits for Redis before deciding locally."""
SOCKET_TIMEOUT = 1.0


class NaiveLimitError(Exception):
    """The naked service's fixed-window counter said no."""


def _redis_address(url: str) -> tuple[str, int, int]:
    """``(host, port, db)`` of a ``redis://`` URL (the proxy forwards TCP, so a unix
    socket URL cannot be proxied)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise bt.ConfigError(
            f"the redis-outage scenario proxies Redis over TCP: --redis must be a "
            f"redis://host:port URL, got {url!r}"
        )
    db = int(parts.path.lstrip("/") or 0)
    return parts.hostname, parts.port or 6379, db


def _client(host: str, port: int, db: int, password: str | None) -> Any:
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis(
        host=host,
        port=port,
        db=db,
        password=password,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # the limiter decides what a failure means
    )


class _Base:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.redis_errors = 0

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()


class _NaiveLimit(_Base):
    """A fixed window per second in Redis; any Redis error fails the request."""

    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(client)
        self.prefix = prefix

    async def serve(self, call: Callable[[], Awaitable[Any]]) -> Any:
        key = f"{self.prefix}:{int(time.time())}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                count, _ = await pipe.incr(key).expire(key, 2).execute()
        except Exception:
            self.redis_errors += 1
            raise
        if count > LIMIT:
            raise NaiveLimitError("over the limit")
        return await call()

    def notes(self) -> Mapping[str, float]:
        return {"redis errors": self.redis_errors}


class _ProtectedLimit(_Base):
    """A buttress RateLimiter on the proxied Redis, deciding locally when it fails."""

    def __init__(self, client: Any, name: str, recovery_start: float | None, scale: float):
        super().__init__(client)
        self.fallbacks = 0
        self.last_fallback: float | None = None
        self.recovery_start = recovery_start
        self.limiter = bt.RateLimiter(
            rate=LIMIT,
            burst=BURST,
            store=bt.RedisStore(client, prefix="buttress-lab:"),
            name=name,
            on_store_error="local",
            store_timeout=STORE_TIMEOUT,
            # Probe Redis again soon: a lab phase lasts seconds, not minutes.
            store_breaker=bt.CircuitBreaker(
                consecutive_failures=2, open_for=max(0.05, min(0.5, scale / 40))
            ),
            listeners=[self._on_event],
        )
        self.started = time.monotonic()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, StoreFellBack):
            self.fallbacks += 1
            self.last_fallback = time.monotonic() - self.started

    async def serve(self, call: Callable[[], Awaitable[Any]]) -> Any:
        return await self.limiter.call(call)

    def notes(self) -> Mapping[str, float]:
        notes: dict[str, float] = {"store fallbacks": self.fallbacks}
        if self.recovery_start is not None:
            last = self.last_fallback
            after = 0.0 if last is None else max(0.0, last - self.recovery_start)
            notes["local decisions after recovery (s)"] = round(after, 3)
        return notes


async def _drive_faults(proxy: Any, spans: tuple[Any, ...], started: float) -> None:
    """Apply each phase's Redis fault on the proxy at the phase's start."""
    loop = asyncio.get_running_loop()
    for span in spans:
        delay = started + span.start - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if span.name == "redis-slow":
            proxy.add_toxic("latency", name="slow", latency=SLOW_MS)
        elif span.name == "redis-down":
            proxy.remove_all_toxics()
            proxy.disable()
        else:
            proxy.remove_all_toxics()
            proxy.enable()


@contextlib.asynccontextmanager
async def _host(context: HostContext) -> AsyncIterator[Service]:
    from urllib.parse import urlsplit

    from ..chaos import ProxyServer

    if context.redis_url is None:  # pragma: no cover - the runner refuses to run it without
        raise bt.ConfigError("the redis-outage scenario needs --redis URL")
    host, port, db = _redis_address(context.redis_url)
    password = urlsplit(context.redis_url).password
    run = secrets.token_hex(6)
    async with ProxyServer() as server:
        proxy = server.create("redis", upstream=f"{host}:{port}")
        client = _client(proxy.host, proxy.port, db, password)
        recovery = next((s.start for s in context.spans if s.name == "recovered"), None)
        service: _NaiveLimit | _ProtectedLimit
        if context.arm == "naked":
            service = _NaiveLimit(client, f"buttress-lab:naive:{run}")
        else:
            service = _ProtectedLimit(client, f"redis-outage-{run}", recovery, context.duration)
        faults = asyncio.ensure_future(
            _drive_faults(proxy, context.spans, asyncio.get_running_loop().time())
        )
        try:
            yield service
        finally:
            faults.cancel()
            await asyncio.wait([faults])
            await service.aclose()


def _protect(ctx: BuildContext) -> bt.Policy:
    # Built before any arm runs: a URL the proxy cannot serve fails here, before any load.
    if ctx.redis_url is not None:
        _redis_address(ctx.redis_url)
    # The shared limit lives in the hosted service; the client itself only bounds waits.
    return bt.pipeline(bt.Timeout(2.0))


def _phase_p99_below_naked(phase: str, factor: float) -> Hypothesis:
    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        ours, theirs = protected.phase(phase).p99, naked.phase(phase).p99
        if ours is None or theirs is None:
            return False, "no requests in the phase"
        return ours <= factor * theirs, f"{ours * 1000:.1f} ms vs {theirs * 1000:.1f} ms"

    return Hypothesis(f"protected p99 in {phase} <= {factor:g} x naked", test)


def _phase_success_beats_naked(phase: str, by: float) -> Hypothesis:
    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        ours = protected.phase(phase).success_rate
        theirs = naked.phase(phase).success_rate
        return ours >= theirs + by, f"{ours * 100:.1f} % vs {theirs * 100:.1f} %"

    return Hypothesis(f"protected success in {phase} >= naked + {by * 100:g} pts", test)


def _back_on_redis(share: float) -> Hypothesis:
    """The protected limiter stops deciding locally within ``share`` of the recovery
    phase: its store breaker found Redis back."""

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        after = protected.notes.get("local decisions after recovery (s)")
        spans = [s for s in protected.spans if s.name == "recovered"]
        if after is None or not spans:
            return False, "no recovery phase"
        allowed = share * (spans[0].end - spans[0].start)
        return after <= allowed, f"last local decision {after * 1000:.0f} ms into recovery"

    return Hypothesis(
        f"protected is back on Redis within {share * 100:g} % of the recovery phase", test
    )


REDIS_OUTAGE = register(
    Scenario(
        name="redis-outage",
        description="the Redis behind a shared rate limit turns slow, then dies, then returns",
        phases=(
            Phase("healthy", 2.5),
            Phase("redis-slow", 2.5),
            Phase("redis-down", 2.5),
            Phase("recovered", 2.5),
        ),
        protect=_protect,
        hypotheses=(
            answered_at_least(0.95),
            _phase_success_beats_naked("redis-down", 0.5),
            _phase_p99_below_naked("redis-slow", 0.5),
            _back_on_redis(0.5),
        ),
        needs=("redis",),
        host=_host,
    )
)
