"""The fault proxy with no toxics: what it adds to a round trip, and its throughput.

A real redis-server on loopback is the upstream (written in C, so what is measured is the
proxy, not the far end). Every row uses a plain blocking socket: ``direct`` connects to
redis-server, ``proxy`` to the fault proxy in front of it, run as users run it: the
``buttress proxy`` command in its own process, the proxy created through its
Toxiproxy-compatible HTTP API. (In a thread of the benchmark's process it would share the
GIL with the client.) No Toxiproxy binary is packaged for Debian or PyPI, so there is no
peer proxy in the run; the direct connection is the reference.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from _harness import Contender, RatioColumn, Suite
from _redis import Server

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Env:
    def __init__(self) -> None:
        self.redis = Server()
        self.proxy: subprocess.Popen[bytes] | None = None
        self.sockets: list[socket.socket] = []

    def connect(self, port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sockets.append(sock)
        return sock

    def start(self) -> int:
        """Start redis-server and a ``buttress proxy`` process; create the proxy through
        the HTTP API and return the port it listens on."""
        self.redis.start()
        api = _free_port()
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "buttress.cli", "proxy", "--port", str(api)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        upstream = f"127.0.0.1:{self.redis.port}"
        spec = {"name": "redis", "listen": "127.0.0.1:0", "upstream": upstream}
        deadline = time.monotonic() + 15
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{api}/proxies",
                data=json.dumps(spec).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    listen = json.loads(response.read())["listen"]
                    return int(listen.rsplit(":", 1)[1])
            except OSError:
                if time.monotonic() > deadline or self.proxy.poll() is not None:
                    raise RuntimeError("buttress proxy did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(10)
            self.proxy = None
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
                "through `buttress proxy` (no toxics)",
                "buttress",
                "call",
                stmt,
                proxied,
                config='buttress proxy; POST /proxies {"name": "redis", ...}',
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
