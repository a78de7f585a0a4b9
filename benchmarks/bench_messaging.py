"""Messaging: messages per second end to end (publish -> handle -> ack).

One iteration publishes ``BATCH`` messages (in chunks of ``CHUNK`` concurrent publishes,
each confirmed by the broker) and waits until a running consumer has handled and acked
every one of them. Per-message time = iteration time / ``BATCH``; messages/s is its
inverse. Each broker is a private server on a free loopback port, started by the suite.

Contenders per broker: the buttress ``Consumer`` on its transport (batched fetch,
``concurrency = prefetch = FETCH``), a naive loop with the same client (fetch a batch,
handle, ack each; no leases / retries / dead-lettering), and FastStream's subscriber where it has a
comparable one (Redis ``StreamSub`` with a consumer group; NATS JetStream pull
subscriber), all with a trivial handler.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import Contender, RatioColumn, Suite
from _redis import Server as RedisServer
from _targets import af

__all__ = ["suites"]

BATCH = 200
CHUNK = 25
FETCH = 64


class _NatsServer:
    """nats-server -js on a free loopback port, store in a temp dir."""

    def __init__(self) -> None:
        self.port = 0
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="buttress-bench-nats-"))
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    if sock.recv(4096).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


class _Flow:
    """Publish a batch, wait until the consumer side has handled all of it."""

    def __init__(self) -> None:
        self.handled = 0
        self.target = 0
        self.done: asyncio.Event | None = None
        self.started = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def seen(self) -> None:
        self.handled += 1
        if self.handled >= self.target and self.done is not None:
            self.done.set()

    async def start(self) -> None:
        raise NotImplementedError

    async def publish(self) -> Awaitable[Any]:
        raise NotImplementedError

    def publisher(self) -> Callable[[], Awaitable[Any]]:
        raise NotImplementedError

    async def run_batch(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            # each pass of a run measures on a new event loop against a restarted server:
            # start this flow's clients and consumer again
            self.loop, self.started, self.handled, self.target = loop, False, 0, 0
        if not self.started:
            self.started = True
            self.done = asyncio.Event()
            await self.start()
        assert self.done is not None
        self.done.clear()
        self.target += BATCH
        publish = self.publisher()
        for _ in range(BATCH // CHUNK):
            await asyncio.gather(*(publish() for _ in range(CHUNK)))
        await asyncio.wait_for(self.done.wait(), 30)

    def check(self) -> None:
        if self.handled < self.target or self.target == 0:
            raise AssertionError(f"handled {self.handled} of {self.target}")


# -- Redis ------------------------------------------------------------------------------


class _BtRedis(_Flow):
    def __init__(self, server: RedisServer) -> None:
        super().__init__()
        self.server = server

    async def start(self) -> None:
        import redis.asyncio as redis

        from buttress.messaging import Consumer, RedisStreamsTransport

        self.transport = RedisStreamsTransport(redis.Redis.from_url(self.server.url))
        self.topic = f"bt-{uuid.uuid4().hex[:8]}"

        async def handle(msg: Any) -> None:
            self.seen()

        consumer = Consumer(
            self.transport, self.topic, handle, group="g", consumer="c1",
            concurrency=FETCH, prefetch=FETCH, lease=30.0,
        )  # fmt: skip
        self.task = asyncio.ensure_future(consumer.run())

    def publisher(self) -> Callable[[], Awaitable[Any]]:
        transport, topic = self.transport, self.topic
        return lambda: transport.publish(topic, b"x")


class _NaiveRedis(_Flow):
    def __init__(self, server: RedisServer) -> None:
        super().__init__()
        self.server = server

    async def start(self) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(self.server.url)
        self.key = f"naive-{uuid.uuid4().hex[:8]}"
        await self.client.xgroup_create(self.key, "g", id="0", mkstream=True)
        self.task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        client, key = self.client, self.key
        while True:
            reply = await client.xreadgroup("g", "c1", {key: ">"}, count=FETCH, block=1000)
            for _stream, entries in reply or []:
                for entry_id, _fields in entries:
                    self.seen()
                    await client.xack(key, "g", entry_id)

    def publisher(self) -> Callable[[], Awaitable[Any]]:
        client, key = self.client, self.key
        return lambda: client.xadd(key, {b"body": b"x"})


class _FastStreamRedis(_Flow):
    def __init__(self, server: RedisServer) -> None:
        super().__init__()
        self.server = server

    async def start(self) -> None:
        from faststream.redis import RedisBroker, StreamSub

        self.broker = RedisBroker(self.server.url, logger=None)
        self.stream = f"fs-{uuid.uuid4().hex[:8]}"

        @self.broker.subscriber(
            stream=StreamSub(self.stream, group="g", consumer="c1", max_records=FETCH)
        )
        async def handle(body: bytes) -> None:
            self.seen()

        await self.broker.start()

    def publisher(self) -> Callable[[], Awaitable[Any]]:
        broker, stream = self.broker, self.stream
        return lambda: broker.publish(b"x", stream=stream)


# -- NATS -------------------------------------------------------------------------------


class _BtNats(_Flow):
    def __init__(self, server: _NatsServer) -> None:
        super().__init__()
        self.server = server

    async def start(self) -> None:
        from buttress.messaging import Consumer
        from buttress.messaging.nats import NatsTransport

        self.transport = await NatsTransport.connect(self.server.url)
        self.topic = f"bt{uuid.uuid4().hex[:8]}"

        async def handle(msg: Any) -> None:
            self.seen()

        consumer = Consumer(
            self.transport, self.topic, handle, group="g", concurrency=FETCH, prefetch=FETCH,
            lease=30.0,
        )  # fmt: skip
        self.task = asyncio.ensure_future(consumer.run())

    def publisher(self) -> Callable[[], Awaitable[Any]]:
        transport, topic = self.transport, self.topic
        return lambda: transport.publish(topic, b"x")


class _NaiveNats(_Flow):
    def __init__(self, server: _NatsServer) -> None:
        super().__init__()
        self.server = server

    async def start(self) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig

        self.nc = await nats.connect(self.server.url)
        self.js = self.nc.jetstream()
        self.subject = f"nv{uuid.uuid4().hex[:8]}"
        await self.js.add_stream(name=self.subject.upper(), subjects=[self.subject])
        self.psub = await self.js.pull_subscribe(
            self.subject, durable="g", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
        )
        self.task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        import nats.errors

        while True:
            try:
                msgs = await self.psub.fetch(FETCH, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                self.seen()
                await msg.ack()

    def publisher(self) -> Callable[[], Awaitable[Any]]:
        js, subject = self.js, self.subject
        return lambda: js.publish(subject, b"x")


class _FastStreamNats(_Flow):
    def __init__(self, server: _NatsServer) -> None:
        super().__init__()
        self.server = server

    async def start(self) -> None:
        from faststream.nats import JStream, NatsBroker, PullSub

        self.broker = NatsBroker(self.server.url, logger=None)
        self.subject = f"fs{uuid.uuid4().hex[:8]}"
        self.stream = self.subject.upper()

        @self.broker.subscriber(
            self.subject,
            stream=JStream(self.stream),
            pull_sub=PullSub(batch_size=FETCH),
            durable="g",
        )
        async def handle(body: bytes) -> None:
            self.seen()

        await self.broker.start()

    def publisher(self) -> Callable[[], Awaitable[Any]]:
        broker, subject, stream = self.broker, self.subject, self.stream
        return lambda: broker.publish(b"x", subject, stream=stream)


def _faststream() -> bool:
    try:
        import faststream  # noqa: F401
    except ImportError:
        return False
    return True


def _suite(
    name: str,
    title: str,
    broker: str,
    server: Any,
    flows: list[tuple[str, str, str, _Flow, str]],
    order: int,
) -> Suite:
    contenders = [
        Contender(
            key,
            label,
            lib,
            "call",
            "await flow.run_batch()",
            {"flow": flow},
            config=config,
            check=flow.check,
        )
        for key, label, lib, flow, config in flows
    ]
    return Suite(
        name=name,
        title=title,
        kind="async",
        description=(
            f"One iteration: {BATCH} messages published ({CHUNK} concurrent publishes at a "
            f"time, each confirmed by {broker}) and handled + acked by a running consumer "
            f"(fetch batches of {FETCH}). Divide by {BATCH} for the time per message; "
            "messages/s = 1e9 * "
            f"{BATCH} / overhead_ns."
        ),
        baseline=Contender("bare", "bare `await af()`", "-", "-", "await af()", {"af": af}),
        contenders=contenders,
        columns=[RatioColumn("vs naive loop", {}, "naive")],
        notes=[
            "The naive loop has no leases, no retries, no dead-lettering and no drain: "
            "it is the floor for the same client, not a like-for-like peer.",
            "FastStream is a framework (routing, decoding, middlewares) with its own "
            "ack policy; its row shows what that costs on the same broker.",
        ],
        setup=server.start,
        teardown=server.stop,
        order=order,
        min_loops=2,
    )


def suites() -> list[Suite]:
    redis_server, nats_server = RedisServer(), _NatsServer()
    redis_flows: list[tuple[str, str, str, _Flow, str]] = [
        ("bt", "buttress `Consumer` on `RedisStreamsTransport`", "buttress",
         _BtRedis(redis_server), f"Consumer(t, topic, h, concurrency={FETCH}, prefetch={FETCH})"),
        ("naive", "naive XREADGROUP / XACK loop (redis-py)", "redis-py",
         _NaiveRedis(redis_server), f"xreadgroup(count={FETCH}, block=1000); xack each"),
    ]  # fmt: skip
    nats_flows: list[tuple[str, str, str, _Flow, str]] = [
        ("bt", "buttress `Consumer` on `NatsTransport`", "buttress",
         _BtNats(nats_server), f"Consumer(t, topic, h, concurrency={FETCH}, prefetch={FETCH})"),
        ("naive", "naive pull fetch / ack loop (nats-py)", "nats-py",
         _NaiveNats(nats_server), f"psub.fetch({FETCH}); msg.ack() each; js.publish"),
    ]  # fmt: skip
    if _faststream():
        redis_flows.append(
            ("faststream", "FastStream `StreamSub` (consumer group)", "faststream",
             _FastStreamRedis(redis_server), f"StreamSub(group='g', max_records={FETCH})")
        )  # fmt: skip
        nats_flows.append(
            ("faststream", "FastStream JetStream pull subscriber", "faststream",
             _FastStreamNats(nats_server), f"PullSub(batch_size={FETCH}), durable='g'")
        )  # fmt: skip
    return [
        _suite(
            "messaging-redis",
            "Messaging: Redis Streams end to end",
            "Redis (XADD reply)",
            redis_server,
            redis_flows,
            160,
        ),
        _suite(
            "messaging-nats",
            "Messaging: NATS JetStream end to end",
            "JetStream (PubAck)",
            nats_server,
            nats_flows,
            161,
        ),
    ]
