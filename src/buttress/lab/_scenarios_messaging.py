"""The consumer-crash scenario: message consumers crash at random under load.

Each request of the load becomes a message: the service publishes it and answers once
a consumer has *applied its effect* (run the arm's request and recorded it). Consumers
(:data:`CONSUMERS` of them) each live an exponential lifetime of mean :data:`LIFETIME`
seconds, then crash like a killed process: whatever they held is neither acked nor
given back, and a fresh consumer takes their place (both arms restart them; what
differs is how they consume).

* The **naked** consumer is the naive one: it acks each message as soon as it receives
  it, then handles it. A crash loses the messages it had received.
* The **protected** consumer is :class:`buttress.messaging.Consumer`: ack only after
  the effect, leases, redelivery with broker delivery counts. A crash leaves its
  messages pending; after :data:`LEASE` seconds another consumer gets them. Effects
  are deduplicated by message key (an inbox, here a set), so a message whose effect was
  applied but whose ack died with the consumer is *absorbed*, not applied twice.

Transport: in memory, or Redis Streams when the lab has ``--redis``. The notes report
published, processed (effects applied), duplicates absorbed, and lost (published but
never processed once the backlog stops moving at the end of the arm, see :data:`SETTLE`):
lost must be 0 for the protected arm.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import buttress as bt

from ..messaging import Consumer, MemoryTransport, Message, Subscription, Transport
from ._hosting import HostContext, Service
from ._hypotheses import Hypothesis
from ._model import BuildContext, Phase, Scenario, register
from ._results import ArmResult
from ._upstream import Faults

__all__ = [
    "CONSUMERS",
    "CONSUMER_CRASH",
    "LEASE",
    "LIFETIME",
    "SETTLE",
    "SETTLE_MAX",
    "ConsumerCrashService",
    "nothing_lost",
]

CONSUMERS = 3
"""Consumers running at once."""
LIFETIME = 0.5
"""Mean seconds a consumer lives before it crashes (exponentially distributed)."""
LEASE = 0.3
"""Seconds a message stays leased to a consumer (protected arm) before redelivery."""
BUDGET = 1.0
"""Seconds a request waits for its message's effect before it counts as failed."""
SETTLE = 1.0
"""Seconds without progress the arm's end waits for the backlog before counting what was
lost: it waits while messages keep being processed (up to :data:`SETTLE_MAX`), and counts
only time the event loop actually ran (a stall of a busy machine is not patience)."""
SETTLE_MAX = 10.0
"""The longest the arm's end waits for the backlog, in seconds of the loop running."""


class _Crashable:
    """A subscription proxy: after :meth:`crash` it does nothing, as a dead process."""

    def __init__(self, inner: Subscription) -> None:
        self.inner = inner
        self.lease = inner.lease
        self.dead = False

    def crash(self) -> None:
        self.dead = True

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        if self.dead:  # a dead process fetches nothing; it waits to be reaped
            await asyncio.Event().wait()
        return await self.inner.fetch(max_messages, wait)

    async def ack(self, message: Message) -> None:
        if not self.dead:
            await self.inner.ack(message)

    async def retry(self, message: Message, delay: float) -> None:
        if not self.dead:
            await self.inner.retry(message, delay)

    async def reject(self, message: Message) -> None:
        if not self.dead:
            await self.inner.reject(message)

    async def extend(self, messages: Sequence[Message]) -> None:
        if not self.dead:
            await self.inner.extend(messages)

    async def close(self) -> None:
        return None


class _CrashableTransport:
    """Hands out crashable subscriptions; everything else goes to the real transport."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.name = inner.name
        self.last: _Crashable | None = None

    async def publish(self, topic: str, body: bytes, **kw: Any) -> str:
        return await self.inner.publish(topic, body, **kw)

    async def subscribe(self, topic: str, *, group: str, consumer: str, lease: float) -> Any:
        sub = _Crashable(
            await self.inner.subscribe(topic, group=group, consumer=consumer, lease=lease)
        )
        self.last = sub
        return sub

    async def request(self, topic: str, body: bytes, **kw: Any) -> Message:
        return await self.inner.request(topic, body, **kw)

    async def reply(self, message: Message, body: bytes, **kw: Any) -> None:
        await self.inner.reply(message, body, **kw)

    async def close(self) -> None:
        await self.inner.close()


class ConsumerCrashService:
    """The service both arms host: publish a message per request, answer when a
    consumer applied its effect. See the module docs."""

    def __init__(self, context: HostContext, transport: Transport, topic: str) -> None:
        self.random = context.random
        self.arm = context.arm
        self.transport = transport
        self.topic = topic
        self.calls: dict[str, Callable[[], Awaitable[Any]]] = {}
        self.waiters: dict[str, asyncio.Future[Any]] = {}
        self.published = 0
        self.applied: set[str] = set()
        self.duplicates = 0
        self.crashes = 0
        self.lost = 0
        self.settled = asyncio.Event()

    async def serve(self, call: Callable[[], Awaitable[Any]]) -> Any:
        key = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls[key] = call
        self.waiters[key] = future
        self.published += 1
        self.settled.clear()
        await self.transport.publish(self.topic, key.encode(), msg_id=key)
        try:
            async with asyncio.timeout(BUDGET):
                return await asyncio.shield(future)
        finally:
            if future.done() and not future.cancelled():
                future.exception()

    def _applied(self, key: str) -> None:
        self.applied.add(key)
        if len(self.applied) >= self.published:
            self.settled.set()

    async def effect(self, key: str) -> None:
        """Apply the request's effect once: run its call, record it, answer it."""
        if key in self.applied:
            self.duplicates += 1  # absorbed by the inbox
            return
        call = self.calls.get(key)
        if call is None:
            return
        future = self.waiters[key]
        try:
            result = await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._applied(key)  # the request's effect is its (failed) answer
            if not future.done():
                future.set_exception(exc)
            return
        self._applied(key)
        if not future.done():
            future.set_result(result)

    def lifetime(self) -> float:
        return self.random.expovariate(1.0 / LIFETIME)

    def notes(self) -> Mapping[str, float]:
        return {
            "published": self.published,
            "processed": len(self.applied),
            "duplicates_absorbed": self.duplicates,
            "lost": self.lost,
            "crashes": self.crashes,
        }


