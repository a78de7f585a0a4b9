"""The fault proxy on real sockets: a real redis-server and a real HTTP server behind it."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from buttress.chaos import ProxyError, ProxyServer, ToxicApplied
from buttress.chaos._proxy import FaultProxy

from ..servers import RedisServer


def _upstream(server: RedisServer) -> str:
    return f"127.0.0.1:{server.port}"


def _client(proxy: FaultProxy, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis(
        port=proxy.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # redis-py retries timeouts by default
    )


def _raw(proxy: FaultProxy, payload: bytes, timeout: float = 1.0) -> bytes:
    """Send ``payload``, read until the proxy closes the connection (or raise)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_redis_through_the_proxy(fault_proxy, redis_server: RedisServer) -> None:
    """No toxics: commands go through and bytes are counted both ways."""
    proxy = fault_proxy(_upstream(redis_server))
    client = _client(proxy)
    client.set("chaos:k", "v")
    assert client.get("chaos:k") == b"v"
    stats = proxy.stats()
    assert stats.connections == 1 and stats.active == 1
    assert stats.bytes_upstream > 0 and stats.bytes_downstream > 0
    client.close()


def test_both_sockets_of_a_link_disable_nagle(fault_proxy, redis_server: RedisServer) -> None:
    """TCP_NODELAY on the accepted client socket and the upstream socket: with Nagle on,
    the last segment of a large reply waited for the client's delayed ACK (~40 ms)."""
    proxy = fault_proxy(_upstream(redis_server))
    client = _client(proxy)
    client.set("chaos:big", b"v" * 300_000)
    assert len(client.get("chaos:big") or b"") == 300_000
    (link,) = list(proxy._links)
    for writer in (link.client_writer, link.upstream_writer):
        sock = writer.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    client.close()


def test_latency_toxic_delays_replies_until_removed(fault_proxy, redis_server) -> None:
    """A downstream latency holds each reply; removing it releases the flow."""
    proxy = fault_proxy(_upstream(redis_server))
    client = _client(proxy)
    client.ping()
    proxy.add_toxic("latency", latency=150, jitter=0)
    started = time.perf_counter()
    client.ping()
    assert time.perf_counter() - started >= 0.14  # the injected delay, not a speed check
    proxy.remove_toxic("latency_downstream")
    assert client.ping() is True
    client.close()


def test_timeout_zero_is_a_black_hole(fault_proxy, redis_server) -> None:
    """timeout=0: data vanishes and the connection stays open."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("timeout", stream="upstream", timeout=0)
    client = _client(proxy, timeout=0.3)
    with pytest.raises(redis.TimeoutError):
        client.ping()
    proxy.remove_toxic("timeout_upstream")
    assert _client(proxy).ping() is True


def test_timeout_closes_the_connection_after_the_delay(fault_proxy, redis_server) -> None:
    """timeout>0: nothing passes, then the proxy closes the connection."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("timeout", timeout=100)
    assert _raw(proxy, b"PING\r\n") == b""


def test_reset_peer_resets(fault_proxy, redis_server) -> None:
    """reset_peer answers the first data with a TCP reset."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("reset_peer", stream="upstream", timeout=0)
    with pytest.raises(ConnectionResetError):
        _raw(proxy, b"PING\r\n")


def test_limit_data_cuts_the_stream(fault_proxy, redis_server) -> None:
    """limit_data passes exactly N bytes, then closes."""
    redis.Redis(port=redis_server.port).set("chaos:big", "y" * 100)
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("limit_data", bytes=10)
    assert _raw(proxy, b"GET chaos:big\r\n") == b"$100\r\nyyyy"


def test_slicer_and_bandwidth_keep_data_intact(fault_proxy, redis_server) -> None:
    """Sliced requests and paced replies still carry every byte, in order."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("slicer", stream="upstream", average_size=1000, size_variation=200, delay=50)
    proxy.add_toxic("bandwidth", rate=2000)
    client = _client(proxy)
    value = bytes(random.Random(1).randbytes(20_000))
    client.set("chaos:blob", value)
    assert client.get("chaos:blob") == value
    client.close()


def test_fail_first_resets_then_passes(fault_proxy, redis_server, recorder) -> None:
    """The first N connections are reset on accept; the next ones pass."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("fail_first", connections=2, mode="reset")
    for _ in range(2):
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            _raw(proxy, b"PING\r\n")
    assert _client(proxy).ping() is True
    assert proxy.stats().failed == 2
    assert [e.type for e in recorder.of(ToxicApplied)] == ["fail_first", "fail_first"]


def test_toxicity_zero_never_applies(fault_proxy, redis_server) -> None:
    """toxicity is drawn per connection; 0 never wins."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("timeout", timeout=0, toxicity=0.0)
    assert _client(proxy).ping() is True
    assert proxy.stats().toxics_applied == 0


