"""The exactly-once helpers on NATS JetStream (a real nats-server -js per test)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import buttress as bt
from buttress.messaging import SQLiteOutbox, StoreAndForward
from buttress.messaging.nats import NatsTransport

from ..servers import NatsServer


async def _stream(transport: NatsTransport, topic: str) -> list[str]:
    """The Nats-Msg-Id of every message in the topic's stream, in stream order."""
    js = transport.js
    name = transport.stream_name(topic)
    info = await js.stream_info(name)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(name, seq)
        ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
    return ids


async def test_store_and_forward_survives_a_killed_nats_server(
    nats_factory: Callable[[], NatsServer], tmp_path: Path
) -> None:
    """nats-server killed while a producer publishes: the rest is buffered on disk and
    forwarded after the restart; JetStream then holds every message once, in order."""
    server = nats_factory()
    transport = await NatsTransport.connect(server.url, ack_timeout=0.5)
    producer = StoreAndForward(
        transport, tmp_path / "out.db", backoff=bt.Backoff.constant(0.05), drain_timeout=10
    )
    ids = [f"m{i:03d}" for i in range(40)]
    async with producer:
        for i, msg_id in enumerate(ids):
            if i == 15:
                server.kill()
            await producer.publish("events", msg_id.encode(), msg_id=msg_id)
        assert producer.stats().buffered == 25
        server.start()  # same port and store directory
        async with asyncio.timeout(30):
            await producer.flush()
    # A publish whose PubAck was lost may have reached the stream and been forwarded
    # again: JetStream's Nats-Msg-Id dedup keeps one copy.
    assert await _stream(transport, "events") == ids
    await transport.close()


async def test_outbox_relays_to_jetstream_and_resends_are_deduplicated(
    nats_factory: Callable[[], NatsServer], tmp_path: Path
) -> None:
    """Two relays send 120 rows to JetStream; re-sending rows (a relay that died after
    publishing, before deleting) leaves the stream unchanged."""
    server = nats_factory()
    transport = await NatsTransport.connect(server.url)
    db = str(tmp_path / "app.db")
    outbox = SQLiteOutbox(db)
    conn = sqlite3.connect(db)
    outbox.create_table(conn)
    with conn:
        for i in range(120):
            outbox.add(conn, "orders", b"x", key=f"k{i % 4}", msg_id=f"o{i:03d}")
    relays = [outbox.relay(transport, batch=10, poll_min=0.005) for _ in range(2)]
    for relay in relays:
        relay.start()
    for relay in relays:
        await relay.stop()
    assert sum(r.stats().published for r in relays) == 120
    assert conn.execute("SELECT COUNT(*) FROM buttress_outbox").fetchone()[0] == 0
    conn.close()
    for i in range(0, 120, 7):  # the resends
        await transport.publish("orders", b"x", msg_id=f"o{i:03d}")
    stored = await _stream(transport, "orders")
    assert sorted(stored) == [f"o{i:03d}" for i in range(120)]
    for key in range(4):  # per-key order on the wire
        mine = [m for m in stored if int(m[1:]) % 4 == key]
        assert mine == sorted(mine)
    await transport.close()
