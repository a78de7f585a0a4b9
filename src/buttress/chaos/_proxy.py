"""The fault proxy: an asyncio TCP proxy that applies toxics to the connections it carries.

A :class:`ProxyServer` owns named :class:`FaultProxy` objects (and, optionally, the
Toxiproxy-compatible HTTP API). Each proxy listens on one address and forwards every
connection it accepts to its upstream. A connection is a :class:`Link` of two
:class:`Pump` s, one per direction (``upstream``: client to server, ``downstream``: server
to client). With no toxic on a direction its pump copies bytes straight through; with
toxics it stamps each chunk with the time it was read and passes it down the chain of
:class:`~buttress.chaos._toxics.Stage` s in a second task, so a slow toxic never stops the
reading (the data waits in a small bounded queue, then in the kernel).

All state lives on the server's event loop. The public methods are plain functions: on
the loop's thread they act at once; from another thread (a sync test using
:meth:`ProxyServer.start_background`) they hop onto the loop and wait for the result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import random as _random
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from .. import _validate as v
from .._clock import Clock, resolve
from .._errors import ConfigError
from .._events import GLOBAL_LISTENERS, Listener, emit, logger
from ._errors import ProxyConflictError, ProxyError, ProxyNotFoundError
from ._events import ToxicApplied
from ._toxics import (
    CONNECTION_TYPES,
    HTTP_TYPES,
    STAGES,
    RequestTracker,
    Sink,
    Stage,
    Toxic,
    make_toxic,
    toxic_from_json,
)

__all__ = ["FaultProxy", "ProxyServer", "ProxySnapshot", "ProxyStats", "parse_address"]

T = TypeVar("T")
CHUNK = 64 * 1024
UPSTREAM_CONNECT_TIMEOUT = 10.0


def parse_address(name: str, value: object) -> tuple[str, int]:
    """``"host:port"`` / ``"[::1]:port"`` → ``(host, port)``; ``ConfigError`` otherwise."""
    if not isinstance(value, str) or ":" not in value:
        raise v.fail(name, "an address 'host:port'", value)
    host, _, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise v.fail(name, "an address 'host:port' with a port in [0, 65535]", value)
    return host, int(port_text)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _set_linger_zero(transport: asyncio.BaseTransport | None) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """A snapshot of a :class:`FaultProxy`.

    ``connections`` accepted since creation, ``active`` open now, ``failed`` closed or
    reset on accept by a ``fail_first`` toxic, ``toxics_applied`` toxic activations (a
    toxic winning its toxicity draw on a connection, or on a response for ``http_*``),
    ``bytes_upstream``/``bytes_downstream`` read from the client/the upstream.
    """

    name: str
    enabled: bool
    connections: int
    active: int
    failed: int
    toxics_applied: int
    bytes_upstream: int
    bytes_downstream: int


@dataclass(frozen=True)
class ProxySnapshot:
    """Everything that defines a proxy: restore it with :meth:`FaultProxy.restore` or
    :meth:`ProxyServer.restore`. ``listen`` is the bound address (port included)."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...]

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's proxy JSON, toxics included."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics],
        }


# -- connections ------------------------------------------------------------------------------


class _WriterSink(Sink):
    def __init__(self, link: Link, writer: asyncio.StreamWriter) -> None:
        self.link = link
        self.writer = writer

    async def chunk(self, data: bytes, stamp: float) -> None:
        if self.link.closed or not data:
            return
        self.writer.write(data)
        await self.writer.drain()

    async def eof(self) -> None:
        if self.link.closed:
            return
        writer = self.writer
        if writer.can_write_eof() and not writer.is_closing():
            try:
                writer.write_eof()
            except OSError:
                self.link.close(reset=False, reason="peer gone")
        else:
            self.link.close(reset=False, reason="end of stream")


