"""pytest fixtures for the fault proxy, registered as the ``buttress-chaos`` plugin.

Installed with buttress (an entry point in the ``pytest11`` group), so any test can use:

* ``fault_proxy_server`` — a :class:`~buttress.chaos.ProxyServer` running on its own event
  loop in a background thread, with the Toxiproxy HTTP API on a free loopback port
  (``server.api_url``); stopped after the test, every connection closed.
* ``fault_proxy`` — a factory: ``fault_proxy("127.0.0.1:6379")`` returns a
  :class:`~buttress.chaos.FaultProxy` listening on a free loopback port.

Both work in sync and async tests (the proxy's methods are thread-safe). Example::

    def test_cache_survives_slow_redis(fault_proxy, redis_url):
        proxy = fault_proxy(redis_url.removeprefix("redis://"))
        proxy.add_toxic("latency", latency=200)
        client = redis.Redis(port=proxy.port, socket_timeout=0.1)
        ...
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._proxy import FaultProxy, ProxyServer

__all__ = ["fault_proxy", "fault_proxy_server"]


@pytest.fixture
def fault_proxy_server() -> Iterator[ProxyServer]:
    """A running :class:`~buttress.chaos.ProxyServer` with its HTTP API on a free port."""
    server = ProxyServer(port=0)
    with server.background():
        yield server


@pytest.fixture
def fault_proxy(fault_proxy_server: ProxyServer) -> Callable[..., FaultProxy]:
    """Make fault proxies: ``fault_proxy(upstream, name=None, **create_options)``."""
    numbers = itertools.count(1)

    def make(upstream: str, *, name: str | None = None, **options: Any) -> FaultProxy:
        return fault_proxy_server.create(name or f"proxy-{next(numbers)}", upstream, **options)

    return make
