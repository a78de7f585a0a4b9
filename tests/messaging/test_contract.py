"""The same at-least-once semantics on every transport, against real servers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

import buttress as bt
from buttress.messaging import (
    HEADER_DEAD_LETTER_DELIVERIES,
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTER_TOPIC,
    Consumer,
    MemoryTransport,
    Message,
    Reject,
    RequestTimeoutError,
    Transport,
)

from ..servers import NatsServer, RedisServer
from ._helpers import Running, topic, until

KINDS = ["memory", "redis", "nats"]


@pytest.fixture(params=KINDS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    kind = request.param
    if kind == "memory":
        t: Transport = MemoryTransport()
    elif kind == "redis":
        import redis.asyncio as redis

        from buttress.messaging import RedisStreamsTransport

        server: RedisServer = request.getfixturevalue("redis_server")
        t = RedisStreamsTransport(redis.Redis.from_url(server.url))
    else:
        from buttress.messaging.nats import NatsTransport

        nserver: NatsServer = request.getfixturevalue("nats_server")
        t = await NatsTransport.connect(nserver.url)
    try:
        yield t
    finally:
        await t.close()


async def test_publish_consume_ack(transport: Transport) -> None:
    name = topic()
    seen: list[Message] = []

    async def handle(msg: Message) -> None:
        seen.append(msg)

    ids = [
        await transport.publish(name, b"a", msg_id="k1", headers={"X-Trace": "1"}),
        await transport.publish(name, b"b"),
    ]
    async with Running(Consumer(transport, name, handle, group="g", lease=2.0)) as c:
        await until(lambda: len(seen) == 2)
    assert [m.body for m in seen] == [b"a", b"b"]
    assert [m.id for m in seen] == ids
    assert seen[0].key == "k1" and seen[0].headers["X-Trace"] == "1"
    assert seen[1].key == ids[1]
    assert all(m.deliveries == 1 and m.topic == name for m in seen)
    assert c.stats().handled == 2


async def test_failure_is_retried_then_handled(transport: Transport) -> None:
    name = topic()
    calls: list[int] = []

    async def handle(msg: Message) -> None:
        calls.append(msg.deliveries)
        if len(calls) < 3:
            raise RuntimeError("flaky")

    await transport.publish(name, b"x")
    consumer = Consumer(
        transport, name, handle, group="g", lease=1.0, backoff=bt.Backoff.constant(0.05)
    )
    async with Running(consumer) as c:
        await until(lambda: c.stats().handled == 1)
    assert calls == [1, 2, 3]
    assert c.stats().retried == 2


async def test_poison_goes_to_dead_letter_after_max_deliveries(transport: Transport) -> None:
    name = topic()
    calls = 0

    async def handle(msg: Message) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("poison")

    dead: list[Message] = []

    async def collect(msg: Message) -> None:
        dead.append(msg)

    await transport.publish(name, b"poison", msg_id="p1")
    consumer = Consumer(
        transport,
        name,
        handle,
        group="g",
        lease=1.0,
        max_deliveries=3,
        backoff=bt.Backoff.constant(0.0),
    )
    dlq = Consumer(transport, f"{name}.dlq", collect, group="ops", lease=1.0)
    async with Running(consumer), Running(dlq):
        await until(lambda: len(dead) == 1)
        await asyncio.sleep(0.3)
    assert calls == 3
    copy = dead[0]
    assert copy.body == b"poison" and copy.key == "p1"
    assert copy.headers[HEADER_DEAD_LETTER_TOPIC] == name
    assert copy.headers[HEADER_DEAD_LETTER_DELIVERIES] == "3"
    assert copy.headers[HEADER_DEAD_LETTER_REASON] == "max_deliveries"
    assert consumer.stats().dead_lettered == 1


async def test_reject_dead_letters_at_once(transport: Transport) -> None:
    name = topic()

    async def handle(msg: Message) -> None:
        raise Reject("unparseable")

    dead: list[Message] = []

    async def collect(msg: Message) -> None:
        dead.append(msg)

    await transport.publish(name, b"junk")
    async with (
        Running(Consumer(transport, name, handle, group="g", lease=1.0)),
        Running(Consumer(transport, f"{name}.dlq", collect, group="ops", lease=1.0)),
    ):
        await until(lambda: len(dead) == 1)
    assert dead[0].headers[HEADER_DEAD_LETTER_REASON] == "unparseable"
    assert dead[0].headers[HEADER_DEAD_LETTER_DELIVERIES] == "1"


async def test_abandoned_message_is_redelivered_with_count(transport: Transport) -> None:
    """A consumer that takes a message and dies (no ack) loses nothing: after the lease
    the message goes to another consumer, and the delivery count says 2."""
    name = topic()
    await transport.publish(name, b"m")
    dead_one = await transport.subscribe(name, group="g", consumer="dead", lease=0.5)
    first = await dead_one.fetch(10, 1.0)
    assert [m.deliveries for m in first] == [1]
    seen: list[Message] = []

    async def handle(msg: Message) -> None:
        seen.append(msg)

    async with Running(Consumer(transport, name, handle, group="g", consumer="live", lease=0.5)):
        await until(lambda: len(seen) == 1)
    assert seen[0].id == first[0].id and seen[0].deliveries == 2


async def test_fan_out_and_work_queue(transport: Transport) -> None:
    name = topic()
    n = 20
    for i in range(n):
        await transport.publish(name, str(i).encode())
    got: dict[str, list[bytes]] = {"a1": [], "a2": [], "b": []}

    def handler(who: str):  # type: ignore[no-untyped-def]
        async def handle(msg: Message) -> None:
            got[who].append(msg.body)
            await asyncio.sleep(0.005)

        return handle

    async with (
        Running(Consumer(transport, name, handler("a1"), group="A", consumer="a1", lease=2.0)),
        Running(Consumer(transport, name, handler("a2"), group="A", consumer="a2", lease=2.0)),
        Running(Consumer(transport, name, handler("b"), group="B", consumer="b", lease=2.0)),
    ):
        await until(lambda: len(got["a1"]) + len(got["a2"]) == n and len(got["b"]) == n)
    expected = {str(i).encode() for i in range(n)}
    assert Counter(got["a1"] + got["a2"]) == Counter(expected)  # shared, each once
    assert set(got["b"]) == expected  # fan-out: group B gets everything too


async def test_request_reply_and_timeout(transport: Transport) -> None:
    name = topic()

    async def handle(msg: Message) -> bytes:
        return msg.body.upper()

    async with Running(Consumer(transport, name, handle, group="svc", lease=2.0)):
        reply = await transport.request(name, b"ping", timeout=5.0)
        assert reply.body == b"PING"
    with pytest.raises(RequestTimeoutError):
        await transport.request(topic(), b"nobody", timeout=0.2)


async def test_drain_never_acks_unfinished(transport: Transport) -> None:
    name = topic()
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(msg: Message) -> None:
        started.set()
        await asyncio.sleep(30)
        finished.append(msg.id)

    await transport.publish(name, b"long")
    consumer = Consumer(transport, name, slow, group="g", lease=1.0, drain_timeout=0.1)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 10)
    await consumer.stop()
    await task
    assert finished == [] and consumer.stats().released == 1
    assert consumer.stats().handled == 0
    # The message was given back: the next consumer gets it.
    seen: list[Message] = []

    async def handle(msg: Message) -> None:
        seen.append(msg)

    async with Running(Consumer(transport, name, handle, group="g", lease=1.0)):
        await until(lambda: len(seen) == 1)
    assert seen[0].body == b"long" and seen[0].deliveries == 2


async def test_lease_is_extended_for_a_long_handler(transport: Transport) -> None:
    """A handler that runs for three leases keeps its message: the other consumer of
    the group never gets it."""
    name = topic()
    calls: list[str] = []

    async def slow(msg: Message) -> None:
        calls.append("slow")
        await asyncio.sleep(1.5)

    async def fast(msg: Message) -> None:
        calls.append("fast")

    await transport.publish(name, b"long")
    a = Consumer(transport, name, slow, group="g", consumer="a", lease=0.5)
    async with Running(a):
        await until(lambda: calls == ["slow"])
        async with Running(Consumer(transport, name, fast, group="g", consumer="b", lease=0.5)):
            await until(lambda: a.stats().handled == 1)
    assert calls == ["slow"]


async def test_concurrency_limit(transport: Transport) -> None:
    name = topic()
    running = peak = done = 0

    async def handle(msg: Message) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done += 1

    for i in range(30):
        await transport.publish(name, str(i).encode())
    async with Running(Consumer(transport, name, handle, group="g", concurrency=4, lease=2.0)):
        await until(lambda: done == 30)
    assert 1 < peak <= 4
