"""Exactly-once effect: outbox relay throughput and inbox overhead per message.

* Outbox: each iteration commits ``ROWS`` rows into a SQLite (or PostgreSQL) outbox in
  one transaction and relays all of them to Redis Streams (a private redis-server) with broker
  confirmation. The baseline commits the same rows and deletes them, so the table
  shows the cost of relaying ``ROWS`` rows; rows/s = ROWS / time. The peer is the naive
  loop people write by hand with the same clients: select the oldest row, publish,
  delete, one row at a time (no lease, no order per key, no backoff).
* Inbox: the cost a dedup check adds to one message whose handler does nothing
  (Redis) or one UPDATE in its own transaction (SQLite). Peers: a bare ``SET NX PX``
  before the handler (what the Redis inbox's claim replaces), and the same SQLite
  transaction without a dedup insert (the baseline).

There is no maintained Python outbox or inbox library to run beside these; the naive
loops are the honest peers.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from _harness import Contender, RatioColumn, Suite
from _postgres import PgServer
from _redis import Server
from _targets import af
from buttress.messaging import (
    PostgresOutbox,
    RedisInbox,
    RedisStreamsTransport,
    SQLiteInbox,
    SQLiteOutbox,
)
from buttress.messaging._sql import SQLiteRunner, transaction

__all__ = ["suites"]

ROWS = 50


class _Outbox:
    """A redis-server, a SQLite outbox file and the relays, built in setup."""

    def __init__(self) -> None:
        self.server = Server()
        self.dir: Path | None = None
        self.ns: dict[str, Any] = {}
        self.client: Any = None

    def setup(self) -> None:
        import redis.asyncio as redis

        self.server.start()
        self.dir = Path(tempfile.mkdtemp(prefix="buttress-bench-outbox-"))
        path = str(self.dir / "app.db")
        self.client = redis.Redis.from_url(self.server.url)
        transport = RedisStreamsTransport(self.client, max_len=10_000)
        outbox = SQLiteOutbox(path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        outbox.create_table(conn)
        self.conn = conn
        self.outbox = outbox
        self.transport = transport
        self.relay = outbox.relay(transport, batch=100)
        self.keyed_relay = outbox.relay(transport, batch=100)
        self.ns.update(b=self)

    def teardown(self) -> None:
        self.conn.close()
        self.server.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def fill(self, keys: int) -> None:
        conn, add = self.conn, self.outbox.add
        conn.execute("BEGIN IMMEDIATE")
        for i in range(ROWS):
            add(conn, "bench", b"x" * 64, key=f"k{i % keys}" if keys else None)
        conn.execute("COMMIT")

    async def baseline(self) -> None:
        self.fill(0)
        self.conn.execute(f"DELETE FROM {self.outbox.table}")

    async def relay_all(self) -> None:
        self.fill(0)
        while (await self.relay._round())[0]:
            pass

    async def relay_keyed(self) -> None:
        self.fill(10)
        while (await self.keyed_relay._round())[0]:
            pass

    async def naive(self) -> None:
        self.fill(0)
        conn, table, publish = self.conn, self.outbox.table, self.transport.publish
        while True:
            row = conn.execute(
                f"SELECT id, topic, msg_id, body FROM {table} ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                return
            await publish(row[1], row[3], msg_id=row[2])
            conn.execute(f"DELETE FROM {table} WHERE id = ?", (row[0],))


def _outbox() -> Suite:
    env = _Outbox()
    ns = env.ns
    return Suite(
        name="outbox-relay",
        title=f"Outbox relay: {ROWS} rows from SQLite to Redis Streams",
        kind="async",
        description=(
            f"Time to relay {ROWS} committed outbox rows (64-byte bodies) to a local "
            "redis-server with broker confirmation, SQLite in WAL with synchronous=FULL. "
            f"Rows/s = {ROWS} / time. The baseline commits and deletes the same rows."
        ),
        baseline=Contender("bare", "commit rows, delete them", "-", "-", "await b.baseline()", ns),
        contenders=[
            Contender(
                "bt",
                "buttress relay (batch=100, unkeyed rows)",
                "buttress",
                "call",
                "await b.relay_all()",
                ns,
                config="SQLiteOutbox(path).relay(RedisStreamsTransport(client), batch=100)",
            ),
            Contender(
                "bt-keyed",
                "buttress relay (10 ordering keys: one row per key in flight)",
                "buttress",
                "call",
                "await b.relay_keyed()",
                ns,
                config="outbox.add(conn, ..., key=f'k{i % 10}')",
            ),
            Contender(
                "naive",
                "naive loop: select oldest, publish, delete (one row at a time)",
                "hand-written",
                "call",
                "await b.naive()",
                ns,
                config="sqlite3 + RedisStreamsTransport.publish, same clients",
            ),
        ],
        columns=[RatioColumn("vs naive loop", {}, "naive")],
        setup=env.setup,
        teardown=env.teardown,
        order=170,
        min_loops=1,
    )


class _PgOutbox:
    """A PostgreSQL cluster, a redis-server, the outbox table and the relay."""

    def __init__(self) -> None:
        self.pg = PgServer()
        self.server = Server()
        self.ns: dict[str, Any] = {}

    def setup(self) -> None:
        import psycopg
        import redis.asyncio as redis

        self.pg.start()
        self.server.start()
        self.client = redis.Redis.from_url(self.server.url)
        self.transport = RedisStreamsTransport(self.client, max_len=10_000)
        self.outbox = PostgresOutbox(self.pg.dsn)
        self.conn = psycopg.connect(self.pg.dsn, autocommit=True)
        self.conn.execute(self.outbox.schema())
        self.relay = self.outbox.relay(self.transport, batch=100)
        self.naive_conn: Any = None
        self.ns.update(b=self)

    def teardown(self) -> None:
        self.conn.close()
        self.pg.stop()
        self.server.stop()

    def fill(self) -> None:
        with self.conn.transaction():
            for _ in range(ROWS):
                self.outbox.add_sync(self.conn, "bench", b"x" * 64)

    async def baseline(self) -> None:
        self.fill()
        self.conn.execute(f"DELETE FROM {self.outbox.table}")

    async def relay_all(self) -> None:
        self.fill()
        while (await self.relay._round())[0]:
            pass

    async def naive(self) -> None:
        import psycopg

        self.fill()
        if self.naive_conn is None:
            self.naive_conn = await psycopg.AsyncConnection.connect(self.pg.dsn, autocommit=True)
        conn, table, publish = self.naive_conn, self.outbox.table, self.transport.publish
        while True:
            async with conn.transaction():
                cur = await conn.execute(
                    f"SELECT id, topic, msg_id, body FROM {table}"
                    " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
                row = await cur.fetchone()
                if row is None:
                    return
                await publish(row[1], row[3], msg_id=row[2])
                await conn.execute(f"DELETE FROM {table} WHERE id = %s", (row[0],))


def _pg_outbox() -> Suite:
    env = _PgOutbox()
    ns = env.ns
    return Suite(
        name="outbox-relay-postgres",
        title=f"Outbox relay: {ROWS} rows from PostgreSQL to Redis Streams",
        kind="async",
        description=(
            f"Time to relay {ROWS} committed rows from a local PostgreSQL (fsync off) to "
            "a local redis-server with broker confirmation. The peer is the usual "
            "hand-written loop: one transaction per row, SELECT ... FOR UPDATE SKIP "
            "LOCKED LIMIT 1, publish, DELETE, COMMIT."
        ),
        baseline=Contender("bare", "commit rows, delete them", "-", "-", "await b.baseline()", ns),
        contenders=[
            Contender(
                "bt",
                "buttress relay (batch=100, unkeyed rows)",
                "buttress",
                "call",
                "await b.relay_all()",
                ns,
                config="PostgresOutbox(dsn).relay(RedisStreamsTransport(client), batch=100)",
            ),
            Contender(
                "naive",
                "naive loop: a transaction per row, SKIP LOCKED, publish, delete",
                "hand-written",
                "call",
                "await b.naive()",
                ns,
                config="psycopg AsyncConnection + RedisStreamsTransport.publish",
            ),
        ],
        columns=[RatioColumn("vs naive loop", {}, "naive")],
        setup=env.setup,
        teardown=env.teardown,
        order=171,
        min_loops=1,
    )


class _Inbox:
    def __init__(self) -> None:
        self.server = Server()
        self.dir: Path | None = None
        self.redis_ns: dict[str, Any] = {}
        self.sqlite_ns: dict[str, Any] = {}

    def setup_redis(self) -> None:
        import redis.asyncio as redis

        self.server.start()
        client = redis.Redis.from_url(self.server.url)
        keys = map(str, itertools.count())
        self.redis_ns.update(
            inbox=RedisInbox(client, window=600), client=client, keys=keys, handle=af
        )

    def teardown_redis(self) -> None:
        self.server.stop()

    def setup_sqlite(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="buttress-bench-inbox-"))
        path = str(self.dir / "app.db")
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE effect (id INTEGER PRIMARY KEY, n INTEGER)")
            conn.execute("INSERT INTO effect VALUES (1, 0)")
        inbox = SQLiteInbox(path, purge_interval=float("inf"))
        asyncio.run(inbox.create_table())

        def update(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE effect SET n = n + 1 WHERE id = 1")

        runner = SQLiteRunner(path, busy_timeout=30.0, name="bench")
        self.sqlite_ns.update(
            inbox=inbox,
            keys=map(str, itertools.count()),
            update=update,
            runner=runner,
            plain=lambda c: transaction(c, update),
        )

    def teardown_sqlite(self) -> None:
        self.sqlite_ns["runner"].close()
        self.sqlite_ns["inbox"]._runner.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def _inbox_redis(env: _Inbox) -> Suite:
    ns = env.redis_ns
    return Suite(
        name="inbox-redis",
        title="Inbox overhead per message, Redis",
        kind="async",
        description=(
            "One message with a fresh key through a no-op async handler. buttress claims "
            "with one EVALSHA and marks done with a SET PX (two round trips); the peer "
            "does a single SET NX PX (no crash-window protection, no busy detection)."
        ),
        baseline=Contender("bare", "`await handle()` (no dedup)", "-", "-", "await handle()", ns),
        contenders=[
            Contender(
                "bt",
                "buttress `await inbox.process(key, handle)`",
                "buttress",
                "call",
                "await inbox.process(next(keys), handle)",
                ns,
                config="RedisInbox(redis.asyncio.Redis(...), window=600)",
            ),
            Contender(
                "setnx",
                "bare `SET NX PX` then the handler",
                "redis-py",
                "call",
                "if await client.set('n:' + next(keys), 1, nx=True, px=600000):\n"
                "    await handle()",
                ns,
                config="await client.set(key, 1, nx=True, px=...)",
            ),
        ],
        columns=[RatioColumn("vs SET NX", {}, "setnx")],
        setup=env.setup_redis,
        teardown=env.teardown_redis,
        order=172,
    )


def _inbox_sqlite(env: _Inbox) -> Suite:
    ns = env.sqlite_ns
    return Suite(
        name="inbox-sqlite",
        title="Inbox overhead per message, SQLite (strict: key in the handler's transaction)",
        kind="async",
        description=(
            "One message whose handler runs one UPDATE. The baseline runs that UPDATE in "
            "its own BEGIN IMMEDIATE/COMMIT on a worker thread (WAL, synchronous=FULL); "
            "buttress adds the dedup INSERT to the same transaction."
        ),
        baseline=Contender(
            "bare", "the handler's transaction, no dedup", "-", "-", "await runner.run(plain)", ns
        ),
        contenders=[
            Contender(
                "bt",
                "buttress `await inbox.process(key, update)`",
                "buttress",
                "call",
                "await inbox.process(next(keys), update)",
                ns,
                config="SQLiteInbox(path)",
            ),
        ],
        setup=env.setup_sqlite,
        teardown=env.teardown_sqlite,
        order=173,
        min_loops=10,
    )


def suites() -> list[Suite]:
    inbox = _Inbox()
    return [_outbox(), _pg_outbox(), _inbox_redis(inbox), _inbox_sqlite(inbox)]
