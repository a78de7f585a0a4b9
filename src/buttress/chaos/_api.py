"""Toxiproxy's HTTP API, served by a :class:`~buttress.chaos.ProxyServer`.

Same routes, JSON field names, status codes and error bodies as Toxiproxy 2.x, so its
clients (toxiproxy-python, the Go and Ruby clients, Testcontainers) work unchanged::

    GET    /proxies                          200 {name: proxy}
    POST   /proxies                          201 proxy        409 exists, 400 bad body
    POST   /populate                         201 {"proxies": [...]}
    GET    /proxies/{proxy}                  200 proxy        404 proxy not found
    POST   /proxies/{proxy}  (or PATCH)      200 proxy
    DELETE /proxies/{proxy}                  204
    GET    /proxies/{proxy}/toxics           200 [toxic]
    POST   /proxies/{proxy}/toxics           200 toxic        409 exists, 400 invalid toxic type
    GET    /proxies/{proxy}/toxics/{toxic}   200 toxic        404 toxic not found
    POST   /proxies/{proxy}/toxics/{toxic}   200 toxic        (or PATCH)
    DELETE /proxies/{proxy}/toxics/{toxic}   204
    POST   /reset                            204
    GET    /version                          200 {"version": "..."}

Errors are ``{"error": message, "status": code}``. As in Toxiproxy, requests from web
browsers (``User-Agent: Mozilla/...``) get 403, so a malicious page cannot drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .._errors import ConfigError
from .._version import __version__
from ._errors import ProxyError
from ._http import REASONS, Framer, Head, decode_chunked

if TYPE_CHECKING:
    from ._proxy import ProxyServer

__all__ = ["TOXIPROXY_VERSION", "ApiServer"]

TOXIPROXY_VERSION = f"2.12.0+buttress.{__version__}"
"""What ``GET /version`` reports: the Toxiproxy API level, then buttress's version."""

MAX_BODY = 1 << 20

Reply = tuple[int, Any, str]  # status, JSON-able body (or None), content type


