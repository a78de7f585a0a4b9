"""The transactional outbox and its relay: atomic with the business write, leased,
ordered per key, recovered after a crash, backing off while the broker is down."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import pytest

import buttress as bt
from buttress.messaging import (
    OutboxLag,
    OutboxPublished,
    OutboxPublishFailed,
    OutboxRelay,
    PostgresOutbox,
    SQLiteOutbox,
)
from buttress.testing import FakeClock

from ..conftest import Recorder
from .conftest import Recording


def _fill(db: str, outbox: SQLiteOutbox, n: int, keys: int) -> None:
    conn = sqlite3.connect(db)
    outbox.create_table(conn)
    with conn:
        for i in range(n):
            key = f"k{i % keys}" if keys else None
            outbox.add(conn, "orders", f"{key}:{i}".encode(), key=key, msg_id=f"m{i}")
    conn.close()


def _per_key_in_order(sent: list[tuple[str, str, bytes]]) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    for _, _, body in sent:
        key, index = body.decode().split(":")
        seen[key].append(int(index))
    for key, indexes in seen.items():
        assert indexes == sorted(indexes), f"key {key} out of order: {indexes}"


def _owners(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(DISTINCT lease_owner) FROM buttress_outbox"
                " WHERE lease_owner IS NOT NULL"
            ).fetchone()[0]
        )


def _pending(db: str, table: str = "buttress_outbox") -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_add_commits_and_rolls_back_with_the_business_write(
    db: str, memory_publisher: Recording
) -> None:
    """A row added in a rolled-back transaction never exists; a committed one is sent."""
    outbox = SQLiteOutbox(db)
    conn = sqlite3.connect(db)
    outbox.create_table(conn)
    conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.commit()
    try:
        with conn:
            conn.execute("INSERT INTO orders VALUES (1)")
            outbox.add(conn, "orders", b"lost", msg_id="lost")
            raise RuntimeError("business rule failed")
    except RuntimeError:
        pass
    with conn:
        conn.execute("INSERT INTO orders VALUES (2)")
        msg_id = outbox.add(conn, "orders", b"kept", headers={"h": "v"})
    conn.close()
    async with outbox.relay(memory_publisher, poll_min=0.01) as relay:
        await _until(lambda: len(memory_publisher.sent) == 1)
    assert memory_publisher.sent == [("orders", msg_id, b"kept")]
    assert relay.stats().published == 1
    assert _pending(db) == 0


async def _until(check: Any, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_two_sqlite_relays_never_double_publish_and_keep_key_order(
    db: str, redis_publisher: Recording
) -> None:
    """Two relays (own connections, as two processes) racing over 400 rows in 8 keys:
    every row is published exactly once and each key's rows go out in order."""
    outbox = SQLiteOutbox(db)
    _fill(db, outbox, 400, keys=8)
    relays = [
        outbox.relay(redis_publisher, batch=4, poll_min=0.001, poll_max=0.01) for _ in range(2)
    ]
    # Hold the broker until both relays hold a batch, so they really race.
    redis_publisher.gate = asyncio.Event()
    for relay in relays:
        relay.start()
    await _until(lambda: _owners(db) == 2)
    redis_publisher.gate.set()
    await _until(lambda: _pending(db) == 0, limit=20)
    for relay in relays:
        await relay.stop()
    ids = [msg_id for _, msg_id, _ in redis_publisher.sent]
    assert len(ids) == 400 and len(set(ids)) == 400
    _per_key_in_order(redis_publisher.sent)
    assert all(r.stats().published > 0 for r in relays)  # both took part
    stream = await redis_publisher.inner._client.xlen(redis_publisher.inner.key("orders"))
    assert stream == 400


async def test_two_postgres_relays_never_double_publish_and_keep_key_order(
    pg: str, table: str, redis_publisher: Recording
) -> None:
    """Two relays racing with FOR UPDATE SKIP LOCKED: each row once, per-key order."""
    import psycopg

    outbox = PostgresOutbox(pg, table=table)
    await outbox.create_table()
    async with await psycopg.AsyncConnection.connect(pg) as conn, conn.transaction():
        for i in range(300):
            key = f"k{i % 6}"
            await outbox.add(conn, "orders", f"{key}:{i}".encode(), key=key, msg_id=f"m{i}")
    relays = [
        outbox.relay(redis_publisher, batch=10, poll_min=0.001, poll_max=0.01) for _ in range(3)
    ]
    for relay in relays:
        relay.start()
    await _until(lambda: len(redis_publisher.sent) >= 300, limit=20)
    for relay in relays:
        await relay.stop()
    ids = [msg_id for _, msg_id, _ in redis_publisher.sent]
    assert len(ids) == 300 and len(set(ids)) == 300
    _per_key_in_order(redis_publisher.sent)
    assert await relays[0].lag() == 0.0


