"""Idempotency keys for HTTP APIs (Stripe semantics): the stores.

A client sends ``Idempotency-Key: <unique>`` with a POST; retrying with the same key
must not repeat the effect. The middleware
(:class:`buttress.integrations.asgi.IdempotencyMiddleware`) asks a store to *begin* the
key: the first request runs; a concurrent duplicate is refused (409); a completed
one gets the saved response replayed; the same key with different parameters gets 422.
See ``docs/idempotency-keys.md``.

Stores: :class:`MemoryIdempotencyStore` (one process), :class:`RedisIdempotencyStore`,
:class:`SQLiteIdempotencyStore`, :class:`PostgresIdempotencyStore`. Any object with the
three methods of :class:`IdempotencyStore` works.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .. import _validate as v
from .._clock import Clock, resolve
from ._inbox import _conninfo, _PgPool
from ._sql import SQLiteRunner, database_path, table_name, transaction

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "Begin",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "PostgresIdempotencyStore",
    "RedisIdempotencyStore",
    "SQLiteIdempotencyStore",
    "SavedResponse",
]

BeginState = Literal["started", "in_progress", "mismatch", "completed"]


@dataclass(frozen=True, slots=True)
class SavedResponse:
    """A response kept for replay: status, raw header pairs and the whole body.

    Example::

        saved = SavedResponse(201, ((b"content-type", b"application/json"),), b"{}")
        assert SavedResponse.loads(saved.dumps()) == saved
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def dumps(self) -> str:
        """JSON text of the response (for stores that keep strings)."""
        return json.dumps(
            {
                "s": self.status,
                "h": [[k.decode("latin-1"), x.decode("latin-1")] for k, x in self.headers],
                "b": base64.b64encode(self.body).decode("ascii"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | bytes) -> SavedResponse:
        """The inverse of :meth:`dumps`."""
        data = json.loads(text)
        return cls(
            int(data["s"]),
            tuple((k.encode("latin-1"), x.encode("latin-1")) for k, x in data["h"]),
            base64.b64decode(data["b"]),
        )


@dataclass(frozen=True, slots=True)
class Begin:
    """What :meth:`IdempotencyStore.begin` found.

    Attributes:
        state: ``"started"`` — the key is new and now held by this request (run it,
            then ``finish`` or ``abandon`` with ``token``); ``"in_progress"`` — another
            request holds it; ``"mismatch"`` — the key was used with other parameters;
            ``"completed"`` — ``response`` holds the saved response.
        token: identifies this request's hold (``"started"`` only).
        response: the saved response (``"completed"`` only).

    Example::

        begun = await store.begin(key, fingerprint, lock_ttl=60, ttl=86_400)
        if begun.state == "started":
            ...  # run, then store.finish(key, begun.token, response, ttl=86_400)
    """

    state: BeginState
    token: str = ""
    response: SavedResponse | None = None


@runtime_checkable
class IdempotencyStore(Protocol):
    """Where idempotency keys live. All three methods are atomic per key.

    Example::

        class MyStore:
            async def begin(self, key, fingerprint, *, lock_ttl, ttl) -> Begin: ...
            async def finish(self, key, token, response, *, ttl) -> None: ...
            async def abandon(self, key, token) -> None: ...
    """

    async def begin(self, key: str, fingerprint: str, *, lock_ttl: float, ttl: float) -> Begin:
        """Hold ``key`` for ``lock_ttl`` seconds if it is free (or its hold expired)."""
        ...

    async def finish(self, key: str, token: str, response: SavedResponse, *, ttl: float) -> None:
        """Save ``response`` for ``key`` for ``ttl`` seconds (if still held by ``token``)."""
        ...

    async def abandon(self, key: str, token: str) -> None:
        """Release ``key`` (if still held by ``token``) so a retry may run."""
        ...


def _judge(fp: str, stored_fp: str, done: bool, response: str | bytes | None) -> Begin:
    if stored_fp != fp:
        return Begin("mismatch")
    if not done or response is None:
        return Begin("in_progress")
    return Begin("completed", response=SavedResponse.loads(response))


class MemoryIdempotencyStore:
    """Keys in a dict of this process (tests, single-process services).

    Args:
        clock: measures hold and retention times. Default the system clock.
        max_keys: the most keys kept; the oldest expiring ones are evicted first when
            more arrive. Default 100 000.

    Raises:
        ConfigError: an invalid option.

    Example::

        app = IdempotencyMiddleware(app, store=MemoryIdempotencyStore())
    """

    def __init__(self, *, clock: Clock | None = None, max_keys: int = 100_000) -> None:
        self._clock = resolve(clock)
        self.max_keys = v.integer("max_keys", max_keys, minimum=1)
        # key -> (fingerprint, token, expires_at, saved response or None while running)
        self._keys: dict[str, tuple[str, str, float, SavedResponse | None]] = {}

    async def begin(self, key: str, fingerprint: str, *, lock_ttl: float, ttl: float) -> Begin:
        """See :meth:`IdempotencyStore.begin`."""
        now = self._clock.monotonic()
        entry = self._keys.get(key)
        if entry is not None and entry[2] <= now:
            del self._keys[key]
            entry = None
        if entry is not None:
            fp, _, _, response = entry
            if fp != fingerprint:
                return Begin("mismatch")
            if response is None:
                return Begin("in_progress")
            return Begin("completed", response=response)
        if len(self._keys) >= self.max_keys:
            self._evict(now)
        token = secrets.token_hex(8)
        self._keys[key] = (fingerprint, token, now + lock_ttl, None)
        return Begin("started", token=token)

    def _evict(self, now: float) -> None:
        for k in [k for k, e in self._keys.items() if e[2] <= now]:
            del self._keys[k]
        while len(self._keys) >= self.max_keys:
            del self._keys[min(self._keys, key=lambda k: self._keys[k][2])]

    async def finish(self, key: str, token: str, response: SavedResponse, *, ttl: float) -> None:
        """See :meth:`IdempotencyStore.finish`."""
        entry = self._keys.get(key)
        if entry is not None and entry[1] == token:
            self._keys[key] = (entry[0], token, self._clock.monotonic() + ttl, response)

    async def abandon(self, key: str, token: str) -> None:
        """See :meth:`IdempotencyStore.abandon`."""
        entry = self._keys.get(key)
        if entry is not None and entry[1] == token and entry[3] is None:
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)


class RedisIdempotencyStore:
    """Keys in Redis, shared by every instance of the service.

    ``begin`` is one Lua script (check and hold, or report); a hold expires after
    ``lock_ttl`` so a crashed request frees its key; a saved response expires after
    ``ttl``.

    Args:
        client: a ``redis.asyncio.Redis``.
        prefix: key prefix. Default ``"bt:idem:"``.

    Raises:
        ConfigError: an invalid option.

    Example::

        store = RedisIdempotencyStore(redis.asyncio.Redis.from_url(url))
    """

    _BEGIN = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
return v
"""
    _FINISH = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return false
"""
    _ABANDON = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

    def __init__(self, client: Redis, *, prefix: str = "bt:idem:") -> None:
        if client is None or not hasattr(client, "register_script"):
            raise v.fail("client", "a redis.asyncio.Redis client", client)
        if not isinstance(prefix, str):
            raise v.fail("prefix", "a str", prefix)
        self.prefix = prefix
        self._client = client
        self._begin = client.register_script(self._BEGIN)
        self._finish = client.register_script(self._FINISH)
        self._abandon = client.register_script(self._ABANDON)

    @staticmethod
    def _running(fingerprint: str, token: str) -> str:
        return json.dumps({"fp": fingerprint, "t": token}, separators=(",", ":"))

    async def begin(self, key: str, fingerprint: str, *, lock_ttl: float, ttl: float) -> Begin:
        """See :meth:`IdempotencyStore.begin`."""
        token = secrets.token_hex(8)
        held = self._running(fingerprint, token)
        found = await self._begin(keys=[self.prefix + key], args=[held, _ms(lock_ttl)])
        if not found:
            return Begin("started", token=token)
        record = json.loads(found)
        return _judge(fingerprint, record["fp"], "r" in record, record.get("r"))

    async def finish(self, key: str, token: str, response: SavedResponse, *, ttl: float) -> None:
        """See :meth:`IdempotencyStore.finish`."""
        # Compare-and-set against the exact held value: a hold that expired and was
        # taken by another request is left alone.
        full = self.prefix + key
        current = await self._client.get(full)
        if current is None:
            return
        record = json.loads(current)
        if record.get("t") != token or "r" in record:
            return
        done = json.dumps(
            {"fp": record["fp"], "t": token, "r": response.dumps()}, separators=(",", ":")
        )
        await self._finish(keys=[full], args=[current, done, _ms(ttl)])

    async def abandon(self, key: str, token: str) -> None:
        """See :meth:`IdempotencyStore.abandon`."""
        full = self.prefix + key
        current = await self._client.get(full)
        if current is None:
            return
        record = json.loads(current)
        if record.get("t") == token and "r" not in record:
            await self._abandon(keys=[full], args=[current])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    response TEXT,
    expires REAL NOT NULL
);
"""

_PG_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    response TEXT,
    expires DOUBLE PRECISION NOT NULL
);
"""


