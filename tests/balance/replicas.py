"""Tiny real HTTP/1.1 replicas on loopback ports, run on a background event loop thread.

Each replica answers ``GET /health`` and any other path according to its ``mode``:
``"ok"`` (200), ``"fail"`` (503), ``"slow"`` (200 after ``delay`` seconds), ``"limit"``
(429 at once); ``health`` sets the /health status (200, 503...). ``kill()`` closes the
listening socket and every open connection; ``revive()`` listens on the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class Replica:
    def __init__(self, loop: LoopThread, name: str) -> None:
        self.loop = loop
        self.name = name
        self.mode = "ok"
        self.delay = 0.05
        self.health = 200
        self.hits = 0
        self.port = 0
        self.last_headers: dict[str, str] = {}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def kill(self) -> None:
        self.loop.run(self._stop())

    def revive(self) -> None:
        self.loop.run(self._start())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, _, val = line.partition(":")
                        headers[k.strip().lower()] = val.strip()
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if path == "/health":
                    status = self.health
                else:
                    self.hits += 1
                    self.last_headers = headers
                    status = {"ok": 200, "fail": 503, "slow": 200, "limit": 429}[self.mode]
                    if self.mode == "slow":
                        await asyncio.sleep(self.delay)
                body = self.name.encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class LoopThread:
    """An event loop in a daemon thread, for servers that sync and async tests share."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def replicas(self, n: int) -> list[Replica]:
        out = [Replica(self, f"r{i}") for i in range(n)]
        for r in out:
            r.revive()
        return out

    def close(self, replicas: list[Replica]) -> None:
        for r in replicas:
            with contextlib.suppress(Exception):
                r.kill()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
