"""Idempotent consumers: an inbox that remembers which messages already had their effect.

Three stores, with different guarantees (see ``docs/inbox.md``):

* :class:`RedisInbox` — best effort, shared by many consumers: a key is claimed with
  ``SET NX PX`` before the handler runs and marked done after it; a crash between the
  handler's effect and the mark lets a redelivery run the handler again.
* :class:`SQLiteInbox` / :class:`PostgresInbox` — strict: the key is inserted in the same
  database transaction as the handler's own writes, so either both commit or neither
  does. A redelivery finds the key and skips; a crash rolls both back.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from .. import _validate as v
from .._clock import Clock, resolve
from .._errors import ConfigError, RejectedError, StoreError
from .._events import GLOBAL_LISTENERS, Event, Listener, StoreFellBack, emit
from ._sql import SQLiteRunner, database_path, import_psycopg, table_name, transaction

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "InboxBusyError",
    "InboxDuplicate",
    "PostgresInbox",
    "RedisInbox",
    "SQLiteInbox",
]

_counter = itertools.count(1)
_DAY = 86_400.0


class InboxBusyError(RejectedError):
    """Another delivery of the same message is being handled right now (Redis inbox).

    Do not ack: settle the message for a later retry. ``retry_after`` is how long the
    other consumer's claim has left, in seconds. ``key`` is the message key.

    Example::

        try:
            await inbox.process(msg.key, handle, msg)
        except InboxBusyError as exc:
            await msg.retry(delay=exc.retry_after)
    """

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        policy: str = "",
        key: str = "",
    ) -> None:
        super().__init__(message, retry_after=retry_after, policy=policy)
        self.key = key


@dataclass(frozen=True, slots=True)
class InboxDuplicate(Event):
    """The inbox absorbed a duplicate: message ``key`` had already had its effect."""

    key: str


def _key(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise v.fail("key", "a non-empty str (the message's dedup key)", value)
    return value


def _window(value: object) -> float:
    return v.seconds("window", value, allow_zero=False)


class RedisInbox:
    """Best-effort deduplication in Redis, shared by every consumer of a stream.

    ``process(key, handler, ...)`` runs the handler at most once per key within
    ``window``, in two steps around the handler:

    1. *claim*: one Lua script sets ``prefix + key`` to a claim token with expiry
       ``claim_timeout`` if the key is absent. If it holds ``done`` the message is a
       duplicate: ``process`` returns ``False`` without running the handler. If another
       consumer's claim is live, :class:`InboxBusyError` is raised (do not ack; retry).
    2. *mark*: after the handler returns, the key becomes ``done`` with expiry
       ``window``. If the handler raises, the claim is deleted (only if still ours) so a
       redelivery can run it again; the exception propagates.

    The crash window: a consumer that dies after the handler's effect and before the
    mark leaves a claim that expires after ``claim_timeout``; the redelivery then runs
    the handler a second time. Use a SQL inbox in the same transaction as the handler's
    writes when that is not acceptable.

    Args:
        client: a ``redis.asyncio.Redis`` (``decode_responses`` either way).
        window: how long a processed key is remembered, seconds or ``timedelta``.
            Default 7 days. Redeliveries later than that run the handler again.
        claim_timeout: how long a claim protects a running handler, seconds. Default 60.
            Must exceed the longest handler, or a redelivery runs concurrently.
        prefix: key prefix in Redis. Default ``"bt:inbox:"``.
        on_store_error: when Redis fails, ``"fail_closed"`` (default) raises
            :class:`~buttress.StoreError` (leave the message unacked: it comes back);
            ``"fail_open"`` runs the handler without deduplication. Both emit
            :class:`~buttress.events.StoreFellBack`.
        name: the name in events. Default ``"inbox-N"``.
        listeners: event listeners (:class:`InboxDuplicate`, ``StoreFellBack``).

    Raises:
        ConfigError: an invalid option.

    Example::

        inbox = RedisInbox(redis.asyncio.Redis(), window=timedelta(days=1))
        ran = await inbox.process(msg.key, apply_payment, msg)   # False: a duplicate
    """

    _CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, 0}
end
if v == 'done' then return {0, 0} end
return {2, redis.call('PTTL', KEYS[1])}
"""
    _ABORT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

    def __init__(
        self,
        client: Redis,
        *,
        window: float | timedelta = 7 * _DAY,
        claim_timeout: float | timedelta = 60.0,
        prefix: str = "bt:inbox:",
        on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed",
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if client is None or not hasattr(client, "register_script"):
            raise v.fail("client", "a redis.asyncio.Redis client", client)
        self.window = _window(window)
        self.claim_timeout = v.seconds("claim_timeout", claim_timeout, allow_zero=False)
        if not isinstance(prefix, str):
            raise v.fail("prefix", "a str", prefix)
        self.prefix = prefix
        self.on_store_error = v.choice(
            "on_store_error", on_store_error, ("fail_closed", "fail_open")
        )
        self.name = v.name_of(name, "inbox", lambda: next(_counter))
        self._listeners = v.listeners(listeners)
        self._client = client
        self._claim = client.register_script(self._CLAIM)
        self._abort = client.register_script(self._ABORT)

    def _emit(self, event: Event) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, event)

    def _store_failed(self, exc: Exception) -> None:
        self._emit(StoreFellBack(self.name, self.on_store_error, exc))
        if self.on_store_error == "fail_closed":
            raise StoreError(f"inbox {self.name!r}: Redis failed: {exc!r}") from exc

    async def seen(self, key: str) -> bool:
        """True when ``key`` was processed within the window (claims do not count).

        Raises:
            StoreError: Redis failed.
        """
        try:
            value = await self._client.get(self.prefix + _key(key))
        except ConfigError:
            raise
        except Exception as exc:
            raise StoreError(f"inbox {self.name!r}: Redis failed: {exc!r}") from exc
        return value in (b"done", "done")

    async def process(
        self, key: str, handler: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> bool:
        """Run ``await handler(*args, **kwargs)`` unless ``key`` already had its effect.

        Returns:
            ``True`` when the handler ran and returned; ``False`` for a duplicate.

        Raises:
            InboxBusyError: another consumer is handling the same key right now.
            StoreError: Redis failed and ``on_store_error="fail_closed"``.
            Exception: whatever the handler raised (its claim is released first).
        """
        full = self.prefix + _key(key)
        token = "claim:" + secrets.token_hex(8)
        try:
            status, ttl = await self._claim(
                keys=[full], args=[token, int(self.claim_timeout * 1000)]
            )
        except Exception as exc:
            self._store_failed(exc)
            await handler(*args, **kwargs)
            return True
        if status == 0:
            self._emit(InboxDuplicate(self.name, key))
            return False
        if status == 2:
            raise InboxBusyError(
                f"inbox {self.name!r}: message {key!r} is being handled elsewhere",
                retry_after=max(int(ttl), 0) / 1000,
                policy=self.name,
                key=key,
            )
        try:
            await handler(*args, **kwargs)
        except BaseException:
            # Give the key back so the redelivery can run; shielded so that a
            # cancellation does not leave the claim to expire on its own.
            try:
                await asyncio.shield(self._abort(keys=[full], args=[token]))
            except Exception:
                pass  # the claim expires after claim_timeout instead
            raise
        try:
            await self._client.set(full, "done", px=int(self.window * 1000))
        except Exception as exc:
            # The effect happened; the mark did not. The claim still guards the key
            # for claim_timeout, after which a redelivery would run again.
            self._store_failed(exc)
        return True

    async def forget(self, key: str) -> None:
        """Delete ``key`` so the next delivery runs again (manual repair).

        Raises:
            StoreError: Redis failed.
        """
        try:
            await self._client.delete(self.prefix + _key(key))
        except Exception as exc:
            raise StoreError(f"inbox {self.name!r}: Redis failed: {exc!r}") from exc

    def __repr__(self) -> str:
        return f"RedisInbox(name={self.name!r}, window={self.window:g}, prefix={self.prefix!r})"


_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    key TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_seen_at ON {t} (seen_at);
"""

_PG_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    key TEXT PRIMARY KEY,
    seen_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_seen_at ON {t} (seen_at);
"""


class _SQLInboxBase:
    def __init__(
        self,
        *,
        table: str,
        window: float | timedelta,
        purge_interval: float | timedelta,
        now: Callable[[], float] | None,
        clock: Clock | None,
        name: str | None,
        listeners: Iterable[Listener],
    ) -> None:
        self.table = table_name(table)
        self.window = _window(window)
        self.purge_interval = v.seconds("purge_interval", purge_interval, allow_inf=True)
        if now is not None and not callable(now):
            raise v.fail("now", "a callable returning epoch seconds, or None", now)
        self._now: Callable[[], float] = time.time if now is None else now
        self._clock = resolve(clock)
        self.name = v.name_of(name, "inbox", lambda: next(_counter))
        self._listeners = v.listeners(listeners)
        self._next_purge = -float("inf")

    def _emit(self, event: Event) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, event)

    def _purge_due(self) -> bool:
        at = self._clock.monotonic()
        if at < self._next_purge:
            return False
        self._next_purge = at + self.purge_interval
        return True