_DEAD_RELAY = """
import asyncio, sys
from buttress.messaging import SQLiteOutbox

class Hang:
    async def publish(self, topic, body, *, msg_id=None, headers=None):
        print("claimed", flush=True)
        await asyncio.Event().wait()

async def main():
    relay = SQLiteOutbox(sys.argv[1]).relay(Hang(), batch=5, lease=30, owner="doomed")
    await relay.run()

asyncio.run(main())
"""


async def test_relay_killed_mid_batch_rows_recovered_after_lease(
    db: str, memory_publisher: Recording, tmp_path: Any
) -> None:
    """A relay process killed with SIGKILL while publishing leaves its batch leased;
    another relay leaves those rows alone until the lease expires, then sends them."""
    outbox = SQLiteOutbox(db)
    _fill(db, outbox, 8, keys=0)
    script = tmp_path / "dead_relay.py"
    script.write_text(_DEAD_RELAY)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), db, stdout=subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"claimed"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    with sqlite3.connect(db) as conn:
        leased = conn.execute(
            "SELECT COUNT(*) FROM buttress_outbox WHERE lease_owner = 'doomed'"
        ).fetchone()[0]
    assert leased == 5

    skew = [0.0]
    late = SQLiteOutbox(db, now=lambda: time.time() + skew[0])
    relay = late.relay(memory_publisher, poll_min=0.01, poll_max=0.02)
    relay.start()
    await _until(lambda: len(memory_publisher.sent) == 3)  # the 3 unleased rows
    await asyncio.sleep(0.05)
    assert len(memory_publisher.sent) == 3
    skew[0] = 31.0  # the dead relay's lease (30 s) runs out
    await _until(lambda: len(memory_publisher.sent) == 8)
    await relay.stop()
    assert sorted(m for _, m, _ in memory_publisher.sent) == sorted(f"m{i}" for i in range(8))
    assert _pending(db) == 0


async def test_relay_backs_off_while_broker_down(
    db: str, memory_publisher: Recording, recorder: Recorder
) -> None:
    """Failed publishes release the rows, emit OutboxPublishFailed with growing
    delays (FakeClock), and everything goes out once the broker is back."""
    outbox = SQLiteOutbox(db)
    _fill(db, outbox, 3, keys=1)
    memory_publisher.fail = 4
    clock = FakeClock()
    relay = outbox.relay(
        memory_publisher,
        clock=clock,
        backoff=bt.Backoff.exponential(base=1, cap=8, jitter="none"),
    )
    relay.start()
    await _until(lambda: len(memory_publisher.sent) == 3)
    await relay.stop()
    failed = recorder.of(OutboxPublishFailed)
    assert [e.delay for e in failed] == [1, 2, 4, 8]  # type: ignore[attr-defined]
    assert [e.attempt for e in failed] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert relay.stats().failures == 4
    assert isinstance(relay.stats().last_error, ConnectionError)
    assert [b for _, _, b in memory_publisher.sent] == [b"k0:0", b"k0:1", b"k0:2"]


async def test_stop_drains_the_outbox(db: str, memory_publisher: Recording) -> None:
    """stop() keeps relaying until the outbox is empty."""
    outbox = SQLiteOutbox(db)
    _fill(db, outbox, 50, keys=5)
    relay = outbox.relay(memory_publisher, batch=7, poll_max=30, poll_min=30)
    relay.start()
    await relay.stop()
    assert len(memory_publisher.sent) == 50
    assert _pending(db) == 0


async def test_idle_relay_wakes_on_wake(db: str, memory_publisher: Recording) -> None:
    """An idle relay polling every 30 s sends a new row at once after wake()."""
    outbox = SQLiteOutbox(db)
    _fill(db, outbox, 0, keys=0)
    relay = outbox.relay(memory_publisher, poll_min=30, poll_max=30)
    relay.start()
    await asyncio.sleep(0.05)  # the relay found nothing and waits
    _fill(db, outbox, 1, keys=0)
    relay.wake()
    await _until(lambda: len(memory_publisher.sent) == 1, limit=5)
    await relay.stop()