class Pump:
    """One direction of a link: reads a socket, writes the other, through the toxics."""

    def __init__(
        self,
        link: Link,
        stream: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.link = link
        self.stream = stream
        self.reader = reader
        self.writer = writer
        self.sink = _WriterSink(link, writer)
        self.head: Sink = self.sink
        self.chain: list[Stage] = []
        self.stages: dict[str, tuple[Toxic, Stage | None]] = {}
        self.tracker: RequestTracker | None = None
        self.queue: asyncio.Queue[tuple[bytes, float]] | None = None
        self.processor: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.done = False

    def set_toxics(self, toxics: list[Toxic], track_requests: bool) -> None:
        """Bring the chain in line with the proxy's toxics for this direction."""
        link = self.link
        old = self.stages
        new: dict[str, tuple[Toxic, Stage | None]] = {}
        started: list[Stage] = []
        for toxic in toxics:
            kept = old.pop(toxic.name, None)
            if kept is not None and kept[0] is toxic:
                new[toxic.name] = kept
                continue
            if kept is not None and kept[1] is not None:
                kept[1].stop()
            stage: Stage | None = None
            # http_* toxics draw per response; the others once per connection.
            if toxic.type in HTTP_TYPES or link.draw(toxic.toxicity):
                stage = STAGES[toxic.type](toxic, link, self.stream)
                started.append(stage)
                if toxic.type not in HTTP_TYPES:
                    link.applied(stage, toxic)
            new[toxic.name] = (toxic, stage)
        for _, stage in old.values():
            if stage is not None:
                stage.stop()
        self.stages = new
        if track_requests and self.tracker is None:
            self.tracker = RequestTracker(make_toxic("latency", name="(requests)"), link, "")
            started.insert(0, self.tracker)
        elif not track_requests and self.tracker is not None:
            self.tracker.stop()
            self.tracker = None
        chain = [stage for _, stage in new.values() if stage is not None]
        if self.tracker is not None:
            chain.insert(0, self.tracker)
        for index, stage in enumerate(chain):
            stage.next = chain[index + 1] if index + 1 < len(chain) else self.sink
        self.chain = chain
        self.head = chain[0] if chain else self.sink
        for stage in started:
            stage.start()

    async def run(self) -> None:
        reader, writer, link = self.reader, self.writer, self.link
        clock = link.clock
        counter = link.proxy._count_bytes
        stream = self.stream
        try:
            while True:
                data = await reader.read(CHUNK)
                if data:
                    counter(stream, len(data))
                if self.processor is None and not self.chain:
                    # The fast path: no toxic on this direction.
                    if not data:
                        await self.sink.eof()
                        return
                    writer.write(data)
                    await writer.drain()
                    continue
                processor = self.processor
                if processor is None:
                    self.queue = asyncio.Queue(8)
                    processor = self.processor = asyncio.get_running_loop().create_task(
                        self._process()
                    )
                assert self.queue is not None
                await self.queue.put((data, clock.monotonic()))
                if not data:
                    await processor
                    return
        except (ConnectionError, OSError):
            link.close(reset=False, reason=f"{stream} socket error")
        finally:
            self.done = True
            link.pump_done()

    async def _process(self) -> None:
        queue = self.queue
        assert queue is not None
        try:
            while True:
                if queue.empty() and not self.chain:
                    self.processor = None
                    return
                data, stamp = await queue.get()
                if data:
                    await self.head.chunk(data, stamp)
                else:
                    await self.head.eof()
                    return
        except (ConnectionError, OSError):
            self.link.close(reset=False, reason=f"{self.stream} socket error")

    def cancel(self) -> None:
        for task in (self.task, self.processor):
            if task is not None and not task.done():
                task.cancel()
        for _, stage in self.stages.values():
            if stage is not None:
                stage.stop()


class Link:
    """One proxied connection: the client socket, the upstream socket, two pumps."""

    def __init__(
        self,
        proxy: FaultProxy,
        number: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.number = number
        self.clock = proxy._server.clock
        self.random = proxy._server.random
        self.closed = False
        self.method_queues: list[deque[str]] = []
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        self.pumps = {
            "upstream": Pump(self, "upstream", client[0], upstream[1]),
            "downstream": Pump(self, "downstream", upstream[0], client[1]),
        }
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def sink(self, stream: str) -> Sink:
        return self.pumps[stream].sink if stream in self.pumps else self.pumps["upstream"].sink

    def draw(self, toxicity: float) -> bool:
        """One toxicity draw from the server's random source."""
        if toxicity >= 1.0:
            return True
        return toxicity > 0.0 and self.random.random() < toxicity

    def applied(self, stage: Stage, toxic: Toxic) -> None:
        self.proxy._applied(toxic, self.number)

    def refresh(self, toxics: list[Toxic]) -> None:
        http = any(t.type in HTTP_TYPES for t in toxics)
        for stream, pump in self.pumps.items():
            mine = [t for t in toxics if t.stream == stream and t.type not in CONNECTION_TYPES]
            pump.set_toxics(mine, track_requests=http and stream == "upstream")

    def start(self, toxics: list[Toxic]) -> None:
        self.refresh(toxics)
        loop = asyncio.get_running_loop()
        for pump in self.pumps.values():
            pump.task = loop.create_task(pump.run())

    def pump_done(self) -> None:
        if all(pump.done for pump in self.pumps.values()):
            self.close(reset=False, reason="both directions ended")

    def close(self, *, reset: bool, reason: str) -> None:
        """Close both sockets now (with an RST to the client when ``reset``)."""
        if self.closed:
            return
        self.closed = True
        logger.debug(
            "fault proxy %r: connection %d closed: %s", self.proxy.name, self.number, reason
        )
        for pump in self.pumps.values():
            pump.cancel()
        if reset:
            _set_linger_zero(self.client_writer.transport)
        for writer in (self.client_writer, self.upstream_writer):
            if reset:
                writer.transport.abort()
            else:
                writer.close()
        self.proxy._links.discard(self)
        if not self.finished.done():
            self.finished.set_result(None)


# -- proxies ----------------------------------------------------------------------------------


class FaultProxy:
    """One listening address forwarding to one upstream, with toxics. Made by
    :meth:`ProxyServer.create`; every method is safe from any thread.

    Attributes:
        name: unique within the server.
        listen: the address it listens on, ``"host:port"`` (the real port once bound).
        upstream: where connections go, ``"host:port"``.
        enabled: whether it listens now. Disabling closes the listener and every
            connection but keeps the toxics, as Toxiproxy does.

    Example::

        proxy = server.create("redis", upstream="127.0.0.1:6379")
        proxy.add_toxic("latency", latency=100, jitter=20)       # ms, downstream
        client = redis.Redis(port=proxy.port)
        with proxy.down():                                        # an outage
            ...
    """

    def __init__(self, server: ProxyServer, name: str, listen: str, upstream: str) -> None:
        self._server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self._toxics: list[Toxic] = []
        self._links: set[Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._numbers = itertools.count(1)
        self._fail_counts: dict[str, int] = {}
        self._connections = 0
        self._failed = 0
        self._applied_count = 0
        self._bytes = {"upstream": 0, "downstream": 0}

    def __repr__(self) -> str:
        return (
            f"FaultProxy(name={self.name!r}, listen={self.listen!r}, "
            f"upstream={self.upstream!r}, enabled={self.enabled!r})"
        )

    # -- reading ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The host part of :attr:`listen`."""
        return parse_address("listen", self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of :attr:`listen` (the bound port once enabled)."""
        return parse_address("listen", self.listen)[1]

    def toxics(self) -> list[Toxic]:
        """The toxics, in the order they act."""
        return list(self._toxics)

    def get_toxic(self, name: str) -> Toxic:
        """The toxic called ``name``.

        Raises:
            ProxyNotFoundError: no such toxic.
        """
        for toxic in self._toxics:
            if toxic.name == name:
                return toxic
        raise ProxyNotFoundError("toxic not found")

    def stats(self) -> ProxyStats:
        """Counters since creation."""
        return ProxyStats(
            self.name,
            self.enabled,
            self._connections,
            len(self._links),
            self._failed,
            self._applied_count,
            self._bytes["upstream"],
            self._bytes["downstream"],
        )

    def snapshot(self) -> ProxySnapshot:
        """Everything that defines the proxy now, for :meth:`restore`."""
        return ProxySnapshot(
            self.name, self.listen, self.upstream, self.enabled, tuple(self._toxics)
        )

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's JSON for this proxy (with its toxics)."""
        return self.snapshot().to_json()

    # -- changing --------------------------------------------------------------------------

    def add_toxic(
        self,
        type: str,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        **attributes: Any,
    ) -> Toxic:
        """Add a toxic; it acts at once on open connections and on new ones.

        Args:
            type: one of :data:`~buttress.chaos.TOXIC_TYPES` (see docs/fault-proxy.md).
            name: default ``"{type}_{stream}"``; must be unique on this proxy.
            stream: ``"downstream"`` (default; server to client) or ``"upstream"``.
            toxicity: probability in ``[0, 1]`` that it acts on a connection (a response,
                for ``http_*`` toxics). Default ``1.0``.
            **attributes: the type's attributes (``latency=100`` ms, ``rate=64`` KB/s...).

        Raises:
            ConfigError: unknown type or attribute, bad value.
            ProxyConflictError: a toxic of that name exists.
        """
        toxic = make_toxic(type, name=name, stream=stream, toxicity=toxicity, attributes=attributes)
        return self._server._call(self._add, toxic)

    def add_toxic_json(self, data: Mapping[str, Any]) -> Toxic:
        """:meth:`add_toxic` from Toxiproxy's JSON body."""
        return self._server._call(self._add, toxic_from_json(data))

    def _add(self, toxic: Toxic) -> Toxic:
        if any(t.name == toxic.name for t in self._toxics):
            raise ProxyConflictError("toxic already exists")
        self._toxics.append(toxic)
        self._fail_counts.pop(toxic.name, None)
        self._refresh()
        return toxic

    def update_toxic(self, name: str, *, toxicity: float | None = None, **attributes: Any) -> Toxic:
        """Change a toxic's toxicity and/or attributes (the others keep their values).

        Raises:
            ProxyNotFoundError: no such toxic.
            ConfigError: a bad value.
        """
        data: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            data["toxicity"] = toxicity
        return self.update_toxic_json(name, data)

    def update_toxic_json(self, name: str, data: Mapping[str, Any]) -> Toxic:
        """:meth:`update_toxic` from Toxiproxy's JSON body."""
        from ._toxics import updated_toxic

        def update() -> Toxic:
            for index, toxic in enumerate(self._toxics):
                if toxic.name == name:
                    new = updated_toxic(toxic, data)
                    self._toxics[index] = new
                    self._fail_counts.pop(name, None)
                    self._refresh()
                    return new
            raise ProxyNotFoundError("toxic not found")

        return self._server._call(update)

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; data it holds (a latency) is released at once.

        Raises:
            ProxyNotFoundError: no such toxic.
        """

        def remove() -> None:
            for index, toxic in enumerate(self._toxics):
                if toxic.name == name:
                    del self._toxics[index]
                    self._refresh()
                    return
            raise ProxyNotFoundError("toxic not found")

        self._server._call(remove)

    def remove_all_toxics(self) -> None:
        """Remove every toxic."""

        def clear() -> None:
            self._toxics.clear()
            self._refresh()

        self._server._call(clear)

    def enable(self) -> None:
        """Listen again (on the same port); a no-op when enabled.

        Raises:
            ProxyError: the address cannot be bound (``status`` 500).
        """
        self._server._call(self._enable)

    def disable(self) -> None:
        """Stop listening and close every connection; toxics are kept. A no-op when
        disabled."""
        self._server._call(self._disable)

    @contextlib.contextmanager
    def down(self) -> Iterator[Self]:
        """A context manager: the proxy is disabled inside the block, enabled after.

        Example::

            with proxy.down():
                assert client.get("k") is None       # the outage path
        """
        self.disable()
        try:
            yield self
        finally:
            self.enable()

    def update(
        self,
        *,
        listen: str | None = None,
        upstream: str | None = None,
        enabled: bool | None = None,
    ) -> None:
        """Change the address, the upstream and/or the enabled state (Toxiproxy's
        ``POST /proxies/{name}``). A new address or upstream restarts the proxy.

        Raises:
            ConfigError: a malformed address. ProxyError: the new address cannot be bound.
        """
        if listen is not None:
            parse_address("listen", listen)
        if upstream is not None:
            parse_address("upstream", upstream)
        if enabled is not None and not isinstance(enabled, bool):
            raise v.fail("enabled", "a bool", enabled)
        self._server._call(self._update, listen, upstream, enabled)

    def _update(self, listen: str | None, upstream: str | None, enabled: bool | None) -> None:
        want = self.enabled if enabled is None else enabled
        moved = (listen is not None and listen != self.listen) or (
            upstream is not None and upstream != self.upstream
        )
        if moved:
            was = (self.listen, self.upstream)
            self._disable()
            self.listen = listen if listen is not None else self.listen
            self.upstream = upstream if upstream is not None else self.upstream
            if want:
                try:
                    self._enable()
                except ProxyError:
                    self.listen, self.upstream = was
                    raise
            return
        if want:
            self._enable()
        else:
            self._disable()

    def restore(self, snapshot: ProxySnapshot) -> None:
        """Put back an earlier :meth:`snapshot` (address, upstream, toxics, state) in one
        step: open connections see the old toxics up to the moment the new ones apply.

        Raises:
            ConfigError: the snapshot is of another proxy. ProxyError: cannot bind.
        """
        if snapshot.name != self.name:
            raise v.fail("snapshot", f"a snapshot of proxy {self.name!r}", snapshot.name)

        def restore() -> None:
            self._update(snapshot.listen, snapshot.upstream, snapshot.enabled)
            self._toxics = list(snapshot.toxics)
            self._fail_counts.clear()
            self._refresh()

        self._server._call(restore)

    # -- on the loop -----------------------------------------------------------------------

    def _refresh(self) -> None:
        toxics = self._toxics
        for link in list(self._links):
            link.refresh(toxics)

    def _applied(self, toxic: Toxic, number: int) -> None:
        self._applied_count += 1
        server = self._server
        if server._listeners or GLOBAL_LISTENERS:
            emit(
                server._listeners,
                ToxicApplied(self.name, toxic.name, toxic.type, toxic.stream, number),
            )

    def _count_bytes(self, stream: str, n: int) -> None:
        self._bytes[stream] += n

    def _enable(self) -> None:
        if self.enabled:
            return
        host, port = parse_address("listen", self.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            raise ProxyError(
                f"listen tcp {self.listen}: bind: {exc.strerror or exc}", status=500
            ) from exc
        sock.setblocking(False)
        self._sock = sock
        bound_host = sock.getsockname()[0]
        self.listen = _format_address(host or bound_host, sock.getsockname()[1])
        self.enabled = True
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop(sock))

    def _disable(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        sock, self._sock = self._sock, None
        if self._accept_task is not None:
            self._accept_task.cancel()
            self._accept_task = None
        if sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        for task in list(self._handlers):
            task.cancel()
        for link in list(self._links):
            link.close(reset=False, reason="proxy disabled")

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if not self.enabled or self._sock is not sock:
                    return
                logger.warning("fault proxy %r: accept failed: %s", self.name, exc)
                await asyncio.sleep(0.05)
                continue
            conn.setblocking(False)
            number = next(self._numbers)
            self._connections += 1
            task = loop.create_task(self._handle(conn, number))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    def _fail_first(self) -> str | None:
        """The mode of the first ``fail_first`` toxic claiming this connection, if any."""
        for toxic in self._toxics:
            if toxic.type != "fail_first":
                continue
            seen = self._fail_counts.get(toxic.name, 0)
            if seen >= toxic.attributes["connections"]:
                continue
            self._fail_counts[toxic.name] = seen + 1
            if toxic.toxicity >= 1.0 or self._server.random.random() < toxic.toxicity:
                self._applied(toxic, self._connections)
                return str(toxic.attributes["mode"])
        return None

    async def _handle(self, conn: socket.socket, number: int) -> None:
        mode = self._fail_first()
        if mode is not None:
            self._failed += 1
            if mode == "reset":
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        host, port = parse_address("upstream", self.upstream)
        try:
            async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT):
                upstream = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            logger.debug(
                "fault proxy %r: upstream %s unreachable: %s", self.name, self.upstream, exc
            )
            conn.close()
            return
        except asyncio.CancelledError:
            conn.close()
            raise
        # asyncio disables Nagle only on sockets whose proto is IPPROTO_TCP; an accepted
        # socket reports proto 0, so without this the last segment of every reply waits
        # for the client's delayed ACK (~40 ms on Linux).
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            client = await asyncio.open_connection(sock=conn)
        except BaseException:
            conn.close()
            upstream[1].close()
            raise
        link = Link(self, number, client, upstream)
        self._links.add(link)
        link.start(self._toxics)
        try:
            await link.finished
        finally:
            link.close(reset=False, reason="handler ended")
            tasks = [t for p in link.pumps.values() for t in (p.task, p.processor) if t]
            await asyncio.gather(*tasks, return_exceptions=True)


# -- the server -------------------------------------------------------------------------------


class ProxyServer:
    """A set of fault proxies, with Toxiproxy's HTTP API when given a ``port``.

    Use it in async code (``async with ProxyServer() as server:``), or from sync code
    with its own event loop in a background thread (``with ProxyServer().background()
    as server:``; every method then hops onto that loop and waits).

    Args:
        host: the API's address. Default ``"127.0.0.1"``.
        port: the API's port (Toxiproxy's is 8474; ``0`` picks a free one); ``None``
            (default) serves no HTTP API, only the Python one.
        clock: times latencies and bandwidth (a :class:`~buttress.Clock`). Default: the
            system clock.
        random: a ``random.Random`` for toxicity draws, jitter and slicing, for
            reproducible runs. Default: a fresh unseeded one.
        listeners: event listeners (:class:`~buttress.chaos.ToxicApplied`).

    Raises:
        ConfigError: a bad option. ProxyError: (on start) the API port is in use.

    Example::

        async with ProxyServer(port=8474) as server:
            proxy = server.create("redis", upstream="127.0.0.1:6379", listen="127.0.0.1:26379")
            proxy.add_toxic("latency", latency=50)
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        if not isinstance(host, str) or not host:
            raise v.fail("host", "a host name or address", host)
        self.host = host
        self.port = None if port is None else v.integer("port", port, maximum=65535)
        self.clock = resolve(clock)
        self.random = v.rng(random)
        self._listeners = v.listeners(listeners)
        self._proxies: dict[str, FaultProxy] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._api: Any = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"ProxyServer(api={self.api_url!r}, proxies={sorted(self._proxies)!r})"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._loop is not None

    @property
    def api_url(self) -> str | None:
        """``"http://host:port"`` of the HTTP API once started, else ``None``."""
        if self._api is None:
            return None
        return f"http://{_format_address(self.host, self._api.port)}"

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start on the running loop (and serve the HTTP API when ``port`` is set).

        Raises:
            ProxyError: the API address cannot be bound (nothing is left running).
            RuntimeError: already started.
        """
        if self._loop is not None:
            raise RuntimeError("this ProxyServer is already running")
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        if self.port is not None:
            from ._api import ApiServer

            api = ApiServer(self)
            try:
                await api.start(self.host, self.port)
            except BaseException:
                self._loop = None
                self._thread_id = None
                raise
            self._api = api

    async def stop(self) -> None:
        """Close every proxy, connection and the API. Idempotent."""
        if self._loop is None:
            return
        for proxy in list(self._proxies.values()):
            proxy._disable()
        handlers = [t for p in self._proxies.values() for t in p._handlers]
        if self._api is not None:
            await self._api.stop()
            self._api = None
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        await asyncio.sleep(0)  # let closed transports finish
        self._loop = None
        self._thread_id = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_background(self) -> Self:
        """Run on a new event loop in a daemon thread; returns once serving.

        Raises:
            ProxyError: the API address cannot be bound (the thread is gone again).
            RuntimeError: already running.
        """
        if self._loop is not None or self._thread is not None:
            raise RuntimeError("this ProxyServer is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self._stop_event = asyncio.Event()
            ready.set()
            try:
                await self._stop_event.wait()
            finally:
                await self.stop()

        thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="buttress-proxy", daemon=True
        )
        self._thread = thread
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop_background(self) -> None:
        """Stop a server started with :meth:`start_background` and join its thread."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)
        thread.join(30)
        self._thread = None
        self._stop_event = None

    @contextlib.contextmanager
    def background(self) -> Iterator[Self]:
        """``with server.background():`` — :meth:`start_background`, then
        :meth:`stop_background` on exit."""
        self.start_background()
        try:
            yield self
        finally:
            self.stop_background()

    def __enter__(self) -> Self:
        return self.start_background()

    def __exit__(self, *exc: object) -> None:
        self.stop_background()

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the server's loop (at once when already on it)."""
        loop = self._loop
        if loop is None:
            raise ProxyError(
                "the proxy server is not running: use `async with ProxyServer()` or "
                "`ProxyServer().background()`"
            )
        if threading.get_ident() == self._thread_id:
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    # -- proxies ---------------------------------------------------------------------------

    def proxies(self) -> dict[str, FaultProxy]:
        """Every proxy, by name."""
        return dict(self._proxies)

    def get(self, name: str) -> FaultProxy:
        """The proxy called ``name``.

        Raises:
            ProxyNotFoundError: no such proxy.
        """
        try:
            return self._proxies[name]
        except KeyError:
            raise ProxyNotFoundError("proxy not found") from None

    def create(
        self,
        name: str,
        upstream: str,
        *,
        listen: str = "127.0.0.1:0",
        enabled: bool = True,
        toxics: Iterable[Toxic | Mapping[str, Any]] = (),
    ) -> FaultProxy:
        """Create a proxy and (when ``enabled``) start listening.

        Args:
            name: unique name.
            upstream: ``"host:port"`` to forward to.
            listen: ``"host:port"``; port ``0`` picks a free one (read it back from
                :attr:`FaultProxy.listen`). Default ``"127.0.0.1:0"``.
            enabled: listen at once. Default ``True``.
            toxics: toxics to start with (:class:`Toxic` or Toxiproxy JSON), all added
                before the first connection is accepted.

        Raises:
            ConfigError: a bad name, address or toxic.
            ProxyConflictError: a proxy of that name exists.
            ProxyError: the address cannot be bound (nothing is created).
        """
        spec = self._spec(name, upstream, listen, enabled, toxics)
        return self._call(self._create, spec)

    @staticmethod
    def _spec(
        name: object,
        upstream: object,
        listen: object,
        enabled: object,
        toxics: Iterable[Toxic | Mapping[str, Any]],
    ) -> ProxySnapshot:
        if not isinstance(name, str) or not name:
            raise ConfigError("missing required field: name")
        if not isinstance(upstream, str) or not upstream:
            raise ConfigError("missing required field: upstream")
        parse_address("upstream", upstream)
        parse_address("listen", listen)
        if not isinstance(enabled, bool):
            raise v.fail("enabled", "a bool", enabled)
        made = [t if isinstance(t, Toxic) else toxic_from_json(t) for t in toxics]
        names = [t.name for t in made]
        if len(set(names)) != len(names):
            raise ConfigError(f"toxic names must be unique, got {names!r}")
        return ProxySnapshot(name, str(listen), upstream, enabled, tuple(made))

    def _create(self, spec: ProxySnapshot) -> FaultProxy:
        if spec.name in self._proxies:
            raise ProxyConflictError("proxy already exists")
        proxy = FaultProxy(self, spec.name, spec.listen, spec.upstream)
        proxy._toxics = list(spec.toxics)
        if spec.enabled:
            proxy._enable()
        self._proxies[spec.name] = proxy
        return proxy

    def delete(self, name: str) -> None:
        """Close and forget a proxy.

        Raises:
            ProxyNotFoundError: no such proxy.
        """

        def delete() -> None:
            proxy = self.get(name)
            proxy._disable()
            del self._proxies[name]

        self._call(delete)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (Toxiproxy's ``POST /reset``).

        Raises:
            ProxyError: a proxy cannot listen again (the others are still reset).
        """

        def reset() -> None:
            failure: ProxyError | None = None
            for proxy in self._proxies.values():
                proxy._toxics.clear()
                proxy._fail_counts.clear()
                proxy._refresh()
                try:
                    proxy._enable()
                except ProxyError as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure

        self._call(reset)

    def populate(self, proxies: Iterable[Mapping[str, Any]]) -> list[FaultProxy]:
        """Create or replace proxies from Toxiproxy's JSON list (``POST /populate``).

        Every entry is validated before anything changes. A proxy that exists with the
        same ``listen`` and ``upstream`` is kept as it is (toxics too, unless the entry
        has ``toxics``); one that differs is replaced.

        Raises:
            ConfigError: an entry is malformed (``missing required field: name at proxy 2``).
            ProxyError: an address cannot be bound.
        """
        specs: list[ProxySnapshot] = []
        replace_toxics: list[bool] = []
        names: set[str] = set()
        for index, entry in enumerate(proxies, 1):
            if not isinstance(entry, Mapping):
                raise ConfigError(f"proxy {index} must be a JSON object, got {entry!r}")
            for key in ("name", "upstream"):
                if not isinstance(entry.get(key), str) or not entry.get(key):
                    raise ConfigError(f"missing required field: {key} at proxy {index}")
            if entry["name"] in names:
                raise ConfigError(f"duplicate proxy name {entry['name']!r}")
            names.add(entry["name"])
            enabled = entry.get("enabled")
            specs.append(
                self._spec(
                    entry["name"],
                    entry["upstream"],
                    entry.get("listen") or "127.0.0.1:0",
                    True if enabled is None else enabled,
                    entry.get("toxics") or (),
                )
            )
            replace_toxics.append("toxics" in entry)

        def populate() -> list[FaultProxy]:
            result: list[FaultProxy] = []
            for spec, with_toxics in zip(specs, replace_toxics, strict=True):
                existing = self._proxies.get(spec.name)
                if existing is not None and (
                    existing.upstream == spec.upstream
                    and (existing.listen == spec.listen or spec.listen.endswith(":0"))
                ):
                    if with_toxics:
                        existing._toxics = list(spec.toxics)
                        existing._refresh()
                    result.append(existing)
                    continue
                if existing is not None:
                    existing._disable()
                    del self._proxies[spec.name]
                result.append(self._create(spec))
            return result

        return self._call(populate)

    def snapshot(self) -> list[ProxySnapshot]:
        """Every proxy's :class:`ProxySnapshot`."""
        return [proxy.snapshot() for proxy in self._proxies.values()]

    def restore(self, snapshots: Iterable[ProxySnapshot]) -> None:
        """Make the server match ``snapshots`` exactly: proxies not in it are deleted,
        the others restored (created if gone), toxics included.

        Raises:
            ProxyError: an address cannot be bound.
        """
        wanted = list(snapshots)

        def restore() -> None:
            names = {s.name for s in wanted}
            for name in list(self._proxies):
                if name not in names:
                    self._proxies.pop(name)._disable()
            for snap in wanted:
                proxy = self._proxies.get(snap.name)
                if proxy is None:
                    self._create(snap)
                else:
                    proxy._update(snap.listen, snap.upstream, snap.enabled)
                    proxy._toxics = list(snap.toxics)
                    proxy._fail_counts.clear()
                    proxy._refresh()

        self._call(restore)

    def add_listener(self, listener: Listener) -> None:
        """Receive this server's :class:`~buttress.chaos.ToxicApplied` events."""
        if not callable(listener):
            raise v.fail("listener", "a callable taking one event", listener)
        self._listeners = (*self._listeners, listener)
