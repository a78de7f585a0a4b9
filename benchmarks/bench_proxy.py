"""The fault proxy with no toxics: what it adds to a round trip, and its throughput.

A real redis-server on loopback is the upstream (written in C, so what is measured is the
proxy, not the far end). Every row uses a plain blocking socket: ``direct`` connects to
redis-server, ``proxy`` to a :class:`buttress.chaos.ProxyServer` (its own event loop in a
background thread) in front of it. No Toxiproxy binary is packaged for Debian or PyPI, so
there is no peer proxy in the run; the direct connection is the reference.
"""

from __future__ import annotations

import socket
from typing import Any

from _harness import Contender, RatioColumn, Suite
from _redis import Server
from buttress.chaos import ProxyServer

BIG = 1 << 20  # 1 MiB


def _recv_exact(sock: socket.socket, n: int) -> None:
    view = bytearray(n)
    mv = memoryview(view)
    got = 0
    while got < n:
        k = sock.recv_into(mv[got:])
        if not k:
            raise ConnectionError("closed")
        got += k


class _Env:
    def __init__(self) -> None:
        self.redis = Server()
        self.proxies = ProxyServer()
        self.sockets: list[socket.socket] = []

    def connect(self, port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sockets.append(sock)
        return sock

    def start(self) -> int:
        self.redis.start()
        self.proxies = ProxyServer()  # a fresh registry each pass (setup runs once per pass)
        self.proxies.start_background()
        proxy = self.proxies.create("redis", f"127.0.0.1:{self.redis.port}")
        return proxy.port

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        self.proxies.stop_background()
        self.redis.stop()


def _resp(*parts: bytes) -> bytes:
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        out += b"$%d\r\n%s\r\n" % (len(part), part)
    return out


def _rtt() -> Suite:
    env = _Env()
    direct: dict[str, Any] = {"recv": _recv_exact, "cmd": b"PING\r\n"}
    proxied: dict[str, Any] = dict(direct)

    def setup() -> None:
        port = env.start()
        direct["sock"] = env.connect(env.redis.port)
        proxied["sock"] = env.connect(port)

    stmt = "sock.sendall(cmd)\nrecv(sock, 7)"
    return Suite(
        name="proxy-rtt",
        title="Fault proxy: one request/response round trip, no toxics",
        kind="sync",
        description=(
            "A `PING` to redis-server and its `+PONG` on one kept-open loopback connection, "
            "directly and through the fault proxy (no toxic). The proxy's overhead is the "
            "difference: two more loopback hops and an asyncio read/write each way."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=[
            Contender(
                "direct",
                "direct to redis-server",
                "socket",
                "call",
                stmt,
                direct,
                config="socket.create_connection(redis)",
            ),
            Contender(
                "proxy",
                "through buttress `ProxyServer` (no toxics)",
                "buttress",
                "call",
                stmt,
                proxied,
                config='ProxyServer().create("redis", upstream=...)',
            ),
        ],
        columns=[RatioColumn("vs direct", {}, "direct")],
        setup=setup,
        teardown=env.stop,
        order=100,
        min_loops=20,
    )


def _throughput() -> Suite:
    env = _Env()
    payload = b"v" * BIG
    set_cmd = _resp(b"SET", b"bench:big", payload)
    get_cmd = _resp(b"GET", b"bench:big")
    reply = len(b"$%d\r\n" % BIG) + BIG + 2
    namespaces: dict[str, dict[str, Any]] = {}
    for key in ("direct-up", "proxy-up", "direct-down", "proxy-down"):
        namespaces[key] = {
            "recv": _recv_exact,
            "set_cmd": set_cmd,
            "get_cmd": get_cmd,
            "reply": reply,
        }

    def setup() -> None:
        port = env.start()
        for key, ns in namespaces.items():
            ns["sock"] = env.connect(env.redis.port if key.startswith("direct") else port)
        namespaces["direct-up"]["sock"].sendall(set_cmd)
        _recv_exact(namespaces["direct-up"]["sock"], 5)

    up = "sock.sendall(set_cmd)\nrecv(sock, 5)"
    down = "sock.sendall(get_cmd)\nrecv(sock, reply)"
    rows = [
        ("direct-up", "upload 1 MiB (`SET`), direct", "-", up),
        ("proxy-up", "upload 1 MiB (`SET`), through the proxy", "buttress", up),
        ("direct-down", "download 1 MiB (`GET`), direct", "-", down),
        ("proxy-down", "download 1 MiB (`GET`), through the proxy", "buttress", down),
    ]
    return Suite(
        name="proxy-throughput",
        title="Fault proxy: moving 1 MiB, no toxics",
        kind="sync",
        description=(
            "One 1 MiB `SET` (client to server) or `GET` (server to client) on a kept-open "
            "loopback connection. MB/s = 1.048576 ÷ (the figure in ms); the ratio to the "
            "direct row is the proxy's throughput cost."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=[
            Contender(key, label, lib, "call", stmt, namespaces[key], config=label)
            for key, label, lib, stmt in rows
        ],
        columns=[
            RatioColumn(
                "vs direct",
                {},
                "direct-up",
                overrides={"proxy-down": "direct-down", "direct-down": "direct-down"},
            )
        ],
        setup=setup,
        teardown=env.stop,
        order=101,
        min_loops=3,
    )


def suites() -> list[Suite]:
    return [_rtt(), _throughput()]
