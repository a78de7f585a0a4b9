"""Toxics: what the fault proxy does to the bytes of a connection.

A :class:`Toxic` is the immutable description the API shows (Toxiproxy's JSON: ``name``,
``type``, ``stream``, ``toxicity``, ``attributes``). A :class:`Stage` is one toxic acting
on one direction of one connection; stages of a direction are chained in the order the
toxics were added, the last one feeding the socket.

The timing decisions are small pure functions (:func:`latency_delay`, :class:`Pacer`,
:func:`slice_sizes`) so they can be tested without sockets or real time.
"""

from __future__ import annotations

import asyncio
import math
import random as _random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _validate as v
from .._errors import ConfigError
from ._http import Framer, Head

if TYPE_CHECKING:
    from ._proxy import Link

__all__ = [
    "HTTP_TYPES",
    "TOXIC_TYPES",
    "Pacer",
    "Stage",
    "Toxic",
    "latency_delay",
    "make_toxic",
    "slice_sizes",
]

STREAMS = ("upstream", "downstream")


@dataclass(frozen=True)
class _Attr:
    name: str
    kind: str  # "number" | "int" | "str" | "str?" | "headers"
    default: Any
    minimum: float = 0
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""


_MS = "milliseconds"
_SCHEMAS: dict[str, tuple[_Attr, ...]] = {
    "latency": (
        _Attr("latency", "number", 0, doc=_MS),
        _Attr("jitter", "number", 0, doc=_MS),
    ),
    "bandwidth": (_Attr("rate", "number", 0, doc="KB/s (0: no limit)"),),
    "slow_close": (_Attr("delay", "number", 0, doc=_MS),),
    "timeout": (_Attr("timeout", "number", 0, doc=f"{_MS} (0: hold forever)"),),
    "reset_peer": (_Attr("timeout", "number", 0, doc=_MS),),
    "slicer": (
        _Attr("average_size", "int", 0, minimum=1, doc="bytes"),
        _Attr("size_variation", "int", 0, doc="bytes"),
        _Attr("delay", "number", 0, doc="microseconds"),
    ),
    "limit_data": (_Attr("bytes", "int", 0, doc="bytes"),),
    "fail_first": (
        _Attr("connections", "int", 1, doc="connections"),
        _Attr("mode", "str", "reset", choices=("reset", "close")),
    ),
    "http_status": (
        _Attr("status_code", "int", 503, minimum=100, maximum=599),
        _Attr("body", "str?", None),
    ),
    "http_header": (_Attr("headers", "headers", {}),),
    "http_latency": (
        _Attr("latency", "number", 0, doc=_MS),
        _Attr("jitter", "number", 0, doc=_MS),
    ),
}

TOXIC_TYPES: tuple[str, ...] = tuple(_SCHEMAS)
"""Every toxic type, Toxiproxy's first, then buttress's additions."""
HTTP_TYPES = frozenset({"http_status", "http_header", "http_latency"})
"""Toxics that parse HTTP/1.1 responses (downstream only; toxicity drawn per response)."""
CONNECTION_TYPES = frozenset({"fail_first"})
"""Toxics that act when a connection is accepted, before any byte flows."""


@dataclass(frozen=True)
class Toxic:
    """One toxic, as the API shows it. Build one with :func:`make_toxic` (validated).

    Attributes:
        name: unique within its proxy; default ``"{type}_{stream}"``.
        type: one of :data:`TOXIC_TYPES`.
        stream: ``"upstream"`` (client to server) or ``"downstream"`` (server to client).
        toxicity: the probability, in ``[0, 1]``, that the toxic acts on a connection
            (on a response, for ``http_*`` toxics).
        attributes: the type's settings, every one filled in.
    """

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's JSON shape."""
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }

    def attr(self, name: str) -> Any:
        """One attribute."""
        return self.attributes[name]