class SQLiteInbox(_SQLInboxBase):
    """Strict deduplication in SQLite: the key commits with the handler's own writes.

    ``process(key, handler)`` opens ``BEGIN IMMEDIATE`` on the application's database,
    inserts ``key`` (``ON CONFLICT DO NOTHING``); for a new key it calls
    ``handler(connection)`` — a *sync* function that does its writes on that connection
    — and commits both together. For a known key it rolls back and returns ``False``.
    If the handler raises, nothing commits and the exception propagates. A crash at any
    point leaves either both the key and the writes or neither: the effect happens once.

    The work runs on one worker thread owned by the inbox (the event loop never blocks),
    so handlers of one inbox run one at a time; SQLite serialises writers anyway.
    Concurrent duplicates from other processes wait on the database lock (up to
    ``busy_timeout``) and then see the key.

    Keys older than ``window`` are deleted by :meth:`purge`, which ``process`` also runs
    after a commit at most every ``purge_interval``. A key is remembered *at least*
    ``window``; a redelivery after that runs again.

    Args:
        database: path of the application's SQLite database (str or ``Path``).
        table: the inbox table. Default ``"buttress_inbox"``.
        window: how long keys are kept, seconds or ``timedelta``. Default 7 days.
        purge_interval: minimum seconds between automatic purges. Default 60;
            ``float("inf")`` disables them (call :meth:`purge` yourself).
        busy_timeout: seconds to wait for another writer's lock. Default 30.
        now: wall-clock time in epoch seconds, stored with each key. Default
            :func:`time.time`.
        clock: schedules the automatic purges. Default the system clock.
        name: the name in events. Default ``"inbox-N"``.
        listeners: event listeners (:class:`InboxDuplicate`).

    Raises:
        ConfigError: an invalid option.

    Example::

        inbox = SQLiteInbox("app.db")
        await inbox.create_table()

        def apply(conn):
            conn.execute("UPDATE account SET balance = balance + 10 WHERE id = 1")

        ran = await inbox.process(msg.key, apply)
    """

    def __init__(
        self,
        database: str | Any,
        *,
        table: str = "buttress_inbox",
        window: float | timedelta = 7 * _DAY,
        purge_interval: float | timedelta = 60.0,
        busy_timeout: float | timedelta = 30.0,
        now: Callable[[], float] | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        super().__init__(
            table=table,
            window=window,
            purge_interval=purge_interval,
            now=now,
            clock=clock,
            name=name,
            listeners=listeners,
        )
        self.database = database_path(database)
        self.busy_timeout = v.seconds("busy_timeout", busy_timeout)
        self._runner = SQLiteRunner(self.database, busy_timeout=self.busy_timeout, name=self.name)

    def schema(self) -> str:
        """The DDL of the inbox table, for your migration tool."""
        return _SQLITE_DDL.format(t=self.table)

    async def create_table(self) -> None:
        """Create the inbox table and index if missing."""
        ddl = self.schema()
        await self._runner.run(lambda conn: conn.executescript(ddl))

    def mark(self, conn: sqlite3.Connection, key: str) -> bool:
        """Record ``key`` inside *your* open transaction on ``conn``.

        Returns ``True`` the first time (go ahead with the effect, then commit) and
        ``False`` when the key is known (roll back / skip). The key only sticks if your
        transaction commits. Use ``BEGIN IMMEDIATE`` so concurrent duplicates serialise.

        Example::

            conn.execute("BEGIN IMMEDIATE")
            if inbox.mark(conn, msg.key):
                conn.execute("INSERT INTO orders ...")
            conn.execute("COMMIT")
        """
        cursor = conn.execute(
            f"INSERT INTO {self.table} (key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (_key(key), self._now()),
        )
        return cursor.rowcount == 1

    async def process(self, key: str, handler: Callable[[sqlite3.Connection], Any]) -> bool:
        """Run ``handler(connection)`` and record ``key`` in one transaction, once per key.

        Returns:
            ``True`` when the handler ran and committed; ``False`` for a duplicate.

        Raises:
            Exception: what the handler raised (nothing was committed), or a
                ``sqlite3.Error`` from the database.
        """
        _key(key)
        ran = await self._runner.run(
            lambda conn: transaction(conn, lambda c: self._once(c, key, handler))
        )
        if not ran:
            self._emit(InboxDuplicate(self.name, key))
        elif self._purge_due():
            await self.purge()
        return ran

    def _once(
        self, conn: sqlite3.Connection, key: str, handler: Callable[[sqlite3.Connection], Any]
    ) -> bool:
        if not self.mark(conn, key):
            return False
        handler(conn)
        return True

    async def seen(self, key: str) -> bool:
        """True when ``key`` is recorded (committed)."""
        sql = f"SELECT 1 FROM {self.table} WHERE key = ?"
        row = await self._runner.run(lambda conn: conn.execute(sql, (_key(key),)).fetchone())
        return row is not None

    async def purge(self) -> int:
        """Delete keys older than ``window``; return how many were deleted."""
        cutoff = self._now() - self.window
        sql = f"DELETE FROM {self.table} WHERE seen_at < ?"
        return int(await self._runner.run(lambda conn: conn.execute(sql, (cutoff,)).rowcount))

    async def close(self) -> None:
        """Close the inbox's connection and worker thread."""
        await asyncio.to_thread(self._runner.close)

    def __repr__(self) -> str:
        return f"SQLiteInbox({self.database!r}, table={self.table!r}, window={self.window:g})"


class _PgPool:
    """A tiny pool of psycopg async connections (autocommit; transactions explicit)."""

    def __init__(self, conninfo: str, size: int) -> None:
        self.conninfo = conninfo
        self.size = size
        self._idle: list[Any] = []
        self._sem: asyncio.Semaphore | None = None

    async def acquire(self) -> Any:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.size)
        await self._sem.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
            psycopg = import_psycopg()
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except BaseException:
            self._sem.release()
            raise

    def release(self, conn: Any, *, broken: bool = False) -> None:
        assert self._sem is not None
        if broken or conn.closed or conn.info.transaction_status != 0:
            self._discard(conn)
        else:
            self._idle.append(conn)
        self._sem.release()

    def _discard(self, conn: Any) -> None:
        if not conn.closed:
            # Closing an async connection needs a loop round; the server drops it anyway.
            task = asyncio.ensure_future(conn.close())
            task.add_done_callback(lambda t: t.exception())

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


