"""HTTP/1.1 message framing, just enough to find message boundaries on a byte stream.

:class:`Framer` is fed the bytes of one direction of a connection and splits them into
heads, body pieces and message ends, handling keep-alive, ``Content-Length``, ``chunked``
transfer coding (with trailers), bodiless responses (``HEAD``, 1xx, 204, 304) and bodies
delimited by the connection closing. Body bytes are passed on *raw* (chunk framing
included), so a stream can be rewritten head by head without touching its bodies.

It serves the fault proxy's HTTP toxics, its Toxiproxy-compatible API server, and the
small HTTP client that experiments use for probes and load.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["Framer", "Head", "HttpError", "Response", "decode_chunked", "request"]

MAX_HEAD = 64 * 1024
"""The largest head (start line and headers) accepted, in bytes."""

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class HttpError(ValueError):
    """The bytes are not a well-formed HTTP/1.x message."""


@dataclass
class Head:
    """A parsed message head. ``start`` is the first line; ``headers`` keeps their order and
    spelling. For a request ``method``/``target`` are set, for a response ``status``."""

    start: str
    headers: list[tuple[str, str]]
    version: str = "HTTP/1.1"
    method: str = ""
    target: str = ""
    status: int = 0
    reason: str = ""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The last value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        found = default
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found

    def set(self, name: str, value: str) -> None:
        """Replace every header ``name`` by one with ``value`` (appended if absent)."""
        wanted = name.lower()
        kept = [(k, v) for k, v in self.headers if k.lower() != wanted]
        kept.append((name, value))
        self.headers = kept

    def remove(self, name: str) -> None:
        """Drop every header ``name``."""
        wanted = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != wanted]

    def set_status(self, status: int, reason: str | None = None) -> None:
        """Rewrite a response's status line."""
        self.status = status
        self.reason = REASONS.get(status, "Status") if reason is None else reason
        self.start = f"{self.version} {status} {self.reason}"

    def encode(self) -> bytes:
        """The head as bytes, ending with the blank line."""
        lines = [self.start, *(f"{k}: {v}" for k, v in self.headers), "", ""]
        return "\r\n".join(lines).encode("latin-1")