def _check_attr(toxic_type: str, spec: _Attr, value: Any) -> Any:
    where = f"attributes.{spec.name} of a {toxic_type} toxic"
    if spec.kind == "number":
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise v.fail(where, f"a number >= {spec.minimum:g} ({spec.doc})", value)
        if value < spec.minimum:
            raise v.fail(where, f"a number >= {spec.minimum:g} ({spec.doc})", value)
        return value
    if spec.kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        top = "" if spec.maximum is None else f" and <= {spec.maximum:g}"
        if not isinstance(value, int) or isinstance(value, bool):
            raise v.fail(where, f"an int >= {spec.minimum:g}{top}", value)
        if value < spec.minimum or (spec.maximum is not None and value > spec.maximum):
            raise v.fail(where, f"an int >= {spec.minimum:g}{top}", value)
        return value
    if spec.kind == "str":
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            allowed = " | ".join(repr(c) for c in spec.choices) or "a string"
            raise v.fail(where, f"one of {allowed}" if spec.choices else allowed, value)
        return value
    if spec.kind == "str?":
        if value is not None and not isinstance(value, str):
            raise v.fail(where, "a string or null", value)
        return value
    # headers
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and ":" not in k and isinstance(x, str) and "\n" not in x
        for k, x in value.items()
    ):
        raise v.fail(where, "an object of header names to string values", value)
    return dict(value)


def make_toxic(
    type: str,
    *,
    name: str | None = None,
    stream: str = "downstream",
    toxicity: float = 1.0,
    attributes: Mapping[str, Any] | None = None,
) -> Toxic:
    """A validated :class:`Toxic`; missing attributes take their defaults.

    Raises:
        ConfigError: an unknown type or attribute, a bad stream, toxicity or value; the
            message names the field, the value and what is allowed.

    Example::

        make_toxic("latency", attributes={"latency": 100, "jitter": 10})
    """
    if not isinstance(type, str) or type not in _SCHEMAS:
        raise v.fail("type", f"a toxic type, one of {', '.join(TOXIC_TYPES)}", type)
    if not isinstance(stream, str) or stream not in STREAMS:
        raise v.fail("stream", "'upstream' or 'downstream'", stream)
    if type in HTTP_TYPES and stream != "downstream":
        raise v.fail("stream", f"'downstream' for a {type} toxic (it rewrites responses)", stream)
    if isinstance(toxicity, bool) or not isinstance(toxicity, int | float):
        raise v.fail("toxicity", "a number in [0, 1]", toxicity)
    toxicity = v.number("toxicity", toxicity, low=0.0, high=1.0)
    if name is None or name == "":
        name = f"{type}_{stream}"
    elif not isinstance(name, str):
        raise v.fail("name", "a string", name)
    given = dict(attributes or {})
    if not isinstance(attributes or {}, Mapping):
        raise v.fail("attributes", "an object", attributes)
    schema = _SCHEMAS[type]
    known = {spec.name for spec in schema}
    unknown = sorted(set(given) - known)
    if unknown:
        raise v.fail(
            f"attributes of a {type} toxic",
            f"made of {', '.join(sorted(known))} (unknown: {', '.join(unknown)})",
            attributes,
        )
    filled = {
        spec.name: _check_attr(type, spec, given.get(spec.name, spec.default)) for spec in schema
    }
    if type == "slicer" and filled["size_variation"] >= filled["average_size"]:
        raise v.fail(
            "attributes.size_variation of a slicer toxic",
            f"an int below average_size ({filled['average_size']})",
            filled["size_variation"],
        )
    return Toxic(name, type, stream, toxicity, filled)


