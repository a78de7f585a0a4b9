"""Store-and-forward for producers: publish now, or keep it on disk and send it later.

:class:`StoreAndForward` wraps a :class:`~buttress.messaging.Publisher`. While the broker
answers, ``publish`` goes straight through. When it does not, the message is appended to
a local SQLite file (fsync'd on commit) and a background task forwards the buffer, in
order, once the broker is back. See ``docs/store-and-forward.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random as _random
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from .. import _validate as v
from .._backoff import Backoff
from .._clock import Clock, resolve
from .._errors import RejectedError
from .._events import GLOBAL_LISTENERS, Event, Listener, emit
from ._publisher import Publisher
from ._sql import SQLiteRunner, database_path, transaction

__all__ = [
    "ForwardBufferFullError",
    "ForwardBuffered",
    "ForwardDrained",
    "ForwardDropped",
    "ForwardFailed",
    "ForwardStats",
    "StoreAndForward",
]

_counter = itertools.count(1)

_DDL = """
CREATE TABLE IF NOT EXISTS buffer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT
);
"""


class ForwardBufferFullError(RejectedError):
    """The broker is unreachable and the local buffer holds ``max_messages`` already
    (``when_full="reject"``). The message was neither sent nor stored.

    Example::

        try:
            await producer.publish("events", body)
        except ForwardBufferFullError:
            return Response(status_code=503)
    """


@dataclass(frozen=True, slots=True)
class ForwardBuffered(Event):
    """A message went to the local buffer (``buffered`` messages now). ``error`` is the
    publish failure that sent it there, or ``None`` when the buffer was already in use
    (messages queue behind it to keep their order)."""

    topic: str
    msg_id: str
    buffered: int
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class ForwardDropped(Event):
    """The buffer was full (``when_full="drop_oldest"``): the oldest message,
    ``msg_id`` on ``topic``, was deleted unsent to make room."""

    topic: str
    msg_id: str


@dataclass(frozen=True, slots=True)
class ForwardFailed(Event):
    """Forwarding from the buffer failed; the next try is in ``delay`` seconds
    (failure number ``attempt`` in a row)."""

    error: BaseException
    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class ForwardDrained(Event):
    """The buffer is empty again; ``forwarded`` messages were sent from it in this run."""

    forwarded: int


@dataclass(frozen=True, slots=True)
class ForwardStats:
    """A snapshot (:meth:`StoreAndForward.stats`).

    Attributes:
        buffered: messages waiting in the local buffer.
        forwarded: messages sent from the buffer since start.
        direct: messages sent straight to the broker since start.
        dropped: messages dropped by ``when_full="drop_oldest"``.
        forwarding: the background forwarder is running.

    Example::

        if producer.stats().buffered:
            log.warning("broker unreachable: %d messages on disk", producer.stats().buffered)
    """

    buffered: int
    forwarded: int
    direct: int
    dropped: int
    forwarding: bool


class StoreAndForward:
    """A publisher that keeps messages on local disk while the broker is unreachable.

    ``publish`` tries the wrapped publisher; when that raises one of ``on``, the
    message is appended to a SQLite buffer (``synchronous=FULL``: fsync'd on commit)
    and ``publish`` returns its ``msg_id`` — the message is durable locally, not yet
    at the broker. From then on new messages queue behind the buffer, so messages
    published one after another reach the broker in that order. A background task
    forwards the buffer oldest first, one at a time, with ``backoff`` between failed
    tries, deleting each message after the broker confirmed it. Once the buffer is
    empty, ``publish`` goes direct again. A buffer left by a previous process is
    forwarded after :meth:`start` (or the first ``publish``).

    Every message gets a ``msg_id`` (a new UUID unless given), so a message sent twice
    — a crash between the broker's confirmation and the delete — carries the same id
    and a deduplicating broker or inbox absorbs it.

    When full: ``"reject"`` raises :class:`ForwardBufferFullError` (back-pressure);
    ``"drop_oldest"`` deletes the oldest buffered message (event
    :class:`ForwardDropped`) to store the new one.

    Args:
        publisher: the :class:`~buttress.messaging.Publisher` to wrap.
        path: the buffer's SQLite file (created if missing); one producer per file.
        on: the exception types meaning "broker unreachable". Default
            ``(ConnectionError, TimeoutError, OSError)`` — the buttress transports raise
            ``BrokerUnavailableError``, a ``ConnectionError``. Other errors (a refused
            message, a bad topic) propagate from ``publish`` and are not buffered.
        max_messages: the most messages the buffer holds. Default 100 000.
        when_full: ``"reject"`` (default) or ``"drop_oldest"``.
        backoff: waits between failed forwarding tries. Default
            ``Backoff.exponential(base=0.1, cap=5)``.
        drain_timeout: how long :meth:`stop` keeps forwarding before leaving the rest
            on disk, seconds. Default 5.
        clock: sleeps. Default the system clock.
        random: the random source for backoff jitter. Default a fresh one.
        name: the name in events. Default ``"forward-N"``.
        listeners: event listeners (:class:`ForwardBuffered`, :class:`ForwardDropped`,
            :class:`ForwardFailed`, :class:`ForwardDrained`).

    Raises:
        ConfigError: an invalid option.

    Example::

        producer = StoreAndForward(transport, "/var/lib/app/outgoing.db")
        async with producer:
            await producer.publish("events", b"...")
    """

    def __init__(
        self,
        publisher: Publisher,
        path: str | Any,
        *,
        on: type[BaseException] | tuple[type[BaseException], ...] = (
            ConnectionError,
            TimeoutError,
            OSError,
        ),
        max_messages: int = 100_000,
        when_full: Literal["reject", "drop_oldest"] = "reject",
        backoff: Backoff | None = None,
        drain_timeout: float | timedelta = 5.0,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if not isinstance(publisher, Publisher):
            raise v.fail("publisher", "a Publisher (an object with async publish())", publisher)
        self._publisher = publisher
        self.path = database_path(path)
        self.on = v.exception_types("on", on)
        self.max_messages = v.integer("max_messages", max_messages, minimum=1)
        self.when_full = v.choice("when_full", when_full, ("reject", "drop_oldest"))
        if backoff is not None and not isinstance(backoff, Backoff):
            raise v.fail("backoff", "a Backoff or None", backoff)
        self.backoff = Backoff.exponential(base=0.1, cap=5.0) if backoff is None else backoff
        self.drain_timeout = v.seconds("drain_timeout", drain_timeout)
        self._clock = resolve(clock)
        self._rng = v.rng(random)
        self.name = v.name_of(name, "forward", lambda: next(_counter))
        self._listeners = v.listeners(listeners)
        self._runner = SQLiteRunner(self.path, busy_timeout=5.0, name=self.name)
        self._buffered: int | None = None  # None until the file was opened
        self._loading: asyncio.Task[None] | None = None
        self._forwarder: asyncio.Task[None] | None = None
        self._forwarded = 0
        self._direct = 0
        self._dropped = 0
        self._run_forwarded = 0

    # -- public API ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the buffer file and forward what a previous run left in it."""
        await self._ensure()

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Publish now if the broker answers, else store the message to forward later.

        Returns:
            The broker's id when sent directly; the ``msg_id`` when buffered.

        Raises:
            ForwardBufferFullError: buffered mode, full, and ``when_full="reject"``.
            Exception: a publish error not listed in ``on`` (nothing was buffered).
        """
        if not isinstance(topic, str) or not topic:
            raise v.fail("topic", "a non-empty str", topic)
        if not isinstance(body, bytes | bytearray | memoryview):
            raise v.fail("body", "bytes", body)
        if msg_id is None:
            msg_id = uuid.uuid4().hex
        elif not isinstance(msg_id, str) or not msg_id:
            raise v.fail("msg_id", "a non-empty str or None", msg_id)
        await self._ensure()
        if not self._buffered:
            try:
                result = await self._publisher.publish(
                    topic, bytes(body), msg_id=msg_id, headers=headers
                )
            except self.on as exc:
                await self._store(topic, bytes(body), msg_id, headers, exc)
                return msg_id
            self._direct += 1
            return result
        await self._store(topic, bytes(body), msg_id, headers, None)
        return msg_id

    async def flush(self) -> None:
        """Wait until the buffer is empty (forever if the broker never comes back)."""
        await self._ensure()
        while self._buffered:
            self._start_forwarder()
            assert self._forwarder is not None
            await asyncio.shield(self._forwarder)

    async def stop(self) -> None:
        """Forward for up to ``drain_timeout``, then stop; the rest stays on disk."""
        forwarder = self._forwarder
        if forwarder is not None and not forwarder.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.drain_timeout):
                    await asyncio.shield(forwarder)
            forwarder.cancel()
            await asyncio.wait((forwarder,))
        self._forwarder = None
        await asyncio.to_thread(self._runner.close)
        self._buffered = None
        self._loading = None

    async def __aenter__(self) -> StoreAndForward:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats(self) -> ForwardStats:
        """A snapshot of the buffer and counters."""
        return ForwardStats(
            buffered=self._buffered or 0,
            forwarded=self._forwarded,
            direct=self._direct,
            dropped=self._dropped,
            forwarding=self._forwarder is not None and not self._forwarder.done(),
        )

    # -- internals -------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, event)

    async def _ensure(self) -> None:
        if self._buffered is not None:
            return
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        await asyncio.shield(self._loading)

    async def _load(self) -> None:
        def load(conn: sqlite3.Connection) -> int:
            conn.executescript(_DDL)
            return int(conn.execute("SELECT COUNT(*) FROM buffer").fetchone()[0])

        try:
            count = await self._runner.run(load)
        except BaseException:
            self._loading = None
            raise
        self._buffered = count
        if count:
            self._start_forwarder()

    async def _store(
        self,
        topic: str,
        body: bytes,
        msg_id: str,
        headers: Mapping[str, str] | None,
        error: BaseException | None,
    ) -> None:
        assert self._buffered is not None
        drop = self._buffered >= self.max_messages
        if drop and self.when_full == "reject":
            raise ForwardBufferFullError(
                f"store-and-forward {self.name!r}: the broker is unreachable and the "
                f"buffer holds max_messages={self.max_messages}",
                policy=self.name,
            ) from error
        hdrs = None if headers is None else json.dumps(dict(headers), separators=(",", ":"))

        def append(conn: sqlite3.Connection) -> tuple[str, str] | None:
            dropped = None
            if drop:
                row = conn.execute(
                    "DELETE FROM buffer WHERE id = (SELECT MIN(id) FROM buffer)"
                    " RETURNING topic, msg_id"
                ).fetchone()
                dropped = None if row is None else (row[0], row[1])
            conn.execute(
                "INSERT INTO buffer (topic, msg_id, body, headers) VALUES (?, ?, ?, ?)",
                (topic, msg_id, body, hdrs),
            )
            return dropped

        # Counted before the write is queued: the forwarder's next read is queued after
        # this append (one worker thread, FIFO), so it never sees an empty buffer early.
        if not drop:
            self._buffered += 1
        try:
            dropped = await self._runner.run(lambda c: transaction(c, append))
        except BaseException:
            if not drop:
                self._buffered -= 1
            raise
        if dropped is not None:
            self._dropped += 1
            self._emit(ForwardDropped(self.name, dropped[0], dropped[1]))
        self._emit(ForwardBuffered(self.name, topic, msg_id, self._buffered, error))
        self._start_forwarder()

    def _start_forwarder(self) -> None:
        if self._forwarder is None or self._forwarder.done():
            self._run_forwarded = 0
            self._forwarder = asyncio.get_running_loop().create_task(self._forward())

    async def _forward(self) -> None:
        failures = 0
        previous = 0.0
        while True:
            rows = await self._runner.run(
                lambda c: c.execute(
                    "SELECT id, topic, msg_id, body, headers FROM buffer ORDER BY id LIMIT 100"
                ).fetchall()
            )
            if not rows:
                count = await self._runner.run(
                    lambda c: int(c.execute("SELECT COUNT(*) FROM buffer").fetchone()[0])
                )
                self._buffered = count
                if count == 0:
                    self._emit(ForwardDrained(self.name, self._run_forwarded))
                    return
                continue
            for row_id, topic, msg_id, body, hdrs in rows:
                headers = None if hdrs is None else json.loads(hdrs)
                while True:
                    try:
                        await self._publisher.publish(
                            topic, bytes(body), msg_id=msg_id, headers=headers
                        )
                    except Exception as exc:
                        failures += 1
                        previous = self.backoff.compute(failures, previous, self._rng)
                        self._emit(ForwardFailed(self.name, exc, previous, failures))
                        await self._clock.sleep(previous)
                        continue
                    failures, previous = 0, 0.0
                    break
                deleted = await self._runner.run(_deleter(row_id))
                if deleted:
                    assert self._buffered is not None
                    self._buffered -= 1
                self._forwarded += 1
                self._run_forwarded += 1

    def __repr__(self) -> str:
        return f"StoreAndForward({self.path!r}, name={self.name!r})"


def _deleter(row_id: int) -> Callable[[sqlite3.Connection], int]:
    def delete(conn: sqlite3.Connection) -> int:
        return int(conn.execute("DELETE FROM buffer WHERE id = ?", (row_id,)).rowcount)

    return delete
