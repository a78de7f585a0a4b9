"""The Redis Streams transport (redis-py asyncio).

A topic is a stream (``prefix + topic``); a consumer group is a Redis consumer group.
A subscription reads, in this order:

1. once, on start, its own pending entries (``XREADGROUP ... 0``): what this consumer
   name held when its process died (reading them counts a new delivery);
2. idle entries of other (dead or slow) consumers, ``XAUTOCLAIM`` with ``min-idle =
   lease`` and a cursor; when a full pass finds nothing it sleeps ``claim_interval``
   before the next pass (no hot loop);
3. new entries, ``XREADGROUP ... >`` with ``BLOCK``.

Delivery counts come from the PEL (``XPENDING``). A retry with a delay is the entry's
idle time set back (``XCLAIM IDLE``), so the claim pass picks it up after the delay;
the delay is therefore capped at ``lease``. Lease extension is ``XCLAIM ... JUSTID`` to
self, done in a script that first checks that this consumer still owns the entry.

Newer servers have native features (XREADGROUP CLAIM, XNACK, idempotent XADD ids):
:meth:`RedisStreamsTransport.features` detects them from the server version (8.4,
8.8 and 8.6) and reports them;
this version always uses the portable path above, which Redis >= 6.2 supports (and
Redis 5.0-6.0 through an XPENDING + XCLAIM fallback for XAUTOCLAIM).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from .. import _validate as v
from .._clock import Clock, resolve
from ._errors import BrokerError, BrokerUnavailableError, RequestTimeoutError
from ._message import HEADER_MSG_ID, HEADER_REPLY_TO, Message

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisFeatures", "RedisStreamsTransport"]

_names = itertools.count(1)

_F_BODY, _F_MSG_ID, _F_HEADERS = b"body", b"msg-id", b"headers"

# Renew (or set back) the idle time of entries this consumer still owns; never steals
# an entry another consumer claimed after our lease ran out.
_TOUCH = """
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
"""


@dataclass(frozen=True, slots=True)
class RedisFeatures:
    """What the server supports, found by :meth:`RedisStreamsTransport.features`.

    Attributes:
        version: the server version, e.g. ``(7, 0, 15)``.
        xautoclaim: ``XAUTOCLAIM`` (6.2+). Without it the claim pass uses XPENDING +
            XCLAIM.
        xreadgroup_claim: ``XREADGROUP ... CLAIM`` (reads idle pending entries in the
            same call). Detected, not used yet.
        xnack: ``XNACK`` (negative acknowledgement). Detected, not used yet.
        xadd_idempotent: idempotent ``XADD`` producer ids. Detected, not used yet: the
            ``msg_id`` travels as a field and inboxes dedup on it.
    """

    version: tuple[int, ...]
    xautoclaim: bool
    xreadgroup_claim: bool
    xnack: bool
    xadd_idempotent: bool


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamsTransport:
    """Redis Streams under the consumer: consumer groups, PEL-based redelivery,
    claiming from dead consumers, retention trimming, request-reply.

    Args:
        client: a ``redis.asyncio.Redis`` built with ``decode_responses=False`` and
            a ``socket_timeout`` that is ``None`` or longer than the consumer's fetch
            wait (blocking reads wait that long).
        prefix: prepended to topics to make stream keys. Default ``"buttress:msg:"``.
        max_len: trim each stream to about this many entries on publish
            (``XADD MAXLEN ~``); ``None`` (default) does not trim by length.
        max_age: trim entries older than this many seconds on publish (``XADD MINID ~``);
            ``None`` (default) does not trim by age. Only one of ``max_len`` /
            ``max_age``. Redis trims pending entries too: size retention well above
            the backlog you expect.
        start: where a new consumer group starts: ``"earliest"`` (default: the whole
            stream) or ``"latest"`` (only new entries).
        claim_interval: seconds between passes over idle entries when the last pass
            found nothing; ``None`` (default) uses ``min(5, lease / 4)`` of each
            subscription.
        clock: the time source for claim scheduling. Default: the system clock.
        name: the transport's name in errors and events. Default ``"redis-streams-N"``.

    Errors from the client become :class:`BrokerUnavailableError` (a builtin
    ``ConnectionError``: connection refused, dropped, timed out) or
    :class:`BrokerError` (anything else the server answered).

    Raises:
        ConfigError: a bad option, or a client with ``decode_responses=True``.

    Example::

        client = redis.asyncio.Redis.from_url("redis://localhost:6379/0")
        transport = RedisStreamsTransport(client, max_len=1_000_000)
        await transport.publish("orders", body, msg_id=order_id)
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "buttress:msg:",
        max_len: int | None = None,
        max_age: float | None = None,
        start: str = "earliest",
        claim_interval: float | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        pool = getattr(client, "connection_pool", None)
        if pool is None:
            raise v.fail("client", "a redis.asyncio.Redis", client)
        if pool.connection_kwargs.get("decode_responses"):
            raise v.fail("client", "a client with decode_responses=False", client)
        if not isinstance(prefix, str):
            raise v.fail("prefix", "a str", prefix)
        self._client: Any = client
        self.prefix = prefix
        self.max_len = None if max_len is None else v.integer("max_len", max_len, minimum=1)
        self.max_age = v.optional_seconds("max_age", max_age, allow_zero=False)
        if self.max_len is not None and self.max_age is not None:
            raise v.fail("max_age", "None when max_len is set (one trim strategy)", max_age)
        self.start = v.choice("start", start, ("earliest", "latest"))
        self.claim_interval = v.optional_seconds("claim_interval", claim_interval, allow_zero=False)
        self._clock = resolve(clock)
        self.name = v.name_of(name, "redis-streams", lambda: next(_names))
        self._features: RedisFeatures | None = None
        self._touch = client.register_script(_TOUCH)

    def __repr__(self) -> str:
        return f"RedisStreamsTransport(name={self.name!r}, prefix={self.prefix!r})"

    def key(self, topic: str) -> str:
        """The stream key of ``topic``."""
        if not isinstance(topic, str) or not topic:
            raise v.fail("topic", "a non-empty str", topic)
        return self.prefix + topic

    def _raise(self, exc: Exception, doing: str) -> NoReturn:
        from redis import exceptions as rex

        if isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError):
            raise BrokerUnavailableError(
                f"{doing}: Redis unavailable: {exc}", transport=self.name
            ) from exc
        raise BrokerError(f"{doing}: {exc}", transport=self.name) from exc

    async def features(self) -> RedisFeatures:
        """Probe the server once (``INFO server``): which stream features its version has.

        Raises:
            BrokerUnavailableError, BrokerError: the probe failed.
        """
        if self._features is not None:
            return self._features
        try:
            info = await self._client.info("server")
        except Exception as exc:
            self._raise(exc, "probing server features")
        version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:3])
        self._features = RedisFeatures(
            version=version,
            xautoclaim=version >= (6, 2),
            xreadgroup_claim=version >= (8, 4),
            xnack=version >= (8, 8),
            xadd_idempotent=version >= (8, 6),
        )
        return self._features

    def _fields(
        self, body: bytes, msg_id: str | None, headers: Mapping[str, str] | None
    ) -> dict[bytes, bytes]:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise v.fail("body", "bytes", body)
        fields: dict[bytes, bytes] = {_F_BODY: bytes(body)}
        if msg_id is not None:
            fields[_F_MSG_ID] = msg_id.encode()
        if headers:
            fields[_F_HEADERS] = json.dumps(dict(headers), separators=(",", ":")).encode()
        return fields

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """``XADD`` (with the configured trimming); returns the entry id once Redis
        replied.

        Args:
            topic: the topic (stream ``prefix + topic``).
            body: the payload.
            msg_id: the producer's id, stored as a field; it becomes
                :attr:`Message.key`. Redis 7 does not deduplicate it.
            headers: string headers, stored as a JSON field.

        Raises:
            BrokerUnavailableError: Redis unreachable (a ``ConnectionError``).
            BrokerError: Redis answered with an error.
        """
        key = self.key(topic)
        fields = self._fields(body, msg_id, headers)
        minid = None
        if self.max_age is not None:
            minid = str(int((time.time() - self.max_age) * 1000))
        try:
            entry = await self._client.xadd(
                key,
                fields,
                maxlen=self.max_len,
                minid=minid,
                approximate=True,
            )
        except Exception as exc:
            self._raise(exc, f"publishing to {topic!r}")
        return _s(entry)

    async def subscribe(
        self, topic: str, *, group: str, consumer: str, lease: float = 30.0
    ) -> RedisSubscription:
        """Create the group if needed (``XGROUP CREATE ... MKSTREAM``) and subscribe.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
            ConfigError: a bad argument.
        """
        key = self.key(topic)
        if not isinstance(group, str) or not group:
            raise v.fail("group", "a non-empty str", group)
        if not isinstance(consumer, str) or not consumer:
            raise v.fail("consumer", "a non-empty str", consumer)
        lease_s = v.seconds("lease", lease, allow_zero=False)
        from redis import exceptions as rex

        try:
            await self._client.xgroup_create(
                key, group, id="0" if self.start == "earliest" else "$", mkstream=True
            )
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                self._raise(exc, f"creating group {group!r} on {topic!r}")
        except Exception as exc:
            self._raise(exc, f"creating group {group!r} on {topic!r}")
        features = await self.features()
        interval = self.claim_interval
        if interval is None:
            interval = min(5.0, lease_s / 4)
        return RedisSubscription(self, topic, key, group, consumer, lease_s, interval, features)

    async def request(
        self,
        topic: str,
        body: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the reply wait, part of the protocol
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Publish with ``Reply-To`` naming a private reply stream, then block on it
        (``XREAD BLOCK``) up to ``timeout`` seconds. The reply stream expires after a
        minute.

        Raises:
            RequestTimeoutError: no reply in time.
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        wait = v.seconds("timeout", timeout, allow_zero=False)
        inbox = f"{self.prefix}_reply:{uuid.uuid4().hex}"
        await self.publish(topic, body, headers={**(headers or {}), HEADER_REPLY_TO: inbox})
        try:
            reply = await self._client.xread({inbox: "0"}, count=1, block=max(1, int(wait * 1000)))
        except Exception as exc:
            self._raise(exc, f"waiting for a reply on {topic!r}")
        finally:
            try:
                await self._client.delete(inbox)
            except Exception:
                pass
        if not reply:
            raise RequestTimeoutError(
                f"no reply on {topic!r} within {wait:g} s", transport=self.name
            )
        _stream, entries = reply[0]
        entry_id, fields = entries[0]
        return _decode(inbox, entry_id, fields, 1)

    async def reply(
        self, message: Message, body: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """``XADD`` the reply to the requester's reply stream (expiring in 60 s); a no-op
        when ``message`` has no ``Reply-To``.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        inbox = message.reply_to
        if inbox is None:
            return
        fields = self._fields(body, None, headers)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(inbox, fields)
                pipe.expire(inbox, 60)
                await pipe.execute()
        except Exception as exc:
            self._raise(exc, "replying")

    async def close(self) -> None:
        """Close the client's connections (``aclose``)."""
        await self._client.aclose()


def _decode(topic: str, entry_id: Any, fields: Any, deliveries: int) -> Message:
    eid = _s(entry_id)
    fields = fields or {}
    body = fields.get(_F_BODY, b"")
    msg_id = fields.get(_F_MSG_ID)
    raw_headers = fields.get(_F_HEADERS)
    headers: dict[str, str] = json.loads(raw_headers) if raw_headers else {}
    key = _s(msg_id) if msg_id is not None else eid
    if msg_id is not None:
        headers.setdefault(HEADER_MSG_ID, key)
    try:
        published = int(eid.split("-", 1)[0]) / 1000.0
    except ValueError:
        published = None
    return Message(eid, topic, body, MappingProxyType(headers), key, deliveries, published)


class RedisSubscription:
    """A consumer's place in a Redis consumer group (made by
    :meth:`RedisStreamsTransport.subscribe`). See the module docs for the read order.

    Attributes:
        lease: seconds a fetched entry stays with this consumer before others claim it.
        claim_interval: seconds between claim passes that found nothing.
    """

    def __init__(
        self,
        transport: RedisStreamsTransport,
        topic: str,
        key: str,
        group: str,
        consumer: str,
        lease: float,
        claim_interval: float,
        features: RedisFeatures,
    ) -> None:
        self._t = transport
        self._client: Any = transport._client
        self._clock = transport._clock
        self.topic, self.key, self.group, self.consumer = topic, key, group, consumer
        self.lease = lease
        self.claim_interval = claim_interval
        self._features = features
        self._own_cursor: str | None = "0"
        self._claim_cursor = "0-0"
        self._next_claim = 0.0

    def __repr__(self) -> str:
        return (
            f"RedisSubscription(key={self.key!r}, group={self.group!r}, consumer={self.consumer!r})"
        )

    async def _counts(self, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for eid in ids:
                pipe.xpending_range(self.key, self.group, min=eid, max=eid, count=1)
            replies = await pipe.execute()
        counts: dict[str, int] = {}
        for eid, reply in zip(ids, replies, strict=True):
            if reply:
                counts[eid] = int(reply[0]["times_delivered"])
        return counts

    async def _claimed(self, entries: list[Any]) -> list[Message]:
        live = [(_s(eid), f) for eid, f in entries if f]
        counts = await self._counts([eid for eid, _ in live])
        return [_decode(self.topic, eid, f, counts.get(eid, 1)) for eid, f in live]

    async def _read_own(self, max_messages: int) -> list[Message]:
        assert self._own_cursor is not None
        reply = await self._client.xreadgroup(
            self.group, self.consumer, {self.key: self._own_cursor}, count=max_messages
        )
        entries = reply[0][1] if reply else []
        if not entries:
            self._own_cursor = None
            return []
        self._own_cursor = _s(entries[-1][0])
        gone = [_s(eid) for eid, f in entries if not f]
        if gone:  # deleted (trimmed) while pending: nothing left to deliver
            await self._client.xack(self.key, self.group, *gone)
        # Reading the PEL history counts a new delivery (and resets the idle time).
        return await self._claimed(entries)

    async def _claim(self, max_messages: int) -> list[Message]:
        idle_ms = int(self.lease * 1000)
        if self._features.xautoclaim:
            reply = await self._client.xautoclaim(
                self.key,
                self.group,
                self.consumer,
                idle_ms,
                start_id=self._claim_cursor,
                count=max_messages,
            )
            cursor, entries = _s(reply[0]), reply[1]
        else:  # Redis < 6.2: XPENDING + XCLAIM
            pending = await self._client.xpending_range(
                self.key, self.group, min=self._claim_cursor, max="+", count=max_messages
            )
            idle = [p["message_id"] for p in pending if p["time_since_delivered"] >= idle_ms]
            entries = (
                await self._client.xclaim(self.key, self.group, self.consumer, idle_ms, idle)
                if idle
                else []
            )
            if len(pending) < max_messages:
                cursor = "0-0"
            else:
                last = _s(pending[-1]["message_id"])
                ms, seq = last.split("-")
                cursor = f"{ms}-{int(seq) + 1}"
        self._claim_cursor = cursor
        if cursor == "0-0":
            self._next_claim = self._clock.monotonic() + self.claim_interval
        return await self._claimed(entries)

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        """Own pending (first call), idle claims (when due), then new entries.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        try:
            if self._own_cursor is not None:
                own = await self._read_own(max_messages)
                if own or self._own_cursor is not None:
                    return own
            now = self._clock.monotonic()
            if now >= self._next_claim:
                claimed = await self._claim(max_messages)
                if claimed:
                    return claimed
                now = self._clock.monotonic()
            block_ms = int(min(wait, max(0.0, self._next_claim - now)) * 1000)
            reply = await self._client.xreadgroup(
                self.group,
                self.consumer,
                {self.key: ">"},
                count=max_messages,
                block=block_ms if block_ms > 0 else None,
            )
        except Exception as exc:
            self._t._raise(exc, f"fetching from {self.topic!r}")
        entries = reply[0][1] if reply else []
        return [_decode(self.topic, eid, f, 1) for eid, f in entries]

    async def ack(self, message: Message) -> None:
        """``XACK``.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        try:
            await self._client.xack(self.key, self.group, message.id)
        except Exception as exc:
            self._t._raise(exc, f"acking {message.id} on {self.topic!r}")

    reject = ack

    async def retry(self, message: Message, delay: float) -> None:
        """Set the entry's idle time to ``lease - delay``: claimable after ``delay``
        (capped at ``lease``). A no-op if another consumer owns it by now.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        delay = min(max(delay, 0.0), self.lease)
        idle_ms = int((self.lease - delay) * 1000)
        await self._touch_ids([message.id], idle_ms)
        self._next_claim = min(self._next_claim, self._clock.monotonic() + delay)
        self._claim_cursor = "0-0"

    async def extend(self, messages: Sequence[Message]) -> None:
        """Reset the idle time of entries this consumer still owns.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        if messages:
            await self._touch_ids([m.id for m in messages], 0)

    async def _touch_ids(self, ids: list[str], idle_ms: int) -> None:
        try:
            await self._t._touch(keys=[self.key], args=[self.group, self.consumer, idle_ms, *ids])
        except Exception as exc:
            self._t._raise(exc, f"updating leases on {self.topic!r}")

    async def close(self) -> None:
        """Nothing to release: entries it holds stay pending until claimed."""
        return
