"""The inbox: duplicates are absorbed; the SQL inboxes commit the key with the effect."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

import buttress as bt
from buttress.events import StoreFellBack
from buttress.messaging import (
    InboxBusyError,
    InboxDuplicate,
    PostgresInbox,
    RedisInbox,
    SQLiteInbox,
)

from ..conftest import Recorder

# -- SQLite ---------------------------------------------------------------------------


def _counter_table(db: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS effect (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.execute("INSERT OR IGNORE INTO effect VALUES (1, 0)")


def _effect(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT n FROM effect WHERE id = 1").fetchone()[0])


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE effect SET n = n + 1 WHERE id = 1")


async def test_sqlite_duplicate_is_absorbed(db: str, recorder: Recorder) -> None:
    """A second delivery of a key returns False and does not run the handler."""
    _counter_table(db)
    inbox = SQLiteInbox(db)
    await inbox.create_table()
    assert await inbox.process("m1", _bump) is True
    assert await inbox.process("m1", _bump) is False
    assert _effect(db) == 1
    assert await inbox.seen("m1")
    assert [e.key for e in recorder.of(InboxDuplicate)] == ["m1"]  # type: ignore[attr-defined]
    await inbox.close()


async def test_sqlite_handler_failure_commits_nothing(db: str) -> None:
    """When the handler raises, neither its writes nor the key commit; a retry runs."""
    _counter_table(db)
    inbox = SQLiteInbox(db)
    await inbox.create_table()

    def bump_then_fail(conn: sqlite3.Connection) -> None:
        _bump(conn)
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await inbox.process("m1", bump_then_fail)
    assert _effect(db) == 0
    assert not await inbox.seen("m1")
    assert await inbox.process("m1", _bump) is True
    assert _effect(db) == 1
    await inbox.close()


async def test_sqlite_concurrent_duplicates_effect_once(db: str) -> None:
    """Concurrent deliveries of one key through two inboxes (two connections, as two
    processes would have) change the data exactly once."""
    _counter_table(db)
    a, b = SQLiteInbox(db), SQLiteInbox(db)
    await a.create_table()
    results = await asyncio.gather(
        *(inbox.process("dup", _bump) for _ in range(10) for inbox in (a, b))
    )
    assert results.count(True) == 1
    assert _effect(db) == 1
    await a.close()
    await b.close()


async def test_sqlite_mark_inside_own_transaction(db: str) -> None:
    """mark() in the caller's transaction: the key sticks only if that commits."""
    _counter_table(db)
    inbox = SQLiteInbox(db)
    await inbox.create_table()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    assert inbox.mark(conn, "k") is True
    conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    assert inbox.mark(conn, "k") is True
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    assert inbox.mark(conn, "k") is False
    conn.execute("COMMIT")
    conn.close()
    await inbox.close()


async def test_sqlite_purge_forgets_keys_older_than_window(db: str) -> None:
    """purge() deletes keys older than the window; younger ones stay."""
    _counter_table(db)
    now = [1000.0]
    inbox = SQLiteInbox(db, window=60, now=lambda: now[0], purge_interval=float("inf"))
    await inbox.create_table()
    await inbox.process("old", _bump)
    now[0] += 50
    await inbox.process("young", _bump)
    now[0] += 20
    assert await inbox.purge() == 1
    assert not await inbox.seen("old")
    assert await inbox.seen("young")
    await inbox.close()


async def test_sqlite_automatic_purge_runs_at_most_every_interval(db: str, clock: Any) -> None:
    """process() purges expired keys, at most once per purge_interval on the clock."""
    _counter_table(db)
    now = [0.0]
    inbox = SQLiteInbox(db, window=10, purge_interval=30, now=lambda: now[0], clock=clock)
    await inbox.create_table()
    await inbox.process("a", _bump)  # first purge runs here (nothing to delete)
    now[0] = 100.0
    await inbox.process("b", _bump)  # within purge_interval on the clock: no purge
    assert await inbox.seen("a")
    clock.advance(31)
    await inbox.process("c", _bump)
    assert not await inbox.seen("a")
    await inbox.close()


# -- PostgreSQL -----------------------------------------------------------------------


