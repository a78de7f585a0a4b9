"""Fixtures for the exactly-once tests: a throwaway PostgreSQL server, fresh table
names, SQLite files in a temp dir, and publishers over the real transports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from buttress.messaging import MemoryTransport, RedisStreamsTransport

from ..servers import NatsServer, PostgresServer, RedisServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (never the machine's own server)."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_factory() -> Iterator[Callable[[], NatsServer]]:
    """Private nats-servers (JetStream) a test may kill and restart."""
    servers: list[NatsServer] = []

    def start() -> NatsServer:
        server = NatsServer()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def pg(postgres_server: PostgresServer) -> str:
    """The session server's DSN."""
    return postgres_server.dsn


@pytest.fixture
def table() -> str:
    """A table name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return str(tmp_path / "app.db")


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[object]:
    """A redis.asyncio client (bytes replies) on the session server."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


class Recording:
    """A publisher over a real transport that records what it confirmed, in order,
    and can be told to fail (the broker refusing) for the next ``fail`` calls."""

    def __init__(self, inner: MemoryTransport | RedisStreamsTransport | Any) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str, bytes]] = []
        self.fail = 0
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("broker unreachable (injected)")
        result = await self.inner.publish(topic, body, msg_id=msg_id, headers=headers)
        self.sent.append((topic, msg_id or "", body))
        return result


@pytest.fixture
def memory_publisher() -> Recording:
    """A recording publisher over the in-memory transport."""
    return Recording(MemoryTransport())


@pytest.fixture
def redis_publisher(redis_client: object) -> Recording:
    """A recording publisher over Redis Streams on the session server."""
    return Recording(RedisStreamsTransport(redis_client, prefix=f"x{uuid.uuid4().hex[:8]}:"))  # type: ignore[arg-type]
