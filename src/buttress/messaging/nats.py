"""The NATS JetStream transport (nats-py; ``pip install 'buttress[nats]'``).

A topic is a subject; each topic gets a stream of its own (created on first use unless
``auto_create=False``), named ``stream_prefix`` + the topic with non-name characters
replaced + a short hash. A consumer group is a durable pull consumer of that stream
with explicit acks: consumers sharing a group share the work, each group gets every
message (fan-out).

* ``publish`` sends with ``Nats-Msg-Id`` (JetStream drops a duplicate id within the
  stream's ``duplicate_window``) and returns the stream sequence once the PubAck came
  back. Publishes are pipelined: many callers publishing at once have up to
  ``max_pending_acks`` messages in flight, each awaiting its own PubAck.
* ``fetch`` is a batched pull; ``ack`` / ``retry`` (``nak`` with delay) / ``reject``
  (``term``) / ``extend`` (``in_progress``) map one to one; delivery counts are
  ``num_delivered``.
* request-reply uses a core NATS inbox named in the ``Reply-To`` header.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NoReturn

from .. import _validate as v
from ._errors import BrokerError, BrokerUnavailableError, RequestTimeoutError
from ._message import HEADER_MSG_ID, HEADER_REPLY_TO, Message

__all__ = ["NatsSubscription", "NatsTransport"]

_names = itertools.count(1)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class NatsTransport:
    """NATS JetStream under the consumer: durable pull consumers, explicit ack / nak
    with delay / term / in-progress, ``Nats-Msg-Id`` publish dedup, batched fetch,
    pipelined publishes with a bound on unacknowledged ones.

    Args:
        nc: a connected ``nats.aio.client.Client`` (see :meth:`connect`).
        stream_prefix: prefix of the stream names this transport creates. Default
            ``"BUTTRESS_"``.
        auto_create: create a topic's stream on first publish / subscribe (file
            storage, limits retention). Default ``True``; with ``False`` streams must
            exist and cover the topics.
        max_age: stream retention in seconds; ``None`` (default) keeps messages
            until ``max_msgs``.
        max_msgs: stream retention in messages; ``None`` (default) no limit.
        duplicate_window: seconds during which JetStream drops a repeated
            ``Nats-Msg-Id``. Default 120 (the server's default).
        max_pending_acks: the most publishes in flight awaiting their PubAck
            (``>= 1``). Default 1024.
        ack_timeout: seconds to wait for a PubAck before failing. Default 5.
        name: the transport's name in errors. Default ``"nats-N"``.

    Errors: unreachable / closed connection and PubAck timeouts raise
    :class:`BrokerUnavailableError` (a builtin ``ConnectionError``); anything else the
    server refused raises :class:`BrokerError`.

    Raises:
        ConfigError: a bad option.

    Example::

        transport = await NatsTransport.connect("nats://127.0.0.1:4222")
        await transport.publish("orders", body, msg_id=order_id)
    """

    def __init__(
        self,
        nc: Any,
        *,
        stream_prefix: str = "BUTTRESS_",
        auto_create: bool = True,
        max_age: float | None = None,
        max_msgs: int | None = None,
        duplicate_window: float = 120.0,
        max_pending_acks: int = 1024,
        ack_timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        if not callable(getattr(nc, "jetstream", None)):
            raise v.fail("nc", "a nats.aio.client.Client", nc)
        if not isinstance(stream_prefix, str) or _NAME_CHARS.search(stream_prefix):
            raise v.fail("stream_prefix", "a str of letters, digits, '_' and '-'", stream_prefix)
        self._nc = nc
        self.stream_prefix = stream_prefix
        self.auto_create = bool(auto_create)
        self.max_age = v.optional_seconds("max_age", max_age, allow_zero=False)
        self.max_msgs = None if max_msgs is None else v.integer("max_msgs", max_msgs, minimum=1)
        self.duplicate_window = v.seconds("duplicate_window", duplicate_window, allow_zero=False)
        self.max_pending_acks = v.integer("max_pending_acks", max_pending_acks, minimum=1)
        self.ack_timeout = v.seconds("ack_timeout", ack_timeout, allow_zero=False)
        self.name = v.name_of(name, "nats", lambda: next(_names))
        self._js: Any = None
        self._streams: dict[str, str] = {}
        self._owns_connection = False

    @classmethod
    async def connect(cls, servers: str | list[str], **options: Any) -> NatsTransport:
        """Connect to NATS (``nats.connect(servers)``) and build a transport that
        closes the connection in :meth:`close`. ``options`` go to the constructor.
        The first connection fails fast; after it, the client reconnects for ever.

        Raises:
            BrokerUnavailableError: no server could be reached.
        """
        import nats

        try:
            # Fail fast when nothing answers at first; once connected, reconnect for
            # ever (nats-py reads these options at each reconnect).
            nc = await nats.connect(
                servers, max_reconnect_attempts=1, reconnect_time_wait=0.5, connect_timeout=2
            )
        except Exception as exc:
            raise BrokerUnavailableError(f"cannot connect to NATS: {exc!r}") from exc
        nc.options["max_reconnect_attempts"] = -1
        transport = cls(nc, **options)
        transport._owns_connection = True
        return transport

    def __repr__(self) -> str:
        return f"NatsTransport(name={self.name!r})"

    @property
    def js(self) -> Any:
        """The JetStream context (created on first use)."""
        if self._js is None:
            self._js = self._nc.jetstream(publish_async_max_pending=self.max_pending_acks)
        return self._js

    def stream_name(self, topic: str) -> str:
        """The name of the stream that holds ``topic``."""
        if not isinstance(topic, str) or not topic or " " in topic:
            raise v.fail("topic", "a non-empty NATS subject (no spaces)", topic)
        digest = hashlib.blake2s(topic.encode(), digest_size=4).hexdigest()
        return f"{self.stream_prefix}{_NAME_CHARS.sub('_', topic)[:64]}_{digest}"

    def _raise(self, exc: BaseException, doing: str) -> NoReturn:
        import nats.errors as ne
        import nats.js.errors as jse

        unavailable = (
            ne.ConnectionClosedError,
            ne.NoServersError,
            ne.StaleConnectionError,
            ne.ConnectionReconnectingError,
            ne.TimeoutError,
            asyncio.TimeoutError,
            OSError,
        )
        if isinstance(exc, unavailable) and not isinstance(exc, jse.APIError):
            raise BrokerUnavailableError(
                f"{doing}: NATS unavailable: {exc!r}", transport=self.name
            ) from exc
        raise BrokerError(f"{doing}: {exc!r}", transport=self.name) from exc

    async def ensure_stream(self, topic: str) -> str:
        """Create the stream of ``topic`` if it does not exist; return its name.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        stream = self._streams.get(topic)
        if stream is not None:
            return stream
        stream = self.stream_name(topic)
        if self.auto_create:
            from nats.js.api import StreamConfig

            config = StreamConfig(
                name=stream,
                subjects=[topic],
                max_age=self.max_age,
                max_msgs=self.max_msgs if self.max_msgs is not None else -1,
                duplicate_window=self.duplicate_window,
            )
            try:
                await self.js.add_stream(config)
            except Exception as exc:
                self._raise(exc, f"creating stream {stream!r}")
        self._streams[topic] = stream
        return stream

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Publish to JetStream and return the stream sequence once the PubAck came.

        Args:
            topic: the subject.
            body: the payload.
            msg_id: sent as ``Nats-Msg-Id`` (and ``Msg-Id``): JetStream drops a repeat
                within ``duplicate_window`` (the PubAck then says duplicate and the
                original sequence is returned).
            headers: string headers.

        Raises:
            BrokerUnavailableError: not connected, or no PubAck within ``ack_timeout``.
            BrokerError: the server refused (e.g. no stream for the subject).
        """
        if not isinstance(body, bytes | bytearray | memoryview):
            raise v.fail("body", "bytes", body)
        await self.ensure_stream(topic)
        hdrs = dict(headers or {})
        if msg_id is not None:
            hdrs[HEADER_MSG_ID] = msg_id
            hdrs["Nats-Msg-Id"] = msg_id
        try:
            future = await self.js.publish_async(
                topic, bytes(body), wait_stall=self.ack_timeout, headers=hdrs or None
            )
            ack = await asyncio.wait_for(future, self.ack_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._raise(exc, f"publishing to {topic!r}")
        return str(ack.seq)

    async def subscribe(
        self, topic: str, *, group: str, consumer: str, lease: float = 30.0
    ) -> NatsSubscription:
        """Bind to (creating if needed) the durable pull consumer ``group`` with
        ``ack_wait = lease``, explicit acks and unlimited deliveries (the buttress
        consumer decides when to give up). ``consumer`` names nothing on the server.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
            ConfigError: a bad argument.
        """
        if not isinstance(group, str) or not group or _NAME_CHARS.search(group):
            raise v.fail("group", "a non-empty str of letters, digits, '_' and '-'", group)
        lease_s = v.seconds("lease", lease, allow_zero=False)
        stream = await self.ensure_stream(topic)
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            durable_name=group,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=lease_s,
            max_deliver=-1,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=-1,
        )
        try:
            psub = await self.js.pull_subscribe(topic, durable=group, stream=stream, config=config)
        except Exception as exc:
            self._raise(exc, f"subscribing {group!r} to {topic!r}")
        return NatsSubscription(self, topic, psub, lease_s)

    async def request(
        self,
        topic: str,
        body: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 - the reply wait, part of the protocol
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Publish (through JetStream, so the request is durable) with ``Reply-To``
        naming a fresh core NATS inbox, and wait up to ``timeout`` for the reply.

        Raises:
            RequestTimeoutError: no reply in time.
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        wait = v.seconds("timeout", timeout, allow_zero=False)
        inbox = self._nc.new_inbox()
        try:
            sub = await self._nc.subscribe(inbox, max_msgs=1)
        except Exception as exc:
            self._raise(exc, "opening a reply inbox")
        try:
            await self.publish(topic, body, headers={**(headers or {}), HEADER_REPLY_TO: inbox})
            try:
                raw = await sub.next_msg(timeout=wait)
            except Exception as exc:
                import nats.errors as ne

                if isinstance(exc, ne.TimeoutError):
                    raise RequestTimeoutError(
                        f"no reply on {topic!r} within {wait:g} s", transport=self.name
                    ) from None
                self._raise(exc, f"waiting for a reply on {topic!r}")
        finally:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        return Message("0", inbox, bytes(raw.data), MappingProxyType(dict(raw.headers or {})))

    async def reply(
        self, message: Message, body: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish the reply on the requester's inbox (core NATS, fire and forget); a
        no-op when ``message`` has no ``Reply-To``.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        if message.reply_to is None:
            return
        try:
            await self._nc.publish(message.reply_to, bytes(body), headers=dict(headers or {}))
        except Exception as exc:
            self._raise(exc, "replying")

    async def close(self) -> None:
        """Wait for in-flight PubAcks briefly, then close the connection if
        :meth:`connect` opened it."""
        if self._js is not None:
            try:
                await asyncio.wait_for(self._js.publish_async_completed(), self.ack_timeout)
            except (TimeoutError, Exception):
                pass
        if self._owns_connection and not self._nc.is_closed:
            try:
                await self._nc.close()
            except Exception:  # the server is gone: nothing left to flush
                pass


class NatsSubscription:
    """A bound durable pull consumer (made by :meth:`NatsTransport.subscribe`).

    Attributes:
        lease: the consumer's ``ack_wait``, seconds.
    """

    def __init__(self, transport: NatsTransport, topic: str, psub: Any, lease: float) -> None:
        self._t = transport
        self.topic = topic
        self._psub = psub
        self.lease = lease
        self._raw: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"NatsSubscription(topic={self.topic!r})"

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        """A batched pull of up to ``max_messages``, waiting up to ``wait`` seconds.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        import nats.errors as ne

        try:
            raws = await self._psub.fetch(max_messages, timeout=max(wait, 0.001))
        except ne.TimeoutError:
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._t._raise(exc, f"fetching from {self.topic!r}")
        out: list[Message] = []
        for raw in raws:
            meta = raw.metadata
            seq = str(meta.sequence.stream)
            headers = dict(raw.headers or {})
            key = headers.get(HEADER_MSG_ID) or headers.get("Nats-Msg-Id") or seq
            self._raw[seq] = raw
            out.append(
                Message(
                    seq,
                    self.topic,
                    bytes(raw.data),
                    MappingProxyType(headers),
                    key,
                    int(meta.num_delivered),
                    meta.timestamp.timestamp() if meta.timestamp else None,
                )
            )
        return out

    async def _settle(self, message: Message, action: str, *args: Any) -> None:
        raw = self._raw.pop(message.id, None)
        if raw is None:
            return
        try:
            await getattr(raw, action)(*args)
        except Exception as exc:
            self._t._raise(exc, f"{action} of {message.id} on {self.topic!r}")

    async def ack(self, message: Message) -> None:
        """``+ACK``.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        await self._settle(message, "ack")

    async def retry(self, message: Message, delay: float) -> None:
        """``-NAK`` with ``delay``: redelivered after it.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        await self._settle(message, "nak", delay if delay > 0 else None)

    async def reject(self, message: Message) -> None:
        """``+TERM``: never redelivered.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        await self._settle(message, "term")

    async def extend(self, messages: Sequence[Message]) -> None:
        """``+WPI`` (in progress) for each: resets their ``ack_wait``.

        Raises:
            BrokerUnavailableError, BrokerError: the broker failed.
        """
        for message in messages:
            raw = self._raw.get(message.id)
            if raw is not None:
                try:
                    await raw.in_progress()
                except Exception as exc:
                    self._t._raise(exc, f"extending {message.id} on {self.topic!r}")

    async def close(self) -> None:
        """Unsubscribe the pull subscription (the durable consumer stays)."""
        try:
            await self._psub.unsubscribe()
        except Exception:
            pass