async def _pg_effect_table(pg: str, table: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
        await conn.execute(f"CREATE TABLE {table}_effect (id INT PRIMARY KEY, n INT)")
        await conn.execute(f"INSERT INTO {table}_effect VALUES (1, 0)")


async def _pg_effect(pg: str, table: str) -> int:
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT n FROM {table}_effect WHERE id = 1")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_postgres_concurrent_duplicates_effect_once(pg: str, table: str) -> None:
    """Concurrent deliveries of one key on eight connections change the data once."""
    await _pg_effect_table(pg, table)
    inbox = PostgresInbox(pg, table=table, pool_size=8)
    await inbox.create_table()

    async def bump(conn: Any) -> None:
        await conn.execute(f"UPDATE {table}_effect SET n = n + 1 WHERE id = 1")
        await asyncio.sleep(0.01)  # widen the race: others wait on the uncommitted key

    results = await asyncio.gather(*(inbox.process("dup", bump) for _ in range(16)))
    assert results.count(True) == 1
    assert await _pg_effect(pg, table) == 1
    await inbox.close()


async def test_postgres_handler_failure_rolls_back_and_retry_runs(pg: str, table: str) -> None:
    """A failing handler commits nothing; the redelivery runs and commits once."""
    await _pg_effect_table(pg, table)
    inbox = PostgresInbox(pg, table=table)
    await inbox.create_table()

    async def bump(conn: Any) -> None:
        await conn.execute(f"UPDATE {table}_effect SET n = n + 1 WHERE id = 1")

    async def bump_then_fail(conn: Any) -> None:
        await bump(conn)
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await inbox.process("m", bump_then_fail)
    assert await _pg_effect(pg, table) == 0
    assert await inbox.process("m", bump) is True
    assert await inbox.process("m", bump) is False
    assert await _pg_effect(pg, table) == 1
    await inbox.close()


async def test_postgres_purge_and_mark(pg: str, table: str) -> None:
    """mark() in the caller's transaction, and purge() of keys past the window."""
    import psycopg

    now = [1000.0]
    inbox = PostgresInbox(pg, table=table, window=60, now=lambda: now[0])
    await inbox.create_table()
    async with await psycopg.AsyncConnection.connect(pg) as conn:
        async with conn.transaction():
            assert await inbox.mark(conn, "k") is True
        async with conn.transaction():
            assert await inbox.mark(conn, "k") is False
    now[0] += 61
    assert await inbox.purge() == 1
    assert not await inbox.seen("k")
    await inbox.close()


# -- Redis ----------------------------------------------------------------------------


async def test_redis_duplicate_is_absorbed(redis_client: Any, table: str) -> None:
    """The second delivery returns False without running the handler."""
    inbox = RedisInbox(redis_client, prefix=table + ":")
    runs: list[int] = []

    async def handle(n: int) -> None:
        runs.append(n)

    assert await inbox.process("m", handle, 1) is True
    assert await inbox.process("m", handle, 2) is False
    assert runs == [1]
    assert await inbox.seen("m")
    assert 0 < await redis_client.pttl(table + ":m") <= 7 * 86_400_000


async def test_redis_concurrent_duplicate_is_busy(redis_client: Any, table: str) -> None:
    """While one delivery runs, a concurrent duplicate gets InboxBusyError (retry later)."""
    inbox = RedisInbox(redis_client, prefix=table + ":", claim_timeout=30)
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        entered.set()
        await release.wait()

    first = asyncio.create_task(inbox.process("m", slow))
    await entered.wait()
    with pytest.raises(InboxBusyError) as info:
        await inbox.process("m", slow)
    assert info.value.key == "m"
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 30
    release.set()
    assert await first is True
    assert await inbox.process("m", slow) is False


async def test_redis_handler_failure_releases_claim(redis_client: Any, table: str) -> None:
    """A failing handler gives the key back so the redelivery runs."""
    inbox = RedisInbox(redis_client, prefix=table + ":")

    async def fail() -> None:
        raise RuntimeError("boom")

    async def ok() -> None:
        pass

    with pytest.raises(RuntimeError):
        await inbox.process("m", fail)
    assert await inbox.process("m", ok) is True


async def test_redis_crash_window_reruns_after_claim_expiry(redis_client: Any, table: str) -> None:
    """The documented crash window: a consumer that died after its effect but before
    the mark leaves a claim; once it expires, the redelivery runs the handler again."""
    inbox = RedisInbox(redis_client, prefix=table + ":", claim_timeout=60)
    # What a dead consumer leaves behind: its claim token, still unexpired.
    await redis_client.set(table + ":m", "claim:dead", px=60_000)
    runs: list[int] = []

    async def handle() -> None:
        runs.append(1)

    with pytest.raises(InboxBusyError):
        await inbox.process("m", handle)
    await redis_client.pexpire(table + ":m", 1)  # the claim_timeout runs out
    await asyncio.sleep(0.01)
    assert await inbox.process("m", handle) is True
    assert runs == [1]


async def test_redis_store_failure_policies(recorder: Recorder) -> None:
    """Redis down: fail_closed raises StoreError, fail_open runs the handler; both
    emit StoreFellBack."""
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from ..servers import free_port

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    runs: list[int] = []

    async def handle() -> None:
        runs.append(1)

    with pytest.raises(bt.StoreError):
        await RedisInbox(dead).process("m", handle)
    assert runs == []
    assert await RedisInbox(dead, on_store_error="fail_open").process("m", handle) is True
    assert runs == [1]
    assert [e.mode for e in recorder.of(StoreFellBack)] == ["fail_closed", "fail_open"]  # type: ignore[attr-defined]
    await dead.aclose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be"),
        ({"claim_timeout": -1}, "claim_timeout must be"),
        ({"on_store_error": "ignore"}, "on_store_error must be"),
    ],
)
def test_redis_inbox_validates_options(
    redis_client: Any, kwargs: dict[str, Any], message: str
) -> None:
    """Bad options raise ConfigError naming the argument."""
    with pytest.raises(bt.ConfigError, match=message):
        RedisInbox(redis_client, **kwargs)


def test_sql_inboxes_validate_options(db: str) -> None:
    """Bad table names, paths and pool sizes raise ConfigError naming the argument."""
    with pytest.raises(bt.ConfigError, match="table must be"):
        SQLiteInbox(db, table="x; DROP TABLE y")
    with pytest.raises(bt.ConfigError, match="database must be"):
        SQLiteInbox(":memory:")
    with pytest.raises(bt.ConfigError, match="pool_size must be"):
        PostgresInbox("postgresql://x", pool_size=0)
    with pytest.raises(bt.ConfigError, match="window must be"):
        SQLiteInbox(db, window=0)