class _HttpError(Exception):
    def __init__(self, status: int, message: str, text: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.text = text


def _error_message(exc: ConfigError) -> str:
    text = str(exc)
    if text.startswith("type must be"):
        return f"invalid toxic type: {text}"
    if text.startswith("stream must be"):
        return f"stream was invalid, can be either upstream or downstream: {text}"
    if text.startswith("missing required field"):
        return text
    return f"bad request body: {text}"


class ApiServer:
    """The HTTP listener; one task per client connection, keep-alive supported."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self._listener: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        try:
            self._listener = await asyncio.start_server(self._client, host, port)
        except OSError as exc:
            raise ProxyError(f"listen tcp {host}:{port}: bind: {exc.strerror or exc}") from exc
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            # Closing the sockets ends each client task normally; cancelling them would
            # make asyncio's stream callback log the CancelledError.
            for writer in list(self._writers):
                writer.close()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._listener.wait_closed()
            self._listener = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer("request")
        head: Head | None = None
        body = bytearray()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for kind, value in framer.feed(data):
                if kind == "head" and isinstance(value, Head):
                    head, body = value, bytearray()
                elif kind == "body" and isinstance(value, bytes):
                    body += value
                    if len(body) > MAX_BODY:
                        await self._send(
                            writer,
                            None,
                            (413, {"error": "body too large", "status": 413}, "json"),
                            close=True,
                        )
                        return
                elif kind == "end" and head is not None:
                    payload = bytes(body)
                    if "chunked" in (head.get("transfer-encoding") or "").lower():
                        payload = decode_chunked(payload)
                    close = self._wants_close(head)
                    await self._send(writer, head, self.handle(head, payload), close=close)
                    if close:
                        return
                    head = None
                elif kind == "raw":
                    await self._send(writer, None, (400, "400 Bad Request\n", "text"), close=True)
                    return

    @staticmethod
    def _wants_close(head: Head) -> bool:
        connection = (head.get("connection") or "").lower()
        if head.version == "HTTP/1.0":
            return "keep-alive" not in connection
        return "close" in connection

    async def _send(
        self, writer: asyncio.StreamWriter, head: Head | None, reply: Reply, *, close: bool
    ) -> None:
        status, body, kind = reply
        if body is None:
            payload = b""
        elif kind == "text":
            payload = str(body).encode()
        else:
            payload = (json.dumps(body) + ("\n" if status >= 400 else "")).encode()
        content_type = "text/plain; charset=utf-8" if kind == "text" else "application/json"
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        if status != 204:
            lines.append(f"Content-Type: {content_type}")
            lines.append(f"Content-Length: {len(payload)}")
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await writer.drain()

    # -- routing -----------------------------------------------------------------------------

    def handle(self, head: Head, body: bytes) -> Reply:
        """Answer one request (synchronous: every operation is a step on the loop)."""
        if (head.get("user-agent") or "").startswith("Mozilla/"):
            return 403, "User agent not allowed\n", "text"
        path = head.target.split("?", 1)[0]
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        try:
            return self._route(head.method, parts, body)
        except _HttpError as exc:
            if exc.text:
                return exc.status, str(exc), "text"
            return exc.status, {"error": str(exc), "status": exc.status}, "json"
        except ProxyError as exc:
            return exc.status, {"error": str(exc), "status": exc.status}, "json"
        except ConfigError as exc:
            return 400, {"error": _error_message(exc), "status": 400}, "json"

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body.decode() or "null")
        except (UnicodeDecodeError, ValueError) as exc:
            raise _HttpError(400, f"bad request body: {exc}") from None

    def _route(self, method: str, parts: list[str], body: bytes) -> Reply:
        server = self.server
        n = len(parts)

        def allow(*methods: str) -> None:
            if method not in methods:
                raise _HttpError(405, "", text=True)

        if parts == ["version"]:
            allow("GET")
            return 200, {"version": TOXIPROXY_VERSION}, "json"
        if parts == ["reset"]:
            allow("POST")
            server.reset()
            return 204, None, "json"
        if parts == ["populate"]:
            allow("POST")
            data = self._json(body)
            if not isinstance(data, list):
                raise _HttpError(400, "bad request body: expected a JSON array of proxies")
            try:
                made = server.populate(data)
            except ConfigError as exc:
                return 400, {"error": _error_message(exc), "status": 400, "proxies": []}, "json"
            except ProxyError as exc:
                return exc.status, {"error": str(exc), "status": exc.status, "proxies": []}, "json"
            return 201, {"proxies": [p.to_json() for p in made]}, "json"
        if n == 0 or parts[0] != "proxies":
            raise _HttpError(404, "404 page not found\n", text=True)
        if n == 1:
            allow("GET", "POST")
            if method == "GET":
                return 200, {name: p.to_json() for name, p in server.proxies().items()}, "json"
            data = self._json(body)
            if not isinstance(data, dict):
                raise _HttpError(400, "bad request body: expected a JSON object")
            proxy = server.create(
                data.get("name", ""),
                data.get("upstream", ""),
                listen=data.get("listen") or "127.0.0.1:0",
                enabled=data.get("enabled", True),
                toxics=data.get("toxics") or (),
            )
            return 201, proxy.to_json(), "json"
        proxy = server.get(parts[1])
        if n == 2:
            allow("GET", "POST", "PATCH", "DELETE")
            if method == "GET":
                return 200, proxy.to_json(), "json"
            if method == "DELETE":
                server.delete(proxy.name)
                return 204, None, "json"
            data = self._json(body)
            if not isinstance(data, dict):
                raise _HttpError(400, "bad request body: expected a JSON object")
            proxy.update(
                listen=data.get("listen"),
                upstream=data.get("upstream"),
                enabled=data.get("enabled"),
            )
            return 200, proxy.to_json(), "json"
        if parts[2] != "toxics" or n > 4:
            raise _HttpError(404, "404 page not found\n", text=True)
        if n == 3:
            allow("GET", "POST")
            if method == "GET":
                return 200, [t.to_json() for t in proxy.toxics()], "json"
            data = self._json(body)
            if not isinstance(data, dict):
                raise _HttpError(400, "bad request body: expected a JSON object")
            return 200, proxy.add_toxic_json(data).to_json(), "json"
        name = parts[3]
        allow("GET", "POST", "PATCH", "DELETE")
        if method == "GET":
            return 200, proxy.get_toxic(name).to_json(), "json"
        if method == "DELETE":
            proxy.remove_toxic(name)
            return 204, None, "json"
        data = self._json(body)
        if not isinstance(data, dict):
            raise _HttpError(400, "bad request body: expected a JSON object")
        return 200, proxy.update_toxic_json(name, data).to_json(), "json"
