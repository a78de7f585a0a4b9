"""Small shared pieces of the SQL-backed helpers (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .. import _validate as v

T = TypeVar("T")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def table_name(value: object) -> str:
    """A table name safe to splice into SQL (we cannot bind identifiers)."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise v.fail("table", "an SQL identifier ([A-Za-z_][A-Za-z0-9_]*, <= 63 chars)", value)
    return value


def database_path(value: object) -> str:
    """A SQLite database: a path (str or Path); ``":memory:"`` is refused (not shared)."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value or value == ":memory:":
        raise v.fail("database", "a path to a SQLite database file (str or Path)", value)
    return value


def connect_sqlite(path: str, *, busy_timeout: float) -> sqlite3.Connection:
    """A connection for our own use: WAL, fsync on commit, explicit transactions."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: in WAL mode each commit is fsync'd, so a committed row survives power loss.
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class SQLiteRunner:
    """One SQLite connection used from one worker thread, so the event loop never blocks.

    Calls run in submission order (a single-thread executor), which is also what keeps
    appends to a buffer in the order they were made. The connection opens lazily on the
    worker thread, so the owner can be built before an event loop exists.
    """

    def __init__(self, path: str, *, busy_timeout: float, name: str) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """The connection (only call from the worker thread)."""
        if self._conn is None:
            self._conn = connect_sqlite(self.path, busy_timeout=self.busy_timeout)
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the worker thread and return its result."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
            executor = self._executor
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: fn(self.connection()))

    def close(self) -> None:
        """Close the connection and stop the worker thread (waits for queued calls)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._close_conn).result()
            executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back if it raises).

    IMMEDIATE takes the write lock up front, so two processes racing on the same rows
    serialise at BEGIN (waiting up to the busy timeout) instead of failing at COMMIT.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def import_psycopg() -> Any:
    """psycopg 3, or a clear error naming the extra to install."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the PostgreSQL backends need psycopg 3: pip install 'buttress[postgres]'"
        ) from exc
    return psycopg
