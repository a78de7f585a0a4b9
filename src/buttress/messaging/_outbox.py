"""The transactional outbox: write messages in your own transaction, a relay sends them.

``outbox.add(conn, topic, body, ...)`` inserts a row inside the application's database
transaction, so the message exists if and only if the business change committed (no
dual write). An :class:`OutboxRelay` claims rows under a lease, publishes each with
broker confirmation and deletes it. See ``docs/outbox.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random as _random
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from .. import _validate as v
from .._backoff import Backoff
from .._clock import Clock, resolve
from .._events import GLOBAL_LISTENERS, Event, Listener, emit
from ._inbox import _conninfo
from ._publisher import Publisher
from ._sql import SQLiteRunner, database_path, import_psycopg, table_name, transaction

__all__ = [
    "OutboxLag",
    "OutboxPublishFailed",
    "OutboxPublished",
    "OutboxRelay",
    "OutboxStats",
    "PostgresOutbox",
    "SQLiteOutbox",
]

_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class OutboxPublished(Event):
    """A relay published and deleted ``count`` rows in one batch."""

    count: int


@dataclass(frozen=True, slots=True)
class OutboxPublishFailed(Event):
    """``failed`` rows of a batch could not be published (``error`` is the first
    failure); the relay released them and waits ``delay`` seconds (failure number
    ``attempt`` in a row)."""

    failed: int
    error: BaseException
    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class OutboxLag(Event):
    """A lag reading: ``pending`` unsent rows, the oldest created ``lag`` seconds ago
    (0 when none)."""

    pending: int
    lag: float


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot of a relay (:meth:`OutboxRelay.stats`).

    Attributes:
        published: rows published and deleted since the relay started.
        failures: publish failures since the relay started.
        pending: unsent rows at the last lag reading.
        lag: age in seconds of the oldest unsent row at the last reading (0 if none).
        running: the relay's loop is running.
        last_error: the last publish error, or ``None``.

    Example::

        stats = relay.stats()
        if stats.lag > 60:
            alert(f"outbox {relay.name} is {stats.lag:.0f} s behind ({stats.pending} rows)")
    """

    published: int
    failures: int
    pending: int
    lag: float
    running: bool
    last_error: BaseException | None


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    topic: str
    key: str | None
    msg_id: str
    body: bytes
    headers: dict[str, str] | None


def _headers(value: Mapping[str, str] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(x, str) for k, x in value.items()
    ):
        raise v.fail("headers", "a mapping of str to str, or None", value)
    return json.dumps(dict(value), separators=(",", ":"))


def _row_values(
    topic: object, body: object, key: object, msg_id: object, headers: Mapping[str, str] | None
) -> tuple[str, str | None, str, bytes, str | None]:
    if not isinstance(topic, str) or not topic:
        raise v.fail("topic", "a non-empty str", topic)
    if not isinstance(body, bytes | bytearray | memoryview):
        raise v.fail("body", "bytes", body)
    if key is not None and (not isinstance(key, str) or not key):
        raise v.fail("key", "a non-empty str or None", key)
    if msg_id is None:
        msg_id = uuid.uuid4().hex
    elif not isinstance(msg_id, str) or not msg_id:
        raise v.fail("msg_id", "a non-empty str or None", msg_id)
    return topic, key, msg_id, bytes(body), _headers(headers)


def _make_row(r: tuple[Any, ...]) -> _Row:
    return _Row(
        int(r[0]), r[1], r[2], r[3], bytes(r[4]), None if r[5] is None else json.loads(r[5])
    )


class _Backend(Protocol):
    """What a relay needs from a database (internal)."""

    name: str
    now: Callable[[], float]

    async def claim(self, owner: str, limit: int, now: float, until: float) -> list[_Row]: ...
    async def complete(self, owner: str, ids: list[int]) -> None: ...
    async def release(self, owner: str, ids: list[int]) -> None: ...
    async def lag(self, now: float) -> tuple[int, float]: ...
    async def wait(self, seconds: float, wake: asyncio.Event, clock: Clock) -> None: ...
    async def close(self) -> None: ...