async def test_postgres_relay_wakes_on_notify(
    pg: str, table: str, memory_publisher: Recording
) -> None:
    """On PostgreSQL the commit's NOTIFY wakes an idle relay (its poll is 30 s)."""
    import psycopg

    outbox = PostgresOutbox(pg, table=table)
    await outbox.create_table()
    relay = outbox.relay(memory_publisher, poll_min=30, poll_max=30)
    relay.start()
    async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as probe:
        for _ in range(500):  # wait until the relay's LISTEN is in place
            cur = await probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
                (f"LISTEN {outbox.channel}",),
            )
            row = await cur.fetchone()
            if row is not None and row[0]:
                break
            await asyncio.sleep(0.01)
    async with await psycopg.AsyncConnection.connect(pg) as conn, conn.transaction():
        await outbox.add(conn, "orders", b"hello")
    await _until(lambda: len(memory_publisher.sent) == 1, limit=5)
    await relay.stop()


async def test_idle_polling_backs_off(db: str, memory_publisher: Recording) -> None:
    """While idle, the poll interval doubles from poll_min to poll_max (virtual time)."""
    outbox = SQLiteOutbox(db)
    _fill(db, outbox, 0, keys=0)
    clock = FakeClock()
    relay = outbox.relay(memory_publisher, poll_min=1, poll_max=8, clock=clock, lag_interval=0)
    claims: list[float] = []
    backend = relay._backend
    original = backend.claim

    async def counting(*args: Any) -> Any:
        claims.append(clock.monotonic())
        return await original(*args)

    backend.claim = counting  # type: ignore[method-assign]
    relay.start()
    await _until(lambda: len(claims) >= 7)
    await relay.stop()
    gaps = [round(b - a) for a, b in itertools.pairwise(claims)][:6]
    assert gaps == [1, 2, 4, 8, 8, 8]


async def test_lag_reports_the_oldest_unsent_row(
    db: str, memory_publisher: Recording, recorder: Recorder
) -> None:
    """lag() is the age of the oldest unsent row; 0 once sent; events carry it."""
    now = [1000.0]
    outbox = SQLiteOutbox(db, now=lambda: now[0])
    _fill(db, outbox, 2, keys=0)
    now[0] = 1012.5
    memory_publisher.gate = asyncio.Event()
    relay = outbox.relay(memory_publisher, lag_interval=0)
    assert await relay.lag() == 12.5
    assert relay.stats().pending == 2
    relay.start()
    memory_publisher.gate.set()
    await _until(lambda: len(memory_publisher.sent) == 2)
    await relay.stop()
    assert await relay.lag() == 0.0
    assert recorder.of(OutboxLag)
    assert sum(e.count for e in recorder.of(OutboxPublished)) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 0}, "batch must be"),
        ({"lease": 5, "publish_timeout": 5}, "publish_timeout must be"),
        ({"poll_min": 2, "poll_max": 1}, "poll_max must be"),
        ({"backoff": 1.0}, "backoff must be"),
    ],
)
def test_relay_validates_options(db: str, kwargs: dict[str, Any], message: str) -> None:
    """Bad relay options raise ConfigError naming the argument."""
    from buttress.messaging import MemoryTransport

    with pytest.raises(bt.ConfigError, match=message):
        SQLiteOutbox(db).relay(MemoryTransport(), **kwargs)


def test_add_validates_arguments(db: str) -> None:
    """add() refuses a bad topic, body, key or headers with ConfigError."""
    outbox = SQLiteOutbox(db)
    conn = sqlite3.connect(db)
    outbox.create_table(conn)
    with pytest.raises(bt.ConfigError, match="topic must be"):
        outbox.add(conn, "", b"x")
    with pytest.raises(bt.ConfigError, match="body must be"):
        outbox.add(conn, "t", "text")  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="headers must be"):
        outbox.add(conn, "t", b"x", headers={"a": 1})  # type: ignore[dict-item]
    conn.close()
    assert isinstance(OutboxRelay, type)


async def test_postgres_add_sync_in_a_sync_transaction(
    pg: str, table: str, memory_publisher: Recording
) -> None:
    """add_sync() on a sync psycopg connection: rolled back → nothing; committed → sent."""
    import psycopg

    outbox = PostgresOutbox(pg, table=table)
    await outbox.create_table()

    def write() -> None:
        with psycopg.connect(pg) as conn:
            try:
                with conn.transaction():
                    outbox.add_sync(conn, "orders", b"lost")
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            with conn.transaction():
                outbox.add_sync(conn, "orders", b"kept", key="k")

    await asyncio.to_thread(write)
    relay = outbox.relay(memory_publisher)
    relay.start()
    await relay.stop()
    assert [b for _, _, b in memory_publisher.sent] == [b"kept"]