async def _naive_consumer(service: ConsumerCrashService, transport: _CrashableTransport) -> None:
    """Ack on receive, then handle: what a crash holds is gone."""
    sub = await transport.subscribe(service.topic, group="naive", consumer="naive", lease=LEASE)
    assert isinstance(sub, _Crashable)
    while True:
        for msg in await sub.fetch(8, 0.1):
            await sub.ack(msg)
            await service.effect(msg.body.decode())


async def _run_consumers(
    service: ConsumerCrashService,
    make_transport: Callable[[], Awaitable[Transport]],
    start: Callable[[ConsumerCrashService, _CrashableTransport], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """Keep CONSUMERS consumers running; each crashes after its lifetime and is replaced."""

    async def one_slot() -> None:
        while not stop.is_set():
            transport = _CrashableTransport(await make_transport())
            task = asyncio.ensure_future(start(service, transport))
            try:
                await asyncio.wait_for(asyncio.shield(stop.wait()), service.lifetime())
            except TimeoutError:
                service.crashes += 1  # dies where it stands: no ack, no give-back
            if transport.last is not None:
                transport.last.crash()
            # Reap it. Cancel until it is done: redis-py 8 can swallow a cancellation that
            # lands inside a blocking XREADGROUP and return normally, and the dead consumer
            # then waits for ever on its next fetch.
            while not task.done():
                task.cancel()
                await asyncio.wait((task,), timeout=0.05)
            if not task.cancelled():
                task.exception()  # retrieved: a crash's own error is not news

    await asyncio.gather(*(one_slot() for _ in range(CONSUMERS)))


async def _protected_consumer(
    service: ConsumerCrashService, transport: _CrashableTransport
) -> None:
    async def handle(msg: Message) -> None:
        await service.effect(msg.key)

    consumer = Consumer(
        transport,
        service.topic,
        handle,
        group="workers",
        consumer=uuid.uuid4().hex[:8],
        concurrency=4,
        lease=LEASE,
        fetch_wait=0.1,
        drain_timeout=0.0,
        max_deliveries=None,
        backoff=bt.Backoff.constant(0.0),
    )
    await consumer.run()


@contextlib.asynccontextmanager
async def _host_service(context: HostContext) -> AsyncIterator[Service]:
    topic = f"lab-{context.arm}-{uuid.uuid4().hex[:8]}"
    shared: Transport
    closers: list[Callable[[], Awaitable[None]]] = []
    if context.redis_url is not None:
        import redis.asyncio as redis

        from ..messaging import RedisStreamsTransport

        client = redis.Redis.from_url(context.redis_url)
        shared = RedisStreamsTransport(client, prefix="buttress:lab:")
        closers.append(client.aclose)
    else:
        shared = MemoryTransport()

    async def make_transport() -> Transport:
        return shared

    service = ConsumerCrashService(context, shared, topic)
    start = _naive_consumer if context.arm == "naked" else _protected_consumer
    stop = asyncio.Event()
    runner = asyncio.ensure_future(_run_consumers(service, make_transport, start, stop))
    try:
        yield service
    finally:
        await _settle(service)
        service.lost = service.published - len(service.applied)
        stop.set()
        await asyncio.wait((runner,))
        for close in closers:
            await close()


async def _settle(service: ConsumerCrashService, step: float = 0.05) -> None:
    """Wait until every published message was processed, or until the loop has run
    :data:`SETTLE` seconds without one more processed (:data:`SETTLE_MAX` in all).

    Time is counted in steps of ``step``; a step that took longer (the machine was busy,
    the loop stalled) counts as at most two, so a starved or frozen process does not use
    up the consumers' time to redeliver what crashed consumers held."""
    loop = asyncio.get_running_loop()
    idle = ran = 0.0
    done = len(service.applied)
    while not service.settled.is_set() and idle < SETTLE and ran < SETTLE_MAX:
        before = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.settled.wait(), step)
        spent = min(loop.time() - before, 2 * step)
        ran += spent
        idle = 0.0 if len(service.applied) > done else idle + spent
        done = len(service.applied)


def nothing_lost() -> Hypothesis:
    """The protected arm lost no message: every one published was processed."""

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        lost = protected.notes.get("lost", -1)
        published = protected.notes.get("published", 0)
        dup = protected.notes.get("duplicates_absorbed", 0)
        return lost == 0 and published > 0, (
            f"lost {lost:g} of {published:g} (naked lost {naked.notes.get('lost', 0):g}); "
            f"{dup:g} duplicates absorbed"
        )

    return Hypothesis("protected loses no message", test)


def _protect(ctx: BuildContext) -> bt.Policy:
    return bt.pipeline(bt.Timeout(1.0))


CONSUMER_CRASH = register(
    Scenario(
        name="consumer-crash",
        description="message consumers crash at random under load; none may lose a message",
        phases=(Phase("crashing", 5.0, Faults(latency=0.002)),),
        protect=_protect,
        hypotheses=(nothing_lost(),),
        host=_host_service,
        quick=1.5,
    )
)