class SQLiteIdempotencyStore:
    """Keys in a SQLite table (one host; several processes may share the file).

    Args:
        database: the SQLite file (str or ``Path``).
        table: the table. Default ``"buttress_idempotency"`` (created on first use).
        now: wall-clock time in epoch seconds. Default ``time.time``.

    Raises:
        ConfigError: an invalid option.

    Example::

        store = SQLiteIdempotencyStore("app.db")
    """

    def __init__(
        self,
        database: str | Any,
        *,
        table: str = "buttress_idempotency",
        now: Callable[[], float] | None = None,
    ) -> None:
        self.database = database_path(database)
        self.table = table_name(table)
        if now is not None and not callable(now):
            raise v.fail("now", "a callable returning epoch seconds, or None", now)
        self._now: Callable[[], float] = time.time if now is None else now
        self._runner = SQLiteRunner(self.database, busy_timeout=30.0, name="idempotency")
        self._ready = False

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if not self._ready:
            ddl = _SQLITE_DDL.format(t=self.table)
            await self._runner.run(lambda c: c.executescript(ddl))
            self._ready = True
        return await self._runner.run(lambda c: transaction(c, fn))

    async def begin(self, key: str, fingerprint: str, *, lock_ttl: float, ttl: float) -> Begin:
        """See :meth:`IdempotencyStore.begin`."""
        t, now, token = self.table, self._now(), secrets.token_hex(8)

        def run(c: sqlite3.Connection) -> Begin:
            c.execute(f"DELETE FROM {t} WHERE key = ? AND expires <= ?", (key, now))
            row = c.execute(
                f"SELECT fingerprint, response FROM {t} WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                return _judge(fingerprint, row[0], row[1] is not None, row[1])
            c.execute(
                f"INSERT INTO {t} (key, fingerprint, token, expires) VALUES (?, ?, ?, ?)",
                (key, fingerprint, token, now + lock_ttl),
            )
            return Begin("started", token=token)

        result: Begin = await self._run(run)
        return result

    async def finish(self, key: str, token: str, response: SavedResponse, *, ttl: float) -> None:
        """See :meth:`IdempotencyStore.finish`."""
        sql = (
            f"UPDATE {self.table} SET response = ?, expires = ?"
            " WHERE key = ? AND token = ? AND response IS NULL"
        )
        args = (response.dumps(), self._now() + ttl, key, token)
        await self._run(lambda c: c.execute(sql, args))

    async def abandon(self, key: str, token: str) -> None:
        """See :meth:`IdempotencyStore.abandon`."""
        sql = f"DELETE FROM {self.table} WHERE key = ? AND token = ? AND response IS NULL"
        await self._run(lambda c: c.execute(sql, (key, token)))

    async def purge(self) -> int:
        """Delete expired keys; return how many."""
        sql = f"DELETE FROM {self.table} WHERE expires <= ?"
        now = self._now()
        return int(await self._run(lambda c: c.execute(sql, (now,)).rowcount))

    async def close(self) -> None:
        """Close the connection and worker thread."""
        await asyncio.to_thread(self._runner.close)


class PostgresIdempotencyStore:
    """Keys in a PostgreSQL table, shared by every instance of the service.

    Args:
        conninfo: a libpq connection string or URL.
        table: the table. Default ``"buttress_idempotency"`` (created on first use).
        pool_size: the most connections held at once. Default 4.
        now: wall-clock time in epoch seconds. Default ``time.time``.

    Raises:
        ConfigError: an invalid option.

    Example::

        store = PostgresIdempotencyStore("postgresql://app@db/app")
    """

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = "buttress_idempotency",
        pool_size: int = 4,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.conninfo = _conninfo(conninfo)
        self.table = table_name(table)
        self.pool_size = v.integer("pool_size", pool_size, minimum=1)
        if now is not None and not callable(now):
            raise v.fail("now", "a callable returning epoch seconds, or None", now)
        self._now: Callable[[], float] = time.time if now is None else now
        self._pool = _PgPool(self.conninfo, self.pool_size)
        self._ready = False
        self._setup: asyncio.Lock | None = None

    async def _ensure_table(self, conn: Any) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's
        # catalog; one creator per store object avoids that for the common case.
        if self._setup is None:
            self._setup = asyncio.Lock()
        async with self._setup:
            if not self._ready:
                await conn.execute(_PG_DDL.format(t=self.table))
                self._ready = True

    async def _run(self, fn: Callable[[Any], Any]) -> Any:
        conn = await self._pool.acquire()
        try:
            if not self._ready:
                await self._ensure_table(conn)
            async with conn.transaction():
                return await fn(conn)
        finally:
            self._pool.release(conn)

    async def begin(self, key: str, fingerprint: str, *, lock_ttl: float, ttl: float) -> Begin:
        """See :meth:`IdempotencyStore.begin`."""
        t, now, token = self.table, self._now(), secrets.token_hex(8)

        async def run(c: Any) -> Begin:
            await c.execute(f"DELETE FROM {t} WHERE key = %s AND expires <= %s", (key, now))
            cur = await c.execute(
                f"INSERT INTO {t} (key, fingerprint, token, expires) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (key, fingerprint, token, now + lock_ttl),
            )
            if cur.rowcount == 1:
                return Begin("started", token=token)
            cur = await c.execute(f"SELECT fingerprint, response FROM {t} WHERE key = %s", (key,))
            row = await cur.fetchone()
            if row is None:  # deleted between the two statements: someone abandoned it
                return Begin("in_progress")
            return _judge(fingerprint, row[0], row[1] is not None, row[1])

        result: Begin = await self._run(run)
        return result

    async def finish(self, key: str, token: str, response: SavedResponse, *, ttl: float) -> None:
        """See :meth:`IdempotencyStore.finish`."""
        sql = (
            f"UPDATE {self.table} SET response = %s, expires = %s"
            " WHERE key = %s AND token = %s AND response IS NULL"
        )
        args = (response.dumps(), self._now() + ttl, key, token)

        async def run(c: Any) -> None:
            await c.execute(sql, args)

        await self._run(run)

    async def abandon(self, key: str, token: str) -> None:
        """See :meth:`IdempotencyStore.abandon`."""
        sql = f"DELETE FROM {self.table} WHERE key = %s AND token = %s AND response IS NULL"

        async def run(c: Any) -> None:
            await c.execute(sql, (key, token))

        await self._run(run)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._pool.close()
