"""Store-and-forward: while the broker is down publishes go to a durable local buffer
and are forwarded, in order, once it is back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import buttress as bt
from buttress.messaging import (
    ForwardBuffered,
    ForwardBufferFullError,
    ForwardDrained,
    ForwardDropped,
    ForwardFailed,
    MemoryTransport,
    RedisStreamsTransport,
    StoreAndForward,
)
from buttress.testing import FakeClock

from ..conftest import Recorder
from ..servers import RedisServer
from .conftest import Recording


def _buffer_rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT msg_id FROM buffer ORDER BY id")]


async def test_broker_killed_during_publish_everything_arrives_in_order(
    redis_factory: Callable[[], RedisServer], tmp_path: Path, recorder: Recorder
) -> None:
    """A producer publishing one message after another while its redis-server is
    killed: the messages it could not send are buffered on disk and, once the server
    is back, forwarded in the order they were published; none is lost."""
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    server = redis_factory()
    client = redis.Redis.from_url(
        server.url, socket_connect_timeout=0.5, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    transport = RedisStreamsTransport(client)
    producer = StoreAndForward(
        transport, tmp_path / "out.db", backoff=bt.Backoff.constant(0.02), drain_timeout=10
    )
    ids = [f"m{i:03d}" for i in range(80)]
    killed = asyncio.Event()

    async def produce() -> None:
        for i, msg_id in enumerate(ids):
            if i == 25:
                server.kill()
                killed.set()
            await producer.publish("events", msg_id.encode(), msg_id=msg_id)
            await asyncio.sleep(0)

    async with producer:
        await produce()
        buffered = [e.msg_id for e in recorder.of(ForwardBuffered)]  # type: ignore[attr-defined]
        assert buffered == ids[25:]
        assert _buffer_rows(tmp_path / "out.db") == ids[25:]
        server.start()  # same port, empty (the old data died with the process)
        async with asyncio.timeout(20):
            await producer.flush()
        stats = producer.stats()
    assert stats.direct == 25 and stats.forwarded == 55 and stats.buffered == 0
    entries = await client.xrange(transport.key("events"))
    assert [fields[b"msg-id"].decode() for _, fields in entries] == ids[25:]
    assert [e.forwarded for e in recorder.of(ForwardDrained)] == [55]  # type: ignore[attr-defined]
    assert recorder.of(ForwardFailed)  # it did try while the server was down
    await client.aclose()


async def test_buffer_survives_a_restart_of_the_producer(
    tmp_path: Path, memory_publisher: Recording
) -> None:
    """Messages left in the buffer by a previous process are forwarded on start."""
    path = tmp_path / "out.db"
    memory_publisher.fail = 10**9  # broker down for the first producer
    first = StoreAndForward(memory_publisher, path)
    for i in range(5):
        await first.publish("t", b"x", msg_id=f"m{i}")
    # The process dies: its forwarder stops mid-backoff, nothing is drained.
    assert first._forwarder is not None
    first._forwarder.cancel()
    await asyncio.to_thread(first._runner.close)
    assert _buffer_rows(path) == [f"m{i}" for i in range(5)]

    memory_publisher.fail = 0
    second = StoreAndForward(memory_publisher, path)
    await second.start()
    async with asyncio.timeout(5):
        await second.flush()
    await second.stop()
    assert [m for _, m, _ in memory_publisher.sent] == [f"m{i}" for i in range(5)]


async def test_new_messages_queue_behind_the_buffer(
    tmp_path: Path, memory_publisher: Recording
) -> None:
    """Once something is buffered, later publishes queue behind it even if the broker
    would take them, so order is kept; direct publishing resumes after the drain."""
    clock = FakeClock()
    memory_publisher.fail = 3
    producer = StoreAndForward(
        memory_publisher,
        tmp_path / "out.db",
        backoff=bt.Backoff.constant(1.0),
        clock=clock,
    )
    async with producer:
        for i in range(6):
            await producer.publish("t", b"x", msg_id=f"m{i}")
        await producer.flush()
        assert producer.stats().direct == 0
        await producer.publish("t", b"x", msg_id="after")
        assert producer.stats().direct == 1
    assert [m for _, m, _ in memory_publisher.sent] == [f"m{i}" for i in range(6)] + ["after"]


async def test_forwarding_backs_off_with_the_clock(
    tmp_path: Path, memory_publisher: Recording, recorder: Recorder
) -> None:
    """Failed forwarding waits by the backoff (virtual time) and emits ForwardFailed."""
    clock = FakeClock()
    memory_publisher.fail = 4  # the direct try plus three forwarding tries fail
    producer = StoreAndForward(
        memory_publisher,
        tmp_path / "out.db",
        backoff=bt.Backoff.exponential(base=1, cap=10, jitter="none"),
        clock=clock,
    )
    async with producer:
        await producer.publish("t", b"x", msg_id="m")
        await producer.flush()
    failed = recorder.of(ForwardFailed)
    assert [e.delay for e in failed] == [1, 2, 4]  # type: ignore[attr-defined]
    assert clock.monotonic() >= 7
    assert [m for _, m, _ in memory_publisher.sent] == ["m"]


async def test_full_buffer_rejects(tmp_path: Path, memory_publisher: Recording) -> None:
    """when_full="reject": the message is neither sent nor stored."""
    memory_publisher.fail = 10**9
    producer = StoreAndForward(
        memory_publisher, tmp_path / "out.db", max_messages=2, drain_timeout=0
    )
    await producer.publish("t", b"1", msg_id="a")
    await producer.publish("t", b"2", msg_id="b")
    with pytest.raises(ForwardBufferFullError) as info:
        await producer.publish("t", b"3", msg_id="c")
    assert isinstance(info.value, bt.RejectedError)
    assert _buffer_rows(tmp_path / "out.db") == ["a", "b"]
    await producer.stop()  # drain_timeout=0: stop now, the rest stays on disk
    assert len(_buffer_rows(tmp_path / "out.db")) == 2


async def test_full_buffer_drops_oldest(
    tmp_path: Path, memory_publisher: Recording, recorder: Recorder
) -> None:
    """when_full="drop_oldest": the oldest buffered message makes room (with an event)."""
    memory_publisher.fail = 10**9
    producer = StoreAndForward(
        memory_publisher,
        tmp_path / "out.db",
        max_messages=2,
        when_full="drop_oldest",
        drain_timeout=0,
    )
    for name in "abc":
        await producer.publish("t", name.encode(), msg_id=name)
    assert _buffer_rows(tmp_path / "out.db") == ["b", "c"]
    assert [e.msg_id for e in recorder.of(ForwardDropped)] == ["a"]  # type: ignore[attr-defined]
    assert producer.stats().dropped == 1 and producer.stats().buffered == 2
    await producer.stop()  # drain_timeout=0: stop now, the rest stays on disk
    assert len(_buffer_rows(tmp_path / "out.db")) == 2


async def test_other_errors_propagate_and_are_not_buffered(tmp_path: Path) -> None:
    """An error outside ``on`` (the broker refused the message) is raised, not stored."""
    transport = MemoryTransport()
    producer = StoreAndForward(transport, tmp_path / "out.db")
    with pytest.raises(bt.ConfigError):
        await producer.publish("t", "not bytes")  # type: ignore[arg-type]
    await transport.close()
    with pytest.raises(bt.ButtressError):
        await producer.publish("t", b"x")  # a closed transport: BrokerError, not "down"
    assert producer.stats().buffered == 0
    await producer.stop()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_messages": 0}, "max_messages must be"),
        ({"when_full": "block"}, "when_full must be"),
        ({"on": "ConnectionError"}, "on must be"),
        ({"drain_timeout": -1}, "drain_timeout must be"),
    ],
)
def test_options_are_validated(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    """Bad options raise ConfigError naming the argument."""
    with pytest.raises(bt.ConfigError, match=message):
        StoreAndForward(MemoryTransport(), tmp_path / "out.db", **kwargs)