def parse_head(raw: bytes, kind: Literal["request", "response"]) -> Head:
    """Parse a head (``raw`` ends with ``\\r\\n\\r\\n``)."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes everything
        raise HttpError(str(exc)) from exc
    lines = text[:-4].split("\r\n")
    start = lines[0]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"malformed header line {line!r}")
        headers.append((name, value.strip()))
    parts = start.split(" ", 2)
    if kind == "request":
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(f"malformed request line {start!r}")
        return Head(start, headers, version=parts[2], method=parts[0].upper(), target=parts[1])
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"malformed status line {start!r}")
    reason = parts[2] if len(parts) == 3 else ""
    return Head(start, headers, version=parts[0], status=int(parts[1]), reason=reason)


Event = tuple[str, object]
"""``("head", Head)``, ``("body", bytes)`` (raw, chunk framing included), ``("end", None)``,
or ``("raw", bytes)``: bytes after the stream stopped being HTTP (an upgrade, a parse
error), passed on untouched."""

_HEAD, _LENGTH, _CLOSE, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _RAW = range(7)


@dataclass
class Framer:
    """Split one direction of an HTTP/1.1 connection into messages, incrementally.

    ``kind`` says which direction it reads. A response framer needs the methods of the
    requests it answers, in order, to know that a reply to ``HEAD`` has no body:
    ``methods`` is that queue (filled by a request framer on the other direction; an
    empty queue means ``GET``). After a protocol upgrade (101) or a malformed message the
    framer stops parsing and reports everything as ``("raw", bytes)``.
    """

    kind: Literal["request", "response"]
    methods: deque[str] = field(default_factory=deque)
    _buf: bytearray = field(default_factory=bytearray)
    _state: int = _HEAD
    _left: int = 0
    error: str | None = None
    last_method: str = ""

    @property
    def at_boundary(self) -> bool:
        """True between messages (nothing of a message buffered or pending)."""
        return self._state == _HEAD and not self._buf

    @property
    def passthrough(self) -> bool:
        """True once the framer gave up parsing (upgrade or malformed input)."""
        return self._state == _RAW

    def feed(self, data: bytes) -> list[Event]:
        """Events for ``data``; raises nothing (a malformed stream becomes ``raw``)."""
        out: list[Event] = []
        if self._state == _RAW:
            if data:
                out.append(("raw", data))
            return out
        buf = self._buf
        buf += data
        try:
            self._run(out)
        except HttpError as exc:
            self.error = str(exc)
            self._state = _RAW
            if buf:
                out.append(("raw", bytes(buf)))
                buf.clear()
        return out

    def eof(self) -> list[Event]:
        """Events at the end of the stream: a body delimited by the close ends here."""
        out: list[Event] = []
        if self._state == _CLOSE:
            out.append(("end", None))
            self._state = _HEAD
        elif self._buf:
            out.append(("raw", bytes(self._buf)))
            self._buf.clear()
        return out

    def _run(self, out: list[Event]) -> None:
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                index = buf.find(b"\r\n\r\n")
                if index < 0:
                    if len(buf) > MAX_HEAD:
                        raise HttpError(f"head larger than {MAX_HEAD} bytes")
                    return
                raw = bytes(buf[: index + 4])
                head = parse_head(raw, self.kind)  # on error the bytes stay, to pass on raw
                del buf[: index + 4]
                out.append(("head", head))
                self._start_body(head, out)
            elif state in (_LENGTH, _CHUNK_DATA):
                if not buf:
                    return
                n = min(self._left, len(buf))
                out.append(("body", bytes(buf[:n])))
                del buf[:n]
                self._left -= n
                if self._left == 0:
                    if state == _LENGTH:
                        self._end(out)
                    else:
                        self._state = _CHUNK_SIZE
            elif state == _CLOSE:
                if buf:
                    out.append(("body", bytes(buf)))
                    buf.clear()
                return
            elif state == _CHUNK_SIZE:
                index = buf.find(b"\r\n")
                if index < 0:
                    if len(buf) > 4096:
                        raise HttpError("chunk size line too long")
                    return
                line = bytes(buf[:index])
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HttpError(f"bad chunk size {line!r}") from None
                if size < 0:
                    raise HttpError(f"bad chunk size {line!r}")
                out.append(("body", bytes(buf[: index + 2])))
                del buf[: index + 2]
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._state, self._left = _CHUNK_DATA, size + 2  # the data and its CRLF
            elif state == _TRAILERS:
                index = buf.find(b"\r\n")
                if index < 0:
                    if len(buf) > MAX_HEAD:
                        raise HttpError("trailers too long")
                    return
                out.append(("body", bytes(buf[: index + 2])))
                del buf[: index + 2]
                if index == 0:
                    self._end(out)
            else:  # _RAW
                if buf:
                    out.append(("raw", bytes(buf)))
                    buf.clear()
                return

    def _end(self, out: list[Event]) -> None:
        out.append(("end", None))
        self._state = _HEAD

    def _start_body(self, head: Head, out: list[Event]) -> None:
        if self.kind == "response":
            status = head.status
            if 100 <= status < 200:
                out.append(("end", None))
                # 101 switches protocols: what follows is not HTTP any more.
                self._state = _RAW if status == 101 else _HEAD
                return
            method = self.methods.popleft() if self.methods else "GET"
            self.last_method = method
            if method == "HEAD" or status in (204, 304):
                self._end(out)
                return
        encoding = (head.get("transfer-encoding") or "").lower()
        if "chunked" in encoding:
            self._state = _CHUNK_SIZE
            return
        length = head.get("content-length")
        if length is not None:
            try:
                size = int(length.strip())
            except ValueError:
                raise HttpError(f"bad Content-Length {length!r}") from None
            if size < 0:
                raise HttpError(f"bad Content-Length {length!r}")
            if size == 0:
                self._end(out)
            else:
                self._state, self._left = _LENGTH, size
            return
        if self.kind == "request":
            self._end(out)
            if head.method == "CONNECT":  # a tunnel follows, not HTTP
                self._state = _RAW
            return
        self._state = _CLOSE


def decode_chunked(raw: bytes) -> bytes:
    """The payload of a complete raw ``chunked`` body."""
    data = bytearray()
    pos = 0
    while True:
        index = raw.index(b"\r\n", pos)
        size = int(raw[pos:index].split(b";", 1)[0].strip(), 16)
        pos = index + 2
        if size == 0:
            return bytes(data)
        data += raw[pos : pos + size]
        pos += size + 2


@dataclass(frozen=True)
class Response:
    """What :func:`request` returns: status, headers, decoded body, seconds taken."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float


async def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - one budget for the whole exchange
) -> Response:
    """Make one HTTP/1.1 request on a fresh connection (``Connection: close``).

    Only ``http://`` URLs. Raises ``OSError`` (connection refused or reset),
    ``TimeoutError`` (no full answer within ``timeout``) or :class:`HttpError`.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise HttpError(f"only http:// URLs are supported, got {url!r}")
    host, port = parts.hostname, parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            payload = body or b""
            if body is not None or method in ("POST", "PUT", "PATCH"):
                lines.append(f"Content-Length: {len(payload)}")
            lines += ["Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1") + payload)
            await writer.drain()
            framer = Framer("response", deque([method.upper()]))
            head: Head | None = None
            raw = bytearray()
            done = False
            while not done:
                data = await reader.read(65536)
                events = framer.feed(data) if data else framer.eof()
                for kind, value in events:
                    if kind == "head" and isinstance(value, Head) and value.status >= 200:
                        head = value
                    elif kind == "body" and isinstance(value, bytes) and head is not None:
                        raw += value
                    elif kind == "end" and head is not None:
                        done = True
                    elif kind == "raw":
                        raise HttpError(framer.error or "malformed response")
                if not data and not done:
                    raise ConnectionResetError("the server closed the connection mid-response")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
    assert head is not None
    content = bytes(raw)
    if "chunked" in (head.get("transfer-encoding") or "").lower():
        content = decode_chunked(content)
    return Response(head.status, head.headers, content, time.perf_counter() - started)