def test_down_drops_connections_and_keeps_toxics(fault_proxy, redis_server) -> None:
    """Disabling closes the listener and connections; toxics and port survive."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("latency", latency=1)
    port = proxy.port
    client = _client(proxy)
    client.ping()
    with proxy.down():
        assert _refused(port)
        with pytest.raises(redis.ConnectionError):
            _client(proxy).ping()
    assert proxy.port == port
    assert [t.name for t in proxy.toxics()] == ["latency_downstream"]
    assert client.ping() is True  # redis-py reconnects


def test_snapshot_restore_is_atomic(fault_proxy, redis_server) -> None:
    """restore() puts back toxics and state as they were."""
    proxy = fault_proxy(_upstream(redis_server))
    proxy.add_toxic("latency", latency=5)
    snapshot = proxy.snapshot()
    proxy.disable()
    proxy.remove_toxic("latency_downstream")
    proxy.add_toxic("timeout", timeout=0)
    proxy.restore(snapshot)
    assert proxy.enabled and proxy.toxics() == list(snapshot.toxics)
    assert _client(proxy).ping() is True


def test_port_in_use_is_a_clear_error(fault_proxy_server, redis_server) -> None:
    """Binding a taken port fails with the address; nothing is created."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ProxyError, match=f"listen tcp 127.0.0.1:{port}") as info:
            fault_proxy_server.create("x", _upstream(redis_server), listen=f"127.0.0.1:{port}")
    assert info.value.status == 500
    assert "x" not in fault_proxy_server.proxies()


def test_unknown_toxic_leaves_the_proxy_unchanged(fault_proxy, redis_server) -> None:
    """A bad toxic is refused before anything changes."""
    proxy = fault_proxy(_upstream(redis_server))
    with pytest.raises(ValueError, match="type must be a toxic type"):
        proxy.add_toxic("lag", latency=1)
    assert proxy.toxics() == []


def test_http_status_on_a_keep_alive_connection(fault_proxy, http_upstream) -> None:
    """Every response on one kept-alive connection gets the injected status."""
    proxy = fault_proxy(http_upstream)
    proxy.add_toxic("http_status", status_code=503)
    with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}") as client:
        replies = [client.get("/len") for _ in range(3)] + [client.get("/chunked")]
        assert [r.status_code for r in replies] == [503] * 4
        assert replies[0].text == "ok" and replies[-1].text == "hello chunked world"
        assert client.head("/big").status_code == 503
        assert client.get("/big").content == b"x" * 1000  # HEAD's reply had no body
    assert proxy.stats().connections == 1


def test_http_status_replaces_the_body(fault_proxy, http_upstream) -> None:
    """With a body the original one (chunked here) is swallowed whole."""
    proxy = fault_proxy(http_upstream)
    proxy.add_toxic("http_status", status_code=500, body="injected")
    with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}") as client:
        first, second = client.get("/chunked"), client.get("/len")
    assert (first.status_code, first.text) == (500, "injected")
    assert (second.status_code, second.text) == (500, "injected")


def test_http_header_and_latency_per_response(fault_proxy_server, http_upstream) -> None:
    """Headers are set on responses; toxicity is drawn per response."""
    fault_proxy_server.random.seed(5)
    proxy = fault_proxy_server.create("web", http_upstream)
    proxy.add_toxic("http_header", headers={"X-Chaos": "yes"}, toxicity=0.5)
    proxy.add_toxic("http_latency", latency=1)
    with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}") as client:
        marks = [client.get("/len").headers.get("x-chaos") for _ in range(30)]
    assert set(marks) == {"yes", None}
    assert proxy.stats().connections == 1


def test_upstream_down_closes_the_client(fault_proxy) -> None:
    """An unreachable upstream closes the accepted connection."""
    with socket.create_server(("127.0.0.1", 0)) as gone:
        dead = gone.getsockname()[1]
    proxy = fault_proxy(f"127.0.0.1:{dead}")
    assert _raw(proxy, b"") == b""  # (unread data would turn the close into a reset)


def test_background_server_leaves_nothing_running(redis_server) -> None:
    """After the block: no proxy thread, no listening socket."""
    with ProxyServer(port=0).background() as server:
        proxy = server.create("r", _upstream(redis_server))
        api_port = int(str(server.api_url).rsplit(":", 1)[1])
        _client(proxy).ping()
        port = proxy.port
    assert not [t for t in threading.enumerate() if t.name == "buttress-proxy"]
    assert _refused(port) and _refused(api_port)


async def test_async_server_toxic_added_mid_connection() -> None:
    """In async code: a toxic applies to an open connection; stop() ends every task."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    before = asyncio.all_tasks()
    async with ProxyServer() as server:
        proxy = server.create("echo", f"127.0.0.1:{upstream.sockets[0].getsockname()[1]}")
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.read(10) == b"a"
        proxy.add_toxic("limit_data", bytes=2)
        writer.write(b"bcd")
        assert await reader.read() == b"bc"  # then the proxy closed the connection
        writer.close()
    upstream.close()
    await upstream.wait_closed()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
