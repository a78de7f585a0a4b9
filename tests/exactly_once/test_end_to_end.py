"""Outbox → relay → Redis Streams → consumer → inbox: every order's effect happens once,
although the broker delivers some messages twice."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from buttress.messaging import (
    Consumer,
    InboxDuplicate,
    Message,
    RedisInbox,
    RedisStreamsTransport,
    SQLiteInbox,
    SQLiteOutbox,
)

from ..conftest import Recorder
from ..messaging._helpers import Running, until


@pytest.mark.parametrize("inbox_kind", ["sqlite", "redis"])
async def test_duplicates_on_the_wire_have_one_effect(
    tmp_path: Path, redis_client: Any, table: str, recorder: Recorder, inbox_kind: str
) -> None:
    """30 orders go out through the outbox; each is also re-sent once with the same
    msg_id (what a relay that died after publishing does). A consumer with four
    workers applies each order exactly once."""
    app_db = str(tmp_path / "app.db")
    effects_db = str(tmp_path / "effects.db")
    with sqlite3.connect(effects_db) as conn:
        conn.execute("CREATE TABLE applied (order_id TEXT, n INTEGER)")
    transport = RedisStreamsTransport(redis_client, prefix=f"{table}:")
    outbox = SQLiteOutbox(app_db)
    conn = sqlite3.connect(app_db)
    outbox.create_table(conn)
    with conn:
        for i in range(30):
            outbox.add(conn, "orders", f"order-{i}".encode(), msg_id=f"order-{i}")
    conn.close()
    async with outbox.relay(transport, poll_min=0.01):
        pass  # drained on exit
    for i in range(30):  # the resends
        await transport.publish("orders", f"order-{i}".encode(), msg_id=f"order-{i}")

    def apply(c: sqlite3.Connection, body: bytes) -> None:
        c.execute("INSERT INTO applied VALUES (?, 1)", (body.decode(),))

    if inbox_kind == "sqlite":
        sql_inbox = SQLiteInbox(effects_db)
        await sql_inbox.create_table()

        async def handle(msg: Message) -> None:
            await sql_inbox.process(msg.key, lambda c: apply(c, msg.body))

    else:
        redis_inbox = RedisInbox(redis_client, prefix=f"{table}:inbox:")
        lock = asyncio.Lock()

        async def effect(body: bytes) -> None:
            async with lock:
                await asyncio.to_thread(_apply_sync, effects_db, body)

        async def handle(msg: Message) -> None:
            await redis_inbox.process(msg.key, effect, msg.body)

    consumer = Consumer(transport, "orders", handle, group="billing", concurrency=4)
    async with Running(consumer):
        await until(lambda: consumer.stats().handled >= 60, limit=20)
    with sqlite3.connect(effects_db) as c:
        rows = c.execute("SELECT order_id, COUNT(*) FROM applied GROUP BY order_id").fetchall()
    assert len(rows) == 30
    assert all(count == 1 for _, count in rows)
    assert len(recorder.of(InboxDuplicate)) == 30


def _apply_sync(db: str, body: bytes) -> None:
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO applied VALUES (?, 1)", (body.decode(),))