def toxic_from_json(data: object) -> Toxic:
    """A toxic from Toxiproxy's JSON (``type`` required; the rest defaulted)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a toxic must be a JSON object, got {data!r}")
    unknown = sorted(set(data) - {"name", "type", "stream", "toxicity", "attributes"})
    if unknown:
        raise ConfigError(f"unknown toxic field(s): {', '.join(unknown)}")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise v.fail("attributes", "an object", attributes)
    return make_toxic(
        data.get("type"),  # type: ignore[arg-type]
        name=data.get("name"),
        stream=data.get("stream", "downstream"),
        toxicity=data.get("toxicity", 1.0),
        attributes=attributes,
    )


def updated_toxic(toxic: Toxic, data: object) -> Toxic:
    """``toxic`` with the ``attributes``/``toxicity`` of an update merged in."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a toxic update must be a JSON object, got {data!r}")
    attributes = dict(toxic.attributes)
    new = data.get("attributes") or {}
    if not isinstance(new, Mapping):
        raise v.fail("attributes", "an object", new)
    attributes.update(new)
    return make_toxic(
        toxic.type,
        name=toxic.name,
        stream=toxic.stream,
        toxicity=data.get("toxicity", toxic.toxicity),
        attributes=attributes,
    )


# -- pure timing logic ---------------------------------------------------------------------


def latency_delay(latency_ms: float, jitter_ms: float, rng: _random.Random) -> float:
    """Seconds to hold one chunk: uniform in ``[latency - jitter, latency + jitter]``,
    never below zero (Toxiproxy's ``latency ± jitter``, in milliseconds)."""
    delay = latency_ms
    if jitter_ms > 0:
        delay += rng.uniform(-jitter_ms, jitter_ms)
    return max(delay, 0.0) / 1000.0