def _conninfo(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise v.fail("conninfo", "a libpq connection string or URL", value)
    return value


class PostgresInbox(_SQLInboxBase):
    """Strict deduplication in PostgreSQL: the key commits with the handler's own writes.

    ``process(key, handler)`` takes a connection from a small internal pool, opens a
    transaction, runs ``INSERT ... ON CONFLICT DO NOTHING`` for ``key``; for a new key it
    awaits ``handler(connection)`` (a psycopg ``AsyncConnection`` in that transaction) and
    commits both. A concurrent duplicate blocks on the uncommitted key until the first
    transaction ends, then sees it (or, if that one rolled back, runs). The effect
    happens once, whatever crashes.

    With your own connection and transaction, call :meth:`mark` instead.

    Args:
        conninfo: a libpq connection string or ``postgresql://`` URL.
        table: the inbox table. Default ``"buttress_inbox"``.
        window: how long keys are kept, seconds or ``timedelta``. Default 7 days.
        purge_interval: minimum seconds between automatic purges. Default 60.
        pool_size: the most connections ``process`` holds at once. Default 4.
        now: wall-clock time in epoch seconds, stored with each key. Default ``time.time``.
        clock: schedules the automatic purges. Default the system clock.
        name: the name in events. Default ``"inbox-N"``.
        listeners: event listeners (:class:`InboxDuplicate`).

    Raises:
        ConfigError: an invalid option.
        ImportError: psycopg is missing (``pip install 'buttress[postgres]'``), on first use.

    Example::

        inbox = PostgresInbox("postgresql://app@db/app")
        await inbox.create_table()

        async def apply(conn):
            await conn.execute("UPDATE account SET balance = balance + 10 WHERE id = 1")

        ran = await inbox.process(msg.key, apply)
    """

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = "buttress_inbox",
        window: float | timedelta = 7 * _DAY,
        purge_interval: float | timedelta = 60.0,
        pool_size: int = 4,
        now: Callable[[], float] | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        super().__init__(
            table=table,
            window=window,
            purge_interval=purge_interval,
            now=now,
            clock=clock,
            name=name,
            listeners=listeners,
        )
        self.conninfo = _conninfo(conninfo)
        self.pool_size = v.integer("pool_size", pool_size, minimum=1)
        self._pool = _PgPool(self.conninfo, self.pool_size)

    def schema(self) -> str:
        """The DDL of the inbox table, for your migration tool."""
        return _PG_DDL.format(t=self.table)

    async def _with_conn(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        conn = await self._pool.acquire()
        try:
            return await fn(conn)
        finally:
            # release() discards a connection left closed or mid-transaction.
            self._pool.release(conn)

    async def create_table(self) -> None:
        """Create the inbox table and index if missing."""

        async def ddl(conn: Any) -> None:
            await conn.execute(self.schema())

        await self._with_conn(ddl)

    async def mark(self, conn: Any, key: str) -> bool:
        """Record ``key`` inside *your* open transaction on ``conn`` (psycopg async).

        Returns ``True`` the first time (do the effect, then commit), ``False`` when the
        key is known. The key only sticks if your transaction commits.

        Example::

            async with conn.transaction():
                if await inbox.mark(conn, msg.key):
                    await conn.execute("INSERT INTO orders ...")
        """
        cursor = await conn.execute(
            f"INSERT INTO {self.table} (key, seen_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (_key(key), self._now()),
        )
        return bool(cursor.rowcount == 1)

    async def process(self, key: str, handler: Callable[[Any], Awaitable[Any]]) -> bool:
        """Await ``handler(connection)`` and record ``key`` in one transaction, once per key.

        Returns:
            ``True`` when the handler ran and committed; ``False`` for a duplicate.

        Raises:
            Exception: what the handler raised (nothing was committed), or a psycopg error.
        """
        _key(key)

        async def once(conn: Any) -> bool:
            async with conn.transaction():
                if not await self.mark(conn, key):
                    return False
                await handler(conn)
                return True

        ran = bool(await self._with_conn(once))
        if not ran:
            self._emit(InboxDuplicate(self.name, key))
        elif self._purge_due():
            await self.purge()
        return ran

    async def seen(self, key: str) -> bool:
        """True when ``key`` is recorded (committed)."""

        async def query(conn: Any) -> bool:
            cur = await conn.execute(f"SELECT 1 FROM {self.table} WHERE key = %s", (_key(key),))
            return await cur.fetchone() is not None

        return bool(await self._with_conn(query))

    async def purge(self) -> int:
        """Delete keys older than ``window``; return how many were deleted."""
        cutoff = self._now() - self.window

        async def delete(conn: Any) -> int:
            cur = await conn.execute(f"DELETE FROM {self.table} WHERE seen_at < %s", (cutoff,))
            return int(cur.rowcount)

        return int(await self._with_conn(delete))

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresInbox(table={self.table!r}, window={self.window:g})"
