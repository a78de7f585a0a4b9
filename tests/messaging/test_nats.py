"""NATS JetStream specifics, against a real nats-server -js."""

from __future__ import annotations

import asyncio

import pytest

import buttress as bt
from buttress.messaging import BrokerUnavailableError, Consumer, Message
from buttress.messaging.nats import NatsTransport

from ..servers import NatsServer, free_port
from ._helpers import Running, topic, until


async def test_msg_id_is_deduplicated_by_jetstream(nats_server: NatsServer) -> None:
    transport = await NatsTransport.connect(nats_server.url)
    name = topic()
    first = await transport.publish(name, b"x", msg_id="once")
    again = await transport.publish(name, b"x", msg_id="once")
    other = await transport.publish(name, b"y", msg_id="twice")
    assert first == again != other
    seen: list[Message] = []

    async def handle(msg: Message) -> None:
        seen.append(msg)

    async with Running(Consumer(transport, name, handle, lease=2.0)):
        await until(lambda: len(seen) == 2)
        await asyncio.sleep(0.2)
    assert [m.key for m in seen] == ["once", "twice"]
    await transport.close()


async def test_concurrent_publishes_are_pipelined(nats_server: NatsServer) -> None:
    transport = await NatsTransport.connect(nats_server.url, max_pending_acks=8)
    name = topic()
    ids = await asyncio.gather(*(transport.publish(name, b"x") for _ in range(200)))
    assert sorted(int(i) for i in ids) == list(range(1, 201))
    await transport.close()


async def test_unreachable_broker_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError) as info:
        await NatsTransport.connect(f"nats://127.0.0.1:{free_port()}")
    assert isinstance(info.value, BrokerUnavailableError)


async def test_publish_while_broker_down_is_a_connection_error(nats_factory) -> None:  # type: ignore[no-untyped-def]
    server = nats_factory()
    transport = await NatsTransport.connect(server.url, ack_timeout=0.5)
    await transport.publish("t1", b"x")
    server.kill()
    with pytest.raises(ConnectionError):
        await transport.publish("t1", b"y")
    await transport.close()


def test_options_are_validated() -> None:
    class FakeClient:
        def jetstream(self) -> None:
            return None

    with pytest.raises(bt.ConfigError, match="max_pending_acks must be an int >= 1, got 0"):
        NatsTransport(FakeClient(), max_pending_acks=0)
    with pytest.raises(bt.ConfigError, match=r"nc must be a nats\.aio\.client\.Client"):
        NatsTransport(object())