class Pacer:
    """Paces bytes at ``rate`` bytes per second, in pieces of at most 100 ms of data.

    :meth:`plan` takes a chunk read at ``now`` and returns ``(release_at, size)`` pieces:
    each piece leaves when the link would have finished sending it. Over any interval the
    bytes released never exceed ``rate * interval`` plus one piece, and a link idle for a
    while does not get a burst (unused time is not banked).
    """

    __slots__ = ("free_at", "piece", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.piece = max(1, int(rate * 0.1))
        self.free_at = -math.inf

    def plan(self, size: int, now: float) -> list[tuple[float, int]]:
        """When each piece of a ``size``-byte chunk may be released."""
        at = max(self.free_at, now)
        out: list[tuple[float, int]] = []
        for offset in range(0, size, self.piece):
            n = min(self.piece, size - offset)
            at += n / self.rate
            out.append((at, n))
        self.free_at = at
        return out


def slice_sizes(size: int, average: int, variation: int, rng: _random.Random) -> list[int]:
    """Split ``size`` bytes into slices of about ``average ± variation`` bytes.

    Halves recursively with a random offset, so slices vary evenly and none is empty
    (``variation < average`` keeps every split point strictly inside). Sums to ``size``.
    """
    out: list[int] = []
    stack = [(0, size)]
    while stack:
        start, end = stack.pop()
        if (end - start) - average <= variation:
            if end > start:
                out.append(end - start)
            continue
        mid = start + (end - start) // 2
        if variation:
            mid += rng.randint(-variation, variation - 1)
        stack.append((mid, end))
        stack.append((start, mid))
    return out


# -- stages: a toxic acting on one direction of one connection ------------------------------


class Sink:
    """The end of a chain: hands bytes to the pump's destination."""

    async def chunk(self, data: bytes, stamp: float) -> None:
        raise NotImplementedError

    async def eof(self) -> None:
        raise NotImplementedError


class Stage(Sink):
    """One toxic on one direction of one connection. The base passes everything on."""

    def __init__(self, toxic: Toxic, link: Link, stream: str) -> None:
        self.toxic = toxic
        self.link = link
        self.stream = stream
        self.next: Sink = link.sink(stream)
        self.stopped = False
        self._wake: asyncio.Future[None] | None = None
        self._timer: Any = None

    def start(self) -> None:
        """Called once when the stage joins the chain (the connection opened or the toxic
        was added)."""

    def stop(self) -> None:
        """The toxic was removed or replaced: release what is held, cancel timers."""
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def wait_until(self, when: float) -> None:
        """Sleep on the link's clock until ``when``; returns early if the stage stops."""
        clock = self.link.clock
        delay = when - clock.monotonic()
        if delay <= 0 or self.stopped:
            return
        wake = self._wake = asyncio.get_running_loop().create_future()

        def fire() -> None:
            if not wake.done():
                wake.set_result(None)

        handle = clock.call_later(delay, fire)
        try:
            await wake
        finally:
            handle.cancel()
            self._wake = None

    async def chunk(self, data: bytes, stamp: float) -> None:
        await self.next.chunk(data, stamp)

    async def eof(self) -> None:
        await self.next.eof()


class LatencyStage(Stage):
    async def chunk(self, data: bytes, stamp: float) -> None:
        attrs = self.toxic.attributes
        delay = latency_delay(attrs["latency"], attrs["jitter"], self.link.random)
        # Measured from when the chunk was read, so chunks queued behind a slow one are
        # not delayed twice (a pipe, not a series of sleeps).
        await self.wait_until(stamp + delay)
        await self.next.chunk(data, stamp)


class BandwidthStage(Stage):
    def start(self) -> None:
        rate = self.toxic.attributes["rate"]
        self.pacer = Pacer(rate * 1000.0) if rate > 0 else None

    async def chunk(self, data: bytes, stamp: float) -> None:
        if self.pacer is None or self.stopped:
            await self.next.chunk(data, stamp)
            return
        offset = 0
        for release_at, size in self.pacer.plan(len(data), self.link.clock.monotonic()):
            await self.wait_until(release_at)
            await self.next.chunk(data[offset : offset + size], stamp)
            offset += size


class SlowCloseStage(Stage):
    async def eof(self) -> None:
        await self.wait_until(self.link.clock.monotonic() + self.toxic.attributes["delay"] / 1e3)
        await self.next.eof()


class TimeoutStage(Stage):
    def start(self) -> None:
        ms = self.toxic.attributes["timeout"]
        if ms > 0:
            self._timer = self.link.clock.call_later(ms / 1000.0, self._expire)

    def _expire(self) -> None:
        if not self.stopped:
            self.link.close(reset=False, reason=f"timeout toxic {self.toxic.name!r}")

    async def chunk(self, data: bytes, stamp: float) -> None:
        if self.stopped:
            await self.next.chunk(data, stamp)
        # else: dropped on the floor, as a black hole does

    async def eof(self) -> None:
        if self.stopped:
            await self.next.eof()
        else:
            self.link.close(reset=False, reason=f"timeout toxic {self.toxic.name!r}")


class ResetPeerStage(Stage):
    async def chunk(self, data: bytes, stamp: float) -> None:
        if self.stopped:
            await self.next.chunk(data, stamp)
            return
        await self.wait_until(self.link.clock.monotonic() + self.toxic.attributes["timeout"] / 1e3)
        if self.stopped:
            await self.next.chunk(data, stamp)
            return
        self.link.close(reset=True, reason=f"reset_peer toxic {self.toxic.name!r}")


class SlicerStage(Stage):
    async def chunk(self, data: bytes, stamp: float) -> None:
        attrs = self.toxic.attributes
        sizes = slice_sizes(
            len(data), attrs["average_size"], attrs["size_variation"], self.link.random
        )
        gap = attrs["delay"] / 1e6
        offset = 0
        for index, size in enumerate(sizes):
            if index and gap and not self.stopped:
                await self.wait_until(self.link.clock.monotonic() + gap)
            await self.next.chunk(data[offset : offset + size], stamp)
            offset += size


class LimitDataStage(Stage):
    def start(self) -> None:
        self.sent = 0

    async def chunk(self, data: bytes, stamp: float) -> None:
        if self.stopped:
            await self.next.chunk(data, stamp)
            return
        limit = self.toxic.attributes["bytes"]
        room = limit - self.sent
        if room > 0:
            piece = data[:room]
            self.sent += len(piece)
            await self.next.chunk(piece, stamp)
        if self.sent >= limit:
            self.link.close(reset=False, reason=f"limit_data toxic {self.toxic.name!r}")


class RequestTracker(Stage):
    """Invisible upstream stage while HTTP toxics exist: records request methods so the
    response parsers know that a reply to ``HEAD`` has no body."""

    def start(self) -> None:
        self.framer = Framer("request")

    async def chunk(self, data: bytes, stamp: float) -> None:
        if not self.framer.passthrough:
            for kind, value in self.framer.feed(data):
                if kind == "head" and isinstance(value, Head):
                    for queue in self.link.method_queues:
                        queue.append(value.method)
        await self.next.chunk(data, stamp)


class HttpStage(Stage):
    """Parses responses and lets a subclass rewrite each head (toxicity per response)."""

    def start(self) -> None:
        self.methods: deque[str] = deque()
        self.link.method_queues.append(self.methods)
        self.framer = Framer("response", self.methods)
        self.active = False  # is the current response toxic?
        self.skip_body = False

    def stop(self) -> None:
        super().stop()
        if self.methods in self.link.method_queues:
            self.link.method_queues.remove(self.methods)

    async def on_head(self, head: Head, stamp: float) -> bytes:
        """The bytes to send for a toxic response's head (and replacement body)."""
        return head.encode()

    async def chunk(self, data: bytes, stamp: float) -> None:
        if self.stopped or self.framer.passthrough:
            await self.next.chunk(data, stamp)
            return
        out = bytearray()
        for kind, value in self.framer.feed(data):
            if kind == "head" and isinstance(value, Head):
                final = value.status >= 200
                self.active = final and self.link.draw(self.toxic.toxicity)
                if self.active:
                    self.link.applied(self, self.toxic)
                    if out:
                        await self.next.chunk(bytes(out), stamp)
                        out.clear()
                    out += await self.on_head(value, stamp)
                else:
                    out += value.encode()
            elif kind == "body" and isinstance(value, bytes):
                if not (self.active and self.skip_body):
                    out += value
            elif kind == "raw" and isinstance(value, bytes):
                out += value
        if out:
            await self.next.chunk(bytes(out), stamp)

    async def eof(self) -> None:
        for kind, value in self.framer.eof():
            skipped = kind == "body" and self.active and self.skip_body
            if kind in ("raw", "body") and isinstance(value, bytes) and not skipped:
                await self.next.chunk(value, self.link.clock.monotonic())
        await self.next.eof()


class HttpStatusStage(HttpStage):
    async def on_head(self, head: Head, stamp: float) -> bytes:
        attrs = self.toxic.attributes
        head.set_status(attrs["status_code"])
        body = attrs["body"]
        self.skip_body = body is not None
        if body is None:
            return head.encode()
        payload = str(body).encode()
        head.remove("transfer-encoding")
        head.set("Content-Length", str(len(payload)))
        if self.framer.last_method == "HEAD":  # a reply to HEAD never carries a body
            return head.encode()
        return head.encode() + payload


class HttpHeaderStage(HttpStage):
    async def on_head(self, head: Head, stamp: float) -> bytes:
        for name, value in self.toxic.attributes["headers"].items():
            head.set(name, value)
        return head.encode()


class HttpLatencyStage(HttpStage):
    async def on_head(self, head: Head, stamp: float) -> bytes:
        attrs = self.toxic.attributes
        await self.wait_until(
            stamp + latency_delay(attrs["latency"], attrs["jitter"], self.link.random)
        )
        return head.encode()


STAGES: dict[str, type[Stage]] = {
    "latency": LatencyStage,
    "bandwidth": BandwidthStage,
    "slow_close": SlowCloseStage,
    "timeout": TimeoutStage,
    "reset_peer": ResetPeerStage,
    "slicer": SlicerStage,
    "limit_data": LimitDataStage,
    "http_status": HttpStatusStage,
    "http_header": HttpHeaderStage,
    "http_latency": HttpLatencyStage,
}
