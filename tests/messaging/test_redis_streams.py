"""Redis Streams specifics, against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as redis

import buttress as bt
from buttress.messaging import (
    BrokerUnavailableError,
    Consumer,
    ConsumerFetchFailed,
    Message,
    RedisFeatures,
    RedisStreamsTransport,
)

from ..servers import RedisServer, free_port
from ._helpers import Running, topic, until


async def test_features_on_this_server(redis_client: redis.Redis) -> None:
    features = await RedisStreamsTransport(redis_client).features()
    assert features.version >= (6, 2)
    assert features.xautoclaim
    if features.version < (8, 4):
        assert not features.xreadgroup_claim and not features.xnack


async def test_restart_rereads_own_pending_at_once(redis_client: redis.Redis) -> None:
    """The same consumer name, restarted, gets its unacked entries back at once, long
    before the lease would let anyone claim them."""
    transport = RedisStreamsTransport(redis_client)
    name = topic()
    await transport.publish(name, b"a")
    await transport.publish(name, b"b")
    dead = await transport.subscribe(name, group="g", consumer="w1", lease=60.0)
    assert len(await dead.fetch(10, 0.1)) == 2
    again = await transport.subscribe(name, group="g", consumer="w1", lease=60.0)
    got = await again.fetch(10, 0.1)
    assert [m.body for m in got] == [b"a", b"b"] and [m.deliveries for m in got] == [2, 2]
    assert await again.fetch(10, 0.05) == []


async def test_claim_fallback_without_xautoclaim(redis_client: redis.Redis) -> None:
    """Servers before 6.2 have no XAUTOCLAIM: XPENDING + XCLAIM does the same."""
    transport = RedisStreamsTransport(redis_client)
    old = RedisFeatures((6, 0, 0), False, False, False, False)
    name = topic()
    for i in range(3):
        await transport.publish(name, str(i).encode())
    dead = await transport.subscribe(name, group="g", consumer="dead", lease=0.2)
    assert len(await dead.fetch(10, 0.1)) == 3
    live = await transport.subscribe(name, group="g", consumer="live", lease=0.2)
    live._features = old
    got: list[Message] = []
    for _ in range(20):
        got += await live.fetch(10, 0.1)
        if len(got) == 3:
            break
    assert sorted(m.body for m in got) == [b"0", b"1", b"2"]
    assert {m.deliveries for m in got} == {2}


async def test_no_hot_loop_when_idle(redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    client = redis.Redis.from_url(server.url)
    transport = RedisStreamsTransport(client)
    consumer = Consumer(transport, topic(), _noop, lease=2.0, fetch_wait=1.0)
    async with Running(consumer):
        await asyncio.sleep(0.2)
        await client.config_resetstat()
        await asyncio.sleep(2.0)
        stats = await client.info("commandstats")
    calls = sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_x"))
    # Blocking reads of up to claim_interval (0.5 s) plus one claim pass per interval:
    # about 8 in 2 s. A hot loop would make thousands.
    assert calls <= 16, stats
    await client.aclose()


async def _noop(msg: Message) -> None:
    return None


async def test_retention_trims(redis_client: redis.Redis) -> None:
    transport = RedisStreamsTransport(redis_client, max_len=100)
    name = topic()
    for i in range(1000):
        await transport.publish(name, str(i).encode())
    assert await redis_client.xlen(transport.key(name)) < 300


async def test_max_age_trims(redis_client: redis.Redis) -> None:
    transport = RedisStreamsTransport(redis_client, max_age=0.05)
    name = topic()
    for i in range(200):
        await transport.publish(name, str(i).encode())
    await asyncio.sleep(0.1)
    for i in range(200):
        await transport.publish(name, str(i).encode())
    assert await redis_client.xlen(transport.key(name)) < 400


async def test_unreachable_broker_is_a_connection_error() -> None:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    transport = RedisStreamsTransport(client)
    with pytest.raises(ConnectionError) as info:
        await transport.publish("t", b"x")
    assert isinstance(info.value, BrokerUnavailableError)
    await transport.close()


async def test_consumer_rides_out_a_broker_restart(
    redis_factory: Callable[[], RedisServer], recorder
) -> None:  # type: ignore[no-untyped-def]
    server = redis_factory()
    transport = RedisStreamsTransport(redis.Redis.from_url(server.url, socket_connect_timeout=0.2))
    name = topic()
    seen: list[bytes] = []

    async def handle(msg: Message) -> None:
        seen.append(msg.body)

    consumer = Consumer(transport, name, handle, lease=1.0, fetch_wait=0.2)
    async with Running(consumer):
        await transport.publish(name, b"before")
        await until(lambda: seen == [b"before"])
        server.kill()
        await until(lambda: len(recorder.of(ConsumerFetchFailed)) >= 2)
        server.start()  # empty: no persistence; the group is gone too
        await until(lambda: consumer.stats().fetch_errors >= 1)
    assert all(isinstance(e.error, ConnectionError) for e in recorder.of(ConsumerFetchFailed))


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"max_len": 0}, "max_len must be an int >= 1, got 0"),
        ({"max_len": 10, "max_age": 1.0}, "max_age must be None when max_len is set"),
        ({"start": "middle"}, "start must be one of"),
    ],
)
def test_options_are_validated(kwargs: dict[str, object], text: str) -> None:
    with pytest.raises(bt.ConfigError, match=text):
        RedisStreamsTransport(redis.Redis(), **kwargs)  # type: ignore[arg-type]


def test_decode_responses_is_refused() -> None:
    with pytest.raises(bt.ConfigError, match="decode_responses=False"):
        RedisStreamsTransport(redis.Redis(decode_responses=True))
