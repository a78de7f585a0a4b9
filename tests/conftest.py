"""Shared fixtures: a fake clock and an event recorder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .servers import RedisServer


@pytest.fixture
def clock() -> FakeClock:
    """A fresh virtual clock at t = 0 with autojump."""
    return FakeClock()


class Recorder:
    """Collects events; ``of(kind)`` filters them by type."""

    def __init__(self) -> None:
        self.events: list[events.Event] = []

    def __call__(self, event: events.Event) -> None:
        self.events.append(event)

    def of(self, kind: type[events.Event]) -> list[events.Event]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Records every event from every policy during the test."""
    rec = Recorder()
    bt.add_listener(rec)
    try:
        yield rec
    finally:
        bt.remove_listener(rec)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session, for tests that do not harm it."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Start private redis-servers that a test may kill, pause or restart."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
