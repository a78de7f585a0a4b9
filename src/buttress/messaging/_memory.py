"""The in-memory transport: a broker in the process, for tests and the embedded default.

Same semantics as the broker transports: topics keep a log; each consumer group has a
cursor and a pending list; fetched messages are leased and delivered again (with
``deliveries`` one higher) when the lease runs out, so an abandoned consumer loses
nothing. Fan-out: every group gets every message. Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .. import _validate as v
from .._clock import Clock, TimerHandle, resolve
from ._errors import BrokerError, RequestTimeoutError
from ._message import HEADER_MSG_ID, HEADER_REPLY_TO, Message

__all__ = ["MemoryTransport"]

_names = itertools.count(1)


@dataclass(slots=True)
class _Entry:
    seq: int
    body: bytes
    headers: Mapping[str, str]
    key: str
    published_at: float


@dataclass(slots=True)
class _Pending:
    consumer: str | None
    deliveries: int
    due: float  # redeliverable to anyone once the clock reaches it


@dataclass(slots=True)
class _Group:
    cursor: int
    pending: dict[int, _Pending] = field(default_factory=dict)


@dataclass(slots=True)
class _Topic:
    entries: dict[int, _Entry] = field(default_factory=dict)
    next_seq: int = 1
    groups: dict[str, _Group] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class MemoryTransport:
    """A broker in the process: at-least-once consumer groups, leases, redelivery,
    fan-out and request-reply, with no server.

    Args:
        max_len: keep at most this many messages per topic (the oldest go first, even
            if unacked, like Redis ``MAXLEN``); ``None`` (default) keeps everything.
        start: where a new consumer group starts: ``"earliest"`` (default: every
            message still kept) or ``"latest"`` (only messages published after).
        clock: the time source for leases and waits (``FakeClock`` in tests). Default:
            the system clock.
        name: the transport's name in errors. Default ``"memory-N"``.

    Task-safe (one event loop); constructible before a loop exists.

    Raises:
        ConfigError: a bad option.

    Example::

        transport = MemoryTransport()
        await transport.publish("orders", b"{...}", msg_id="order-17")
        consumer = Consumer(transport, "orders", handle, group="billing")
    """

    def __init__(
        self,
        *,
        max_len: int | None = None,
        start: str = "earliest",
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        self.max_len = None if max_len is None else v.integer("max_len", max_len, minimum=1)
        self.start = v.choice("start", start, ("earliest", "latest"))
        self._clock = resolve(clock)
        self.name = v.name_of(name, "memory", lambda: next(_names))
        self._topics: dict[str, _Topic] = {}
        self._replies: dict[str, asyncio.Future[Message]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryTransport(name={self.name!r}, topics={len(self._topics)})"

    def _topic(self, topic: str) -> _Topic:
        if not isinstance(topic, str) or not topic:
            raise v.fail("topic", "a non-empty str", topic)
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic()
        return state

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError(f"transport {self.name!r} is closed", transport=self.name)

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Append ``body`` to ``topic`` and return its id (a counter, as a str).

        Args:
            topic: the topic.
            body: the payload (bytes).
            msg_id: the producer's id; it becomes :attr:`Message.key` and the
                ``Msg-Id`` header. Not deduplicated here (an inbox does that).
            headers: string headers to carry.

        Raises:
            BrokerError: the transport is closed.
            ConfigError: ``topic`` empty or ``body`` not bytes.
        """
        self._check_open()
        if not isinstance(body, bytes | bytearray | memoryview):
            raise v.fail("body", "bytes", body)
        if self._replies and topic in self._replies:
            fut = self._replies.pop(topic)
            if not fut.done():
                fut.set_result(self._message(topic, body, msg_id, headers, 0))
            return "0"
        state = self._topic(topic)
        seq = state.next_seq
        state.next_seq += 1
        hdrs = dict(headers or {})
        if msg_id is not None:
            hdrs[HEADER_MSG_ID] = msg_id
        state.entries[seq] = _Entry(
            seq, bytes(body), MappingProxyType(hdrs), msg_id or str(seq), time.time()
        )
        if self.max_len is not None:
            while len(state.entries) > self.max_len:
                del state.entries[next(iter(state.entries))]
        state.wake()
        return str(seq)

    def _message(
        self,
        topic: str,
        body: bytes,
        msg_id: str | None,
        headers: Mapping[str, str] | None,
        seq: int,
    ) -> Message:
        hdrs = dict(headers or {})
        if msg_id is not None:
            hdrs[HEADER_MSG_ID] = msg_id
        return Message(str(seq), topic, bytes(body), MappingProxyType(hdrs), msg_id or str(seq))

    async def subscribe(
        self, topic: str, *, group: str, consumer: str, lease: float = 30.0
    ) -> _MemorySubscription:
        """Join ``group`` on ``topic`` as ``consumer`` (the group is created on first use).

        Raises:
            BrokerError: the transport is closed.
            ConfigError: a bad argument.
        """
        self._check_open()
        state = self._topic(topic)
        if not isinstance(group, str) or not group:
            raise v.fail("group", "a non-empty str", group)
        if not isinstance(consumer, str) or not consumer:
            raise v.fail("consumer", "a non-empty str", consumer)
        lease_s = v.seconds("lease", lease, allow_zero=False)
        if group not in state.groups:
            state.groups[group] = _Group(
                cursor=0 if self.start == "earliest" else state.next_seq - 1
            )
        return _MemorySubscription(self, topic, state, group, consumer, lease_s)

    async def request(
        self,
        topic: str,
        body: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the reply wait, part of the protocol
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Publish with a ``Reply-To`` header and wait for the reply.

        Raises:
            RequestTimeoutError: no reply within ``timeout`` seconds.
            BrokerError: the transport is closed.
        """
        wait = v.seconds("timeout", timeout, allow_zero=False)
        inbox = f"_reply.{uuid.uuid4().hex}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[inbox] = fut
        timer = self._clock.call_later(wait, lambda: fut.done() or fut.cancel())
        try:
            await self.publish(topic, body, headers={**(headers or {}), HEADER_REPLY_TO: inbox})
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                if fut.cancelled():
                    raise RequestTimeoutError(
                        f"no reply on {topic!r} within {wait:g} s", transport=self.name
                    ) from None
                raise
        finally:
            timer.cancel()
            self._replies.pop(inbox, None)

    async def reply(
        self, message: Message, body: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer ``message`` (a request); a no-op when it has no ``Reply-To``.

        Raises:
            BrokerError: the transport is closed.
        """
        if message.reply_to is not None:
            await self.publish(message.reply_to, body, headers=headers)

    async def close(self) -> None:
        """Close: later operations raise :class:`BrokerError`; waiting fetches return."""
        self._closed = True
        for state in self._topics.values():
            state.wake()

    def pending(self, topic: str, group: str) -> int:
        """How many messages of ``group`` on ``topic`` are delivered but not acked."""
        state = self._topics.get(topic)
        if state is None or group not in state.groups:
            return 0
        return len(state.groups[group].pending)

    def size(self, topic: str) -> int:
        """How many messages ``topic`` keeps."""
        state = self._topics.get(topic)
        return 0 if state is None else len(state.entries)


class _MemorySubscription:
    __slots__ = ("_clock", "_consumer", "_group", "_state", "_topic", "_transport", "lease")

    def __init__(
        self,
        transport: MemoryTransport,
        topic: str,
        state: _Topic,
        group: str,
        consumer: str,
        lease: float,
    ) -> None:
        self._transport = transport
        self._topic = topic
        self._state = state
        self._group = state.groups[group]
        self._consumer = consumer
        self._clock = transport._clock
        self.lease = lease

    def _take(self, max_messages: int) -> tuple[list[Message], float | None]:
        now = self._clock.monotonic()
        group, entries = self._group, self._state.entries
        out: list[Message] = []
        next_due: float | None = None
        for seq in sorted(group.pending):
            p = group.pending[seq]
            if p.due > now:
                next_due = p.due if next_due is None else min(next_due, p.due)
                continue
            if len(out) >= max_messages:
                break
            entry = entries.get(seq)
            if entry is None:  # trimmed away while pending
                del group.pending[seq]
                continue
            p.consumer, p.deliveries, p.due = self._consumer, p.deliveries + 1, now + self.lease
            out.append(self._to_message(entry, p.deliveries))
        if len(out) < max_messages:
            for seq in range(group.cursor + 1, self._state.next_seq):
                if len(out) >= max_messages:
                    break
                group.cursor = seq
                entry = entries.get(seq)
                if entry is None:
                    continue
                group.pending[seq] = _Pending(self._consumer, 1, now + self.lease)
                out.append(self._to_message(entry, 1))
        return out, next_due

    def _to_message(self, entry: _Entry, deliveries: int) -> Message:
        return Message(
            str(entry.seq),
            self._topic,
            entry.body,
            entry.headers,
            entry.key,
            deliveries,
            entry.published_at,
        )

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        end = self._clock.monotonic() + wait
        while True:
            self._transport._check_open()
            out, next_due = self._take(max_messages)
            if out:
                return out
            now = self._clock.monotonic()
            if now >= end:
                return []
            delay = end - now if next_due is None else min(end, next_due) - now
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._state.waiters.append(fut)
            timer: TimerHandle = self._clock.call_later(max(delay, 0.0), _waker(fut))
            try:
                await fut
            finally:
                timer.cancel()

    def _pending(self, message: Message) -> _Pending | None:
        p = self._group.pending.get(int(message.id))
        if p is None or p.consumer != self._consumer:
            return None
        return p

    async def ack(self, message: Message) -> None:
        self._group.pending.pop(int(message.id), None)

    async def reject(self, message: Message) -> None:
        self._group.pending.pop(int(message.id), None)

    async def retry(self, message: Message, delay: float) -> None:
        p = self._pending(message)
        if p is not None:
            p.consumer, p.due = None, self._clock.monotonic() + delay
            self._state.wake()

    async def extend(self, messages: Sequence[Message]) -> None:
        due = self._clock.monotonic() + self.lease
        for message in messages:
            p = self._pending(message)
            if p is not None:
                p.due = due

    async def close(self) -> None:
        return None


def _waker(fut: asyncio.Future[None]) -> Callable[[], None]:
    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    return wake
