"""Fixtures for the messaging tests: real redis-server (from tests/conftest.py) and a
real nats-server with JetStream, each on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from ..servers import NatsServer, RedisServer


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server -js for the session, for tests that do not harm it."""
    server = NatsServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_factory() -> Iterator[Callable[[], NatsServer]]:
    """Private nats-servers a test may kill or restart."""
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
async def redis_client(redis_server: RedisServer) -> AsyncIterator[object]:
    """A redis.asyncio client on the session server, flushed before the test."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_server.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