# The claim takes, in id order, rows that are not leased (or whose lease expired) and
# that are the *oldest unsent row of their key*: a key's next row waits until the
# previous one is deleted, so one key is never in flight twice and per-key order holds
# whichever relay sends it. Rows without a key have no order and are all eligible.
_ELIGIBLE = """
(o.lease_until IS NULL OR o.lease_until < {now})
AND (o.okey IS NULL OR NOT EXISTS (
    SELECT 1 FROM {t} p WHERE p.okey = o.okey AND p.id < o.id))
"""

_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    okey TEXT,
    msg_id TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS {t}_okey ON {t} (okey, id);
"""

_PG_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    id BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    okey TEXT,
    msg_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    headers TEXT,
    created DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS {t}_okey ON {t} (okey, id);
"""


class SQLiteOutbox:
    """A transactional outbox in the application's SQLite database.

    Call :meth:`add` on your own ``sqlite3.Connection`` inside the transaction that makes
    the business change; the row commits (or not) with it. A relay from :meth:`relay`
    sends the rows. Relays may run in several processes on the same file: claims
    serialise on SQLite's write lock and leases keep them apart.

    Args:
        database: path of the application's SQLite database (str or ``Path``).
        table: the outbox table. Default ``"buttress_outbox"``.
        busy_timeout: seconds a relay waits for the write lock. Default 30.
        now: wall-clock time in epoch seconds (row age, leases). Default ``time.time``.

    Raises:
        ConfigError: an invalid option.

    Example::

        outbox = SQLiteOutbox("app.db")
        outbox.create_table(conn)
        with conn:                                  # one transaction
            conn.execute("INSERT INTO orders ...")
            outbox.add(conn, "orders", b'{"id": 7}', key="customer-42")
        async with outbox.relay(publisher):
            ...
    """

    def __init__(
        self,
        database: str | Any,
        *,
        table: str = "buttress_outbox",
        busy_timeout: float | timedelta = 30.0,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.database = database_path(database)
        self.table = table_name(table)
        self.busy_timeout = v.seconds("busy_timeout", busy_timeout)
        if now is not None and not callable(now):
            raise v.fail("now", "a callable returning epoch seconds, or None", now)
        self._now: Callable[[], float] = time.time if now is None else now

    def schema(self) -> str:
        """The DDL of the outbox table, for your migration tool."""
        return _SQLITE_DDL.format(t=self.table)

    def create_table(self, conn: sqlite3.Connection | None = None) -> None:
        """Create the outbox table if missing (on ``conn``, or a short-lived connection)."""
        if conn is not None:
            conn.executescript(self.schema())
            return
        own = sqlite3.connect(self.database, timeout=self.busy_timeout)
        try:
            own.executescript(self.schema())
        finally:
            own.close()

    def add(
        self,
        conn: sqlite3.Connection,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Insert a message into the outbox inside your open transaction on ``conn``.

        Nothing is committed here: the row commits with your transaction.

        Args:
            conn: your connection, inside the transaction of the business change.
            topic: the destination topic / stream / subject.
            body: the payload.
            key: the ordering key: rows with the same key are published one at a
                time in insertion order. ``None`` (default): no ordering.
            msg_id: the dedup id the broker and consumers see. Default: a new UUID.
            headers: message headers (str to str). Default none.

        Returns:
            The message's ``msg_id``.

        Raises:
            ConfigError: an invalid argument.
        """
        topic, key, msg_id, data, hdrs = _row_values(topic, body, key, msg_id, headers)
        conn.execute(
            f"INSERT INTO {self.table} (topic, okey, msg_id, body, headers, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (topic, key, msg_id, data, hdrs, self._now()),
        )
        return msg_id

    def relay(self, publisher: Publisher, **options: Any) -> OutboxRelay:
        """An :class:`OutboxRelay` for this outbox; ``options`` as for the relay."""
        return OutboxRelay(_SQLiteBackend(self), publisher, **options)

    def __repr__(self) -> str:
        return f"SQLiteOutbox({self.database!r}, table={self.table!r})"


class _SQLiteBackend:
    def __init__(self, outbox: SQLiteOutbox) -> None:
        self.name = "sqlite"
        self.now = outbox._now
        self._t = outbox.table
        self._runner = SQLiteRunner(
            outbox.database, busy_timeout=outbox.busy_timeout, name="outbox-relay"
        )
        self._ddl = outbox.schema()
        self._ready = False

    async def _setup(self) -> None:
        if not self._ready:
            await self._runner.run(lambda c: c.executescript(self._ddl))
            self._ready = True

    async def claim(self, owner: str, limit: int, now: float, until: float) -> list[_Row]:
        await self._setup()
        sql = (
            f"UPDATE {self._t} SET lease_owner = ?, lease_until = ? WHERE id IN ("
            f"SELECT o.id FROM {self._t} o WHERE {_ELIGIBLE.format(t=self._t, now='?')}"
            " ORDER BY o.id LIMIT ?)"
            " RETURNING id, topic, okey, msg_id, body, headers"
        )

        def run(conn: sqlite3.Connection) -> list[_Row]:
            rows = conn.execute(sql, (owner, until, now, limit)).fetchall()
            return sorted((_make_row(r) for r in rows), key=lambda r: r.id)

        return await self._runner.run(lambda c: transaction(c, run))

    async def complete(self, owner: str, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        sql = f"DELETE FROM {self._t} WHERE lease_owner = ? AND id IN ({marks})"
        await self._runner.run(lambda c: c.execute(sql, (owner, *ids)))

    async def release(self, owner: str, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        sql = (
            f"UPDATE {self._t} SET lease_owner = NULL, lease_until = NULL,"
            f" attempts = attempts + 1 WHERE lease_owner = ? AND id IN ({marks})"
        )
        await self._runner.run(lambda c: c.execute(sql, (owner, *ids)))

    async def lag(self, now: float) -> tuple[int, float]:
        await self._setup()
        sql = f"SELECT COUNT(*), MIN(created) FROM {self._t}"
        count, oldest = await self._runner.run(lambda c: c.execute(sql).fetchone())
        return int(count), 0.0 if oldest is None else max(0.0, now - float(oldest))

    async def wait(self, seconds: float, wake: asyncio.Event, clock: Clock) -> None:
        await _wait_event(wake, seconds, clock)

    async def close(self) -> None:
        await asyncio.to_thread(self._runner.close)


async def _wait_event(wake: asyncio.Event, seconds: float, clock: Clock) -> None:
    """Wait until ``wake`` is set or ``seconds`` pass on ``clock``."""
    if wake.is_set():
        return
    waiter = asyncio.ensure_future(wake.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()


class PostgresOutbox:
    """A transactional outbox in PostgreSQL (psycopg 3).

    :meth:`add` inserts the row on your ``psycopg.AsyncConnection`` inside your
    transaction and queues a ``NOTIFY`` that PostgreSQL delivers on commit, so idle
    relays wake at once instead of polling. Relays claim with ``FOR UPDATE SKIP
    LOCKED`` plus a lease, so any number of them can run.

    Args:
        conninfo: the relay's libpq connection string or URL.
        table: the outbox table. Default ``"buttress_outbox"``.
        channel: the LISTEN/NOTIFY channel. Default: the table name.
        now: wall-clock time in epoch seconds (row age, leases). Default ``time.time``.

    Raises:
        ConfigError: an invalid option.

    Example::

        outbox = PostgresOutbox("postgresql://app@db/app")
        await outbox.create_table()
        async with conn.transaction():
            await conn.execute("INSERT INTO orders ...")
            await outbox.add(conn, "orders", b'{"id": 7}', key="customer-42")
    """

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = "buttress_outbox",
        channel: str | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.conninfo = _conninfo(conninfo)
        self.table = table_name(table)
        self.channel = self.table if channel is None else table_name(channel)
        if now is not None and not callable(now):
            raise v.fail("now", "a callable returning epoch seconds, or None", now)
        self._now: Callable[[], float] = time.time if now is None else now

    def schema(self) -> str:
        """The DDL of the outbox table, for your migration tool."""
        return _PG_DDL.format(t=self.table)

    async def create_table(self) -> None:
        """Create the outbox table if missing."""
        psycopg = import_psycopg()
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as c:
            await c.execute(self.schema())

    async def add(
        self,
        conn: Any,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Insert a message inside your open transaction on ``conn`` (psycopg async).

        Arguments as for :meth:`SQLiteOutbox.add`. Returns the ``msg_id``.

        Raises:
            ConfigError: an invalid argument.
        """
        topic, key, msg_id, data, hdrs = _row_values(topic, body, key, msg_id, headers)
        await conn.execute(
            f"INSERT INTO {self.table} (topic, okey, msg_id, body, headers, created)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (topic, key, msg_id, data, hdrs, self._now()),
        )
        await conn.execute(f"NOTIFY {self.channel}")
        return msg_id

    def add_sync(
        self,
        conn: Any,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """:meth:`add` for a *sync* psycopg ``Connection`` (or SQLAlchemy's
        ``connection.connection.driver_connection``), inside your open transaction.

        Raises:
            ConfigError: an invalid argument.

        Example::

            with psycopg.connect(dsn) as conn, conn.transaction():
                conn.execute("INSERT INTO orders ...")
                outbox.add_sync(conn, "orders", b'{"id": 7}')
        """
        topic, key, msg_id, data, hdrs = _row_values(topic, body, key, msg_id, headers)
        conn.execute(
            f"INSERT INTO {self.table} (topic, okey, msg_id, body, headers, created)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (topic, key, msg_id, data, hdrs, self._now()),
        )
        conn.execute(f"NOTIFY {self.channel}")
        return msg_id

    def relay(self, publisher: Publisher, **options: Any) -> OutboxRelay:
        """An :class:`OutboxRelay` for this outbox; ``options`` as for the relay."""
        return OutboxRelay(_PgBackend(self), publisher, **options)

    def __repr__(self) -> str:
        return f"PostgresOutbox(table={self.table!r}, channel={self.channel!r})"


class _PgBackend:
    def __init__(self, outbox: PostgresOutbox) -> None:
        self.name = "postgres"
        self.now = outbox._now
        self._outbox = outbox
        self._t = outbox.table
        self._conn: Any = None
        self._listen: Any = None

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            psycopg = import_psycopg()
            self._conn = await psycopg.AsyncConnection.connect(
                self._outbox.conninfo, autocommit=True
            )
            await self._conn.execute(self._outbox.schema())
        return self._conn

    async def _run(self, sql: str, params: tuple[Any, ...], fetch: bool) -> list[Any]:
        conn = await self._connection()
        try:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall()) if fetch else []
        except BaseException:
            # A connection in an unknown state is not reused.
            await self._drop()
            raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def claim(self, owner: str, limit: int, now: float, until: float) -> list[_Row]:
        eligible = _ELIGIBLE.format(t=self._t, now="%s")
        sql = (
            f"WITH c AS (SELECT o.id FROM {self._t} o WHERE {eligible}"
            " ORDER BY o.id LIMIT %s FOR UPDATE SKIP LOCKED)"
            f" UPDATE {self._t} AS u SET lease_owner = %s, lease_until = %s FROM c"
            " WHERE u.id = c.id RETURNING u.id, u.topic, u.okey, u.msg_id, u.body, u.headers"
        )
        rows = await self._run(sql, (now, limit, owner, until), True)
        return sorted((_make_row(tuple(r)) for r in rows), key=lambda r: r.id)

    async def complete(self, owner: str, ids: list[int]) -> None:
        sql = f"DELETE FROM {self._t} WHERE lease_owner = %s AND id = ANY(%s)"
        await self._run(sql, (owner, ids), False)

    async def release(self, owner: str, ids: list[int]) -> None:
        sql = (
            f"UPDATE {self._t} SET lease_owner = NULL, lease_until = NULL,"
            " attempts = attempts + 1 WHERE lease_owner = %s AND id = ANY(%s)"
        )
        await self._run(sql, (owner, ids), False)

    async def lag(self, now: float) -> tuple[int, float]:
        rows = await self._run(f"SELECT COUNT(*), MIN(created) FROM {self._t}", (), True)
        count, oldest = rows[0]
        return int(count), 0.0 if oldest is None else max(0.0, now - float(oldest))

    async def wait(self, seconds: float, wake: asyncio.Event, clock: Clock) -> None:
        # LISTEN on a connection of its own: a NOTIFY (sent at commit by add()) ends
        # the wait at once; otherwise the relay polls every ``seconds`` as a safety net.
        try:
            if self._listen is None or self._listen.closed:
                psycopg = import_psycopg()
                self._listen = await psycopg.AsyncConnection.connect(
                    self._outbox.conninfo, autocommit=True
                )
                await self._listen.execute(f"LISTEN {self._outbox.channel}")
            listen = self._listen
        except Exception:
            await _wait_event(wake, seconds, clock)
            return

        async def notified() -> None:
            async for _ in listen.notifies(stop_after=1):
                return

        notify = asyncio.ensure_future(notified())
        other = asyncio.ensure_future(_wait_event(wake, seconds, clock))
        try:
            await asyncio.wait((notify, other), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (notify, other):
                task.cancel()
            # asyncio.wait, not await: our own cancellation must still propagate.
            await asyncio.wait((notify,))
            if not notify.cancelled() and notify.exception() is not None:
                await self._drop_listen()

    async def _drop_listen(self) -> None:
        conn, self._listen = self._listen, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        await self._drop()
        await self._drop_listen()


class OutboxRelay:
    """Sends outbox rows to a broker: lease, publish with confirmation, delete.

    Each round claims up to ``batch`` rows (leased to this relay for ``lease``
    seconds), publishes them concurrently (each with its row's ``msg_id``, so a broker
    or consumer can drop a resend), deletes the confirmed ones and releases the rest.

    * Two relays never hold the same row: a claim is atomic and skips leased rows.
    * A relay that dies leaves its rows leased; after ``lease`` they are claimed again
      and sent (possibly a second time: at-least-once, same ``msg_id``).
    * Per-key order: only the oldest unsent row of a key is claimable, so a key has one
      row in flight at a time and they go out in insertion order.
    * Broker down: failed rows are released and the relay waits ``backoff`` (reset
      after a success).
    * Idle: PostgreSQL wakes on NOTIFY; otherwise the poll interval doubles from
      ``poll_min`` to ``poll_max`` while nothing arrives. :meth:`wake` ends a wait early.
    * :meth:`stop` drains: the relay keeps sending until the outbox is empty or
      ``drain_timeout`` passes, then releases what it holds.
    * Lag (age of the oldest unsent row) is read at most every ``lag_interval`` and
      reported by :meth:`stats` and :class:`OutboxLag` events.

    Build one with :meth:`SQLiteOutbox.relay` or :meth:`PostgresOutbox.relay`.

    Args:
        publisher: a :class:`~buttress.messaging.Publisher` that returns after the
            broker confirmed the message and raises otherwise.
        batch: rows claimed per round. Default 100.
        lease: seconds a claim protects rows from other relays; must exceed
            ``publish_timeout``. Default 30.
        publish_timeout: seconds one publish may take before it counts as failed.
            Default 10.
        backoff: waits after failed rounds. Default
            ``Backoff.exponential(base=0.1, cap=10)``.
        poll_min: first idle poll interval, seconds. Default 0.05.
        poll_max: longest idle poll interval, seconds. Default 2.
        drain_timeout: how long :meth:`stop` keeps sending, seconds. Default 10.
        lag_interval: minimum seconds between lag readings. Default 1.
        owner: this relay's lease owner id. Default: a random id.
        clock: sleeps and timers. Default the system clock.
        random: the random source for backoff jitter. Default a fresh one.
        name: the name in events. Default ``"outbox-N"``.
        listeners: event listeners (:class:`OutboxPublished`,
            :class:`OutboxPublishFailed`, :class:`OutboxLag`).

    Raises:
        ConfigError: an invalid option.

    Example::

        relay = outbox.relay(redis_transport, batch=200)
        async with relay:                 # runs in the background; drains on exit
            await serve()
        print(relay.stats().lag)
    """

    def __init__(
        self,
        backend: _Backend,
        publisher: Publisher,
        *,
        batch: int = 100,
        lease: float | timedelta = 30.0,
        publish_timeout: float | timedelta = 10.0,
        backoff: Backoff | None = None,
        poll_min: float | timedelta = 0.05,
        poll_max: float | timedelta = 2.0,
        drain_timeout: float | timedelta = 10.0,
        lag_interval: float | timedelta = 1.0,
        owner: str | None = None,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if not isinstance(publisher, Publisher):
            raise v.fail("publisher", "a Publisher (an object with async publish())", publisher)
        self._backend = backend
        self._publisher = publisher
        self.batch = v.integer("batch", batch, minimum=1)
        self.lease = v.seconds("lease", lease, allow_zero=False)
        self.publish_timeout = v.seconds("publish_timeout", publish_timeout, allow_zero=False)
        if self.publish_timeout >= self.lease:
            raise v.fail(
                "publish_timeout", f"a duration < lease ({self.lease:g} s)", publish_timeout
            )
        if backoff is not None and not isinstance(backoff, Backoff):
            raise v.fail("backoff", "a Backoff or None", backoff)
        self.backoff = Backoff.exponential(base=0.1, cap=10.0) if backoff is None else backoff
        self.poll_min = v.seconds("poll_min", poll_min, allow_zero=False)
        self.poll_max = v.seconds("poll_max", poll_max, allow_zero=False)
        if self.poll_max < self.poll_min:
            raise v.fail("poll_max", f"a duration >= poll_min ({self.poll_min:g})", poll_max)
        self.drain_timeout = v.seconds("drain_timeout", drain_timeout)
        self.lag_interval = v.seconds("lag_interval", lag_interval)
        if owner is not None and (not isinstance(owner, str) or not owner):
            raise v.fail("owner", "a non-empty str or None", owner)
        self.owner = owner if owner is not None else f"relay-{secrets.token_hex(6)}"
        self._clock = resolve(clock)
        self._rng = v.rng(random)
        self.name = v.name_of(name, "outbox", lambda: next(_counter))
        self._listeners = v.listeners(listeners)
        self._now = backend.now
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._published = 0
        self._failures = 0
        self._pending = 0
        self._lag = 0.0
        self._last_error: BaseException | None = None
        self._next_lag = -float("inf")

    # -- control -----------------------------------------------------------------

    def wake(self) -> None:
        """End an idle wait now (call after committing rows, on the relay's loop)."""
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        """Run :meth:`run` in a background task (needs a running event loop)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Drain and stop: keep sending until the outbox is empty or ``drain_timeout``
        passed, then release held rows and return. Cancels the loop if it overruns."""
        self._stopping = True
        self.wake()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            # The loop ends on its own once drained or past drain_timeout; the extra
            # publish_timeout lets a last in-flight round finish.
            async with asyncio.timeout(self.drain_timeout + self.publish_timeout + 1.0):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            await asyncio.wait((task,))

    async def __aenter__(self) -> OutboxRelay:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats(self) -> OutboxStats:
        """A snapshot: rows published, failures, pending rows and lag at the last reading."""
        return OutboxStats(
            published=self._published,
            failures=self._failures,
            pending=self._pending,
            lag=self._lag,
            running=self._task is not None and not self._task.done(),
            last_error=self._last_error,
        )

    async def lag(self) -> float:
        """Read the lag now: age in seconds of the oldest unsent row (0 when empty)."""
        await self._read_lag(force=True)
        return self._lag

    # -- the loop ------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, event)

    async def _read_lag(self, *, force: bool = False) -> None:
        at = self._clock.monotonic()
        if not force and at < self._next_lag:
            return
        self._next_lag = at + self.lag_interval
        self._pending, self._lag = await self._backend.lag(self._now())
        self._emit(OutboxLag(self.name, self._pending, self._lag))

    async def run(self) -> None:
        """Relay until cancelled or stopped (drains on :meth:`stop`, see above).

        Database errors count as failed rounds (backoff, event); cancellation
        propagates after releasing held rows.
        """
        self._wake = asyncio.Event()
        idle = 0
        failed_rounds = 0
        previous = 0.0
        drain_until: float | None = None
        try:
            while True:
                if self._stopping and drain_until is None:
                    drain_until = self._clock.monotonic() + self.drain_timeout
                if drain_until is not None and self._clock.monotonic() >= drain_until:
                    return
                self._wake.clear()
                try:
                    sent, failed, error = await self._round()
                    await self._read_lag()
                except Exception as exc:
                    sent, failed, error = 0, 1, exc
                if failed:
                    failed_rounds += 1
                    self._failures += failed
                    self._last_error = error
                    previous = self.backoff.compute(failed_rounds, previous, self._rng)
                    assert error is not None
                    self._emit(
                        OutboxPublishFailed(self.name, failed, error, previous, failed_rounds)
                    )
                    await self._pause(previous, drain_until)
                    continue
                failed_rounds, previous = 0, 0.0
                if sent:
                    idle = 0
                    continue
                if self._stopping:
                    return  # drained: nothing left to send
                interval = min(self.poll_max, self.poll_min * 2.0 ** min(idle, 60))
                idle += 1
                await self._backend.wait(interval, self._wake, self._clock)
        finally:
            await asyncio.shield(self._backend.close())

    async def _pause(self, delay: float, drain_until: float | None) -> None:
        if drain_until is not None:
            delay = min(delay, max(0.0, drain_until - self._clock.monotonic()))
        assert self._wake is not None
        self._wake.clear()
        if self._stopping:
            await self._clock.sleep(delay)
        else:
            await _wait_event(self._wake, delay, self._clock)

    async def _round(self) -> tuple[int, int, BaseException | None]:
        now = self._now()
        rows = await self._backend.claim(self.owner, self.batch, now, now + self.lease)
        if not rows:
            return 0, 0, None
        done: list[int] = []
        try:
            results = await asyncio.gather(
                *(self._publish(row) for row in rows), return_exceptions=True
            )
        except BaseException:
            await asyncio.shield(self._backend.release(self.owner, [r.id for r in rows]))
            raise
        error: BaseException | None = None
        failed: list[int] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                failed.append(row.id)
                error = error or result
            else:
                done.append(row.id)
        if done:
            await asyncio.shield(self._backend.complete(self.owner, done))
            self._published += len(done)
            self._emit(OutboxPublished(self.name, len(done)))
        if failed:
            await asyncio.shield(self._backend.release(self.owner, failed))
        return len(done), len(failed), error

    async def _publish(self, row: _Row) -> None:
        async with asyncio.timeout(self.publish_timeout):
            await self._publisher.publish(
                row.topic, row.body, msg_id=row.msg_id, headers=row.headers
            )

    def __repr__(self) -> str:
        return f"OutboxRelay(name={self.name!r}, backend={self._backend.name!r})"
