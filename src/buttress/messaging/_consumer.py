"""The consumer: at-least-once handling of one topic in one consumer group, on any
transport."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import _validate as v
from .._backoff import Backoff
from .._clock import Clock, resolve
from .._events import Event, Listener, emit
from .._policy import Policy, next_index
from ..supervise._spec import ready
from ._core import Settlement, on_arrival, on_failure
from ._errors import MessagingError
from ._events import (
    ConsumerFetchFailed,
    ConsumerStopped,
    MessageDeadLettered,
    MessageHandled,
    MessageReleased,
    MessageRetried,
    MessageSettleFailed,
)
from ._message import (
    HEADER_DEAD_LETTER_DELIVERIES,
    HEADER_DEAD_LETTER_ID,
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTER_TOPIC,
    Message,
)
from ._transport import Subscription, Transport

__all__ = ["Consumer", "ConsumerStats", "Handler"]

Handler = Callable[[Message], Awaitable[Any]]
"""``async def handler(message) -> None | bytes``: bytes returned answer a request."""

_DEFAULT_BACKOFF = Backoff.exponential(base=0.5, cap=30.0, jitter="full")
_FETCH_BACKOFF = Backoff.exponential(base=0.1, cap=5.0, jitter="full")


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """A snapshot of a consumer's counters (since it was built).

    Attributes:
        name, topic, group, consumer: who it is.
        running: ``run()`` is active.
        in_flight: messages being handled now.
        received: messages fetched.
        handled: handled and acked.
        retried: given back after a failure (or :class:`Requeue`).
        dead_lettered: given up (copied to the dead-letter topic, or dropped).
        released: given back unfinished by a drain.
        redelivered: received with ``deliveries > 1``.
        fetch_errors: failed fetches (the consumer backed off and went on).
        settle_errors: acks / retries / extensions the broker failed.
    """

    name: str
    topic: str
    group: str
    consumer: str
    running: bool
    in_flight: int
    received: int
    handled: int
    retried: int
    dead_lettered: int
    released: int
    redelivered: int
    fetch_errors: int
    settle_errors: int


class Consumer:
    """Handle every message of ``topic`` at least once, in consumer group ``group``.

    A message is acked only after ``handler`` returned. When the handler raises, the
    message is settled by policy: given back for another delivery after a capped,
    jittered backoff (or the delay of a :class:`Requeue`), or, on its
    ``max_deliveries``-th delivery (or on :class:`Reject`), copied to the dead-letter
    topic and removed. Delivery counts come from the broker, so deliveries that crashed
    the process count too: a message that arrives with more than ``max_deliveries``
    deliveries is dead-lettered without running the handler again.

    While a handler runs, its lease is renewed every ``lease / 3`` seconds, so a slow
    handler is not redelivered to a second consumer. At most ``concurrency`` handlers
    run at once. :meth:`stop` (or cancelling :meth:`run`) drains: fetching stops,
    running handlers get ``drain_timeout`` seconds to finish, then are cancelled and
    their messages given back, never acked.

    Args:
        transport: a :class:`Transport` (``MemoryTransport``, ``RedisStreamsTransport``,
            ``NatsTransport``).
        topic: the topic to consume.
        handler: ``async def handler(message: Message)``. If the message is a request
            (has ``Reply-To``) and the handler returns ``bytes``, they are sent as the
            reply before the ack.
        group: the consumer group: consumers of one group share the work (a work
            queue); each group gets every message (fan-out). Default ``"default"``.
        consumer: this consumer's name within the group. Keep it stable across restarts
            of the same worker (the Redis transport re-reads its own pending entries at
            once); default ``"<hostname>-<pid>"``.
        concurrency: the most handlers running at once (``>= 1``). Default 1.
        prefetch: the most messages fetched in one call (``>= 1``); ``None`` (default)
            uses ``concurrency``. Never more than the free handler slots.
        policy: a buttress policy or ``bt.pipeline(...)`` wrapping every handler call
            (timeout, breaker, rate limit, retry...). Default ``None``.
        max_deliveries: deliveries before giving up (``>= 1``); ``None`` retries for
            ever. Default 5.
        backoff: the delay before redelivering a failed message, from its delivery count
            (``backoff.compute(deliveries, ...)``). Default
            ``Backoff.exponential(base=0.5, cap=30, jitter="full")``.
        dead_letter: the topic given-up messages are copied to, ``{topic}`` replaced by
            the topic; ``None`` drops them. The copy keeps body, headers and key (as
            ``msg_id``) and adds ``Dead-Letter-*`` headers. Default ``"{topic}.dlq"``.
        lease: seconds a fetched message is reserved for this consumer before the broker
            may deliver it elsewhere (Redis claim idle time; JetStream ``ack_wait``).
            Default 30.
        fetch_wait: the longest a fetch waits for messages, seconds (``> 0``). Default 1.
        drain_timeout: seconds running handlers get to finish on stop. Default 10.
        name: for events and stats. Default ``"consumer-N"``.
        clock: time source (``FakeClock`` in tests). Default: the system clock.
        random: a ``random.Random`` for backoff jitter. Default: a fresh one.
        listeners: event listeners (see :mod:`buttress.events`).

    Raises:
        ConfigError: a bad option (named in the message).

    Example::

        async def handle(msg: Message) -> None:
            await charge(json.loads(msg.body))

        consumer = Consumer(transport, "orders", handle, group="billing",
                            concurrency=8, policy=bt.pipeline(bt.Timeout(5.0)))
        async with bt.Supervisor([consumer.child_spec()]):
            await serve()
    """

    def __init__(
        self,
        transport: Transport,
        topic: str,
        handler: Handler,
        *,
        group: str = "default",
        consumer: str | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        policy: Policy | None = None,
        max_deliveries: int | None = 5,
        backoff: Backoff = _DEFAULT_BACKOFF,
        dead_letter: str | None = "{topic}.dlq",
        lease: float = 30.0,
        fetch_wait: float = 1.0,
        drain_timeout: float = 10.0,
        name: str | None = None,
        clock: Clock | None = None,
        random: Any = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        for method in ("publish", "subscribe"):
            if not callable(getattr(transport, method, None)):
                raise v.fail("transport", "a Transport (publish, subscribe, ...)", transport)
        if not isinstance(topic, str) or not topic:
            raise v.fail("topic", "a non-empty str", topic)
        if not callable(handler):
            raise v.fail("handler", "an async callable taking a Message", handler)
        if not isinstance(group, str) or not group:
            raise v.fail("group", "a non-empty str", group)
        if consumer is None:
            consumer = f"{socket.gethostname()}-{os.getpid()}"
        elif not isinstance(consumer, str) or not consumer:
            raise v.fail("consumer", "a non-empty str or None", consumer)
        if policy is not None and not callable(getattr(policy, "call", None)):
            raise v.fail("policy", "a buttress policy or pipeline, or None", policy)
        if not isinstance(backoff, Backoff):
            raise v.fail("backoff", "a bt.Backoff", backoff)
        if dead_letter is not None:
            if not isinstance(dead_letter, str) or not dead_letter:
                raise v.fail("dead_letter", "a non-empty str or None", dead_letter)
            dead_letter = dead_letter.replace("{topic}", topic)
            if dead_letter == topic:
                raise v.fail("dead_letter", "a topic other than the consumed one", dead_letter)
        self.transport = transport
        self.topic = topic
        self.handler = handler
        self.group = group
        self.consumer = consumer
        self.concurrency = v.integer("concurrency", concurrency, minimum=1)
        self.prefetch = (
            self.concurrency if prefetch is None else v.integer("prefetch", prefetch, minimum=1)
        )
        self.policy = policy
        self.max_deliveries = (
            None
            if max_deliveries is None
            else v.integer("max_deliveries", max_deliveries, minimum=1)
        )
        self.backoff = backoff
        self.dead_letter = dead_letter
        self.lease = v.seconds("lease", lease, allow_zero=False)
        self.fetch_wait = v.seconds("fetch_wait", fetch_wait, allow_zero=False)
        self.drain_timeout = v.seconds("drain_timeout", drain_timeout, allow_inf=True)
        self.name = v.name_of(name, "consumer", lambda: next_index("consumer"))
        self._clock = resolve(clock)
        self._rng = v.rng(random)
        self._listeners = v.listeners(listeners)
        self._inflight: dict[asyncio.Task[None], Message] = {}
        self._stopping = False
        self._running = False
        self._fetch_task: asyncio.Task[list[Message]] | None = None
        self._slot: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._draining = False
        self._counts = dict.fromkeys(
            (
                "received",
                "handled",
                "retried",
                "dead_lettered",
                "released",
                "redelivered",
                "fetch_errors",
                "settle_errors",
            ),
            0,
        )

    def __repr__(self) -> str:
        return (
            f"Consumer(name={self.name!r}, topic={self.topic!r}, group={self.group!r}, "
            f"concurrency={self.concurrency})"
        )

    # -- observability ------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Receive this consumer's events.

        Raises:
            ConfigError: ``listener`` is not callable.
        """
        self._listeners = (*self._listeners, *v.listeners([listener]))

    def _emit(self, event: Event) -> None:
        emit(self._listeners, event)

    def stats(self) -> ConsumerStats:
        """A snapshot of the counters (see :class:`ConsumerStats`).

        Example::

            print(consumer.stats().handled)
        """
        c = self._counts
        return ConsumerStats(
            self.name,
            self.topic,
            self.group,
            self.consumer,
            self._running,
            len(self._inflight),
            c["received"],
            c["handled"],
            c["retried"],
            c["dead_lettered"],
            c["released"],
            c["redelivered"],
            c["fetch_errors"],
            c["settle_errors"],
        )

    # -- running ------------------------------------------------------------------------

    def child_spec(self, id: str | None = None, *, shutdown: float | None = None) -> Any:
        """A :class:`~buttress.supervise.ChildSpec` running this consumer under a
        supervisor (permanent, with a readiness handshake once subscribed, and a
        ``shutdown`` of ``drain_timeout + 5`` seconds by default so the drain fits).

        Example::

            async with bt.Supervisor([consumer.child_spec("billing")]):
                ...
        """
        from ..supervise import ChildSpec

        return ChildSpec(
            id or self.name,
            self.run,
            handshake=True,
            shutdown=self.drain_timeout + 5.0 if shutdown is None else shutdown,
        )

    async def run(self) -> None:
        """Subscribe and handle messages until :meth:`stop` is called or the task is
        cancelled; either way, drain before returning (or re-raising the cancellation).

        Signals :func:`buttress.supervise.ready` once subscribed. Fetch failures (broker
        down) are retried with backoff and reported (:class:`ConsumerFetchFailed`);
        they never end ``run``.

        Raises:
            MessagingError: the subscription itself failed (the group could not be
                created, the broker is unreachable at start).
            RuntimeError: the consumer is already running.
        """
        if self._running:
            raise RuntimeError(f"consumer {self.name!r} is already running")
        self._running = True
        self._stopping = False
        self._draining = False
        self._slot = asyncio.Event()
        self._done = asyncio.Event()
        reason = "stopped"
        sub: Subscription | None = None
        keeper: asyncio.Task[None] | None = None
        try:
            sub = await self.transport.subscribe(
                self.topic, group=self.group, consumer=self.consumer, lease=self.lease
            )
            ready()
            keeper = asyncio.create_task(self._keep_leases(sub))
            await self._loop(sub)
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            released = 0
            if sub is not None:
                released = await self._drain(sub)
                await sub.close()
            if keeper is not None:
                keeper.cancel()
                try:
                    await keeper
                except asyncio.CancelledError:
                    pass
            self._running = False
            self._done.set()
            self._emit(ConsumerStopped(self.name, self.topic, reason, released))

    async def stop(self) -> None:
        """Stop fetching, drain (see the class docs) and return once ``run`` ended.
        A no-op when not running.

        Example::

            task = asyncio.create_task(consumer.run())
            ...
            await consumer.stop()
        """
        if not self._running:
            return
        self._stopping = True
        if self._fetch_task is not None:
            self._fetch_task.cancel()
        if self._slot is not None:
            self._slot.set()
        if self._done is not None:
            await self._done.wait()

    async def _loop(self, sub: Subscription) -> None:
        failures = 0
        assert self._slot is not None
        while not self._stopping:
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            fetch = self._fetch_task = asyncio.create_task(
                sub.fetch(min(free, self.prefetch), self.fetch_wait)
            )
            try:
                messages = await fetch
            except asyncio.CancelledError:
                if self._stopping and fetch.cancelled():
                    current = asyncio.current_task()
                    if current is None or not current.cancelling():
                        break
                fetch.cancel()
                raise
            except MessagingError as exc:
                failures += 1
                self._counts["fetch_errors"] += 1
                delay = _FETCH_BACKOFF.compute(failures, 0.0, self._rng)
                self._emit(ConsumerFetchFailed(self.name, self.topic, exc, delay))
                await self._clock.sleep(delay)
                continue
            finally:
                self._fetch_task = None
            failures = 0
            for message in messages:
                self._counts["received"] += 1
                if message.deliveries > 1:
                    self._counts["redelivered"] += 1
                task = asyncio.create_task(self._handle(sub, message))
                self._inflight[task] = message
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if self._slot is not None:
            self._slot.set()

    async def _keep_leases(self, sub: Subscription) -> None:
        every = sub.lease / 3
        while True:
            await self._clock.sleep(every)
            held = list(self._inflight.values())
            if held:
                try:
                    await sub.extend(held)
                except MessagingError as exc:
                    self._counts["settle_errors"] += 1
                    self._emit(MessageSettleFailed(self.name, self.topic, "", "extend", exc))

    async def _drain(self, sub: Subscription) -> int:
        self._stopping = True
        self._draining = True
        tasks = list(self._inflight)
        if not tasks:
            return 0
        _done, pending = await asyncio.wait(tasks, timeout=self.drain_timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    # -- one message --------------------------------------------------------------------

    async def _handle(self, sub: Subscription, message: Message) -> None:
        early = on_arrival(message.deliveries, self.max_deliveries)
        if early is not None:
            await self._settle(sub, message, early, None)
            return
        started = self._clock.monotonic()
        try:
            if self.policy is not None:
                result = await self.policy.call(self.handler, message)
            else:
                result = await self.handler(message)
        except asyncio.CancelledError:
            if self._draining:
                await self._release(sub, message)
                return
            raise
        except Exception as exc:
            decision = on_failure(
                message.deliveries,
                exc,
                max_deliveries=self.max_deliveries,
                backoff=self.backoff,
                rng=self._rng,
                max_delay=sub.lease,
            )
            await self._settle(sub, message, decision, exc)
            return
        try:
            if isinstance(result, bytes) and message.reply_to is not None:
                await self.transport.reply(message, result)
            await sub.ack(message)
        except MessagingError as exc:
            self._settle_failed(message, "ack", exc)
            return
        self._counts["handled"] += 1
        self._emit(
            MessageHandled(
                self.name,
                self.topic,
                message.id,
                message.key,
                message.deliveries,
                self._clock.monotonic() - started,
            )
        )

    def _settle_failed(self, message: Message, action: str, exc: BaseException) -> None:
        self._counts["settle_errors"] += 1
        self._emit(MessageSettleFailed(self.name, self.topic, message.id, action, exc))

    async def _release(self, sub: Subscription, message: Message) -> None:
        self._counts["released"] += 1
        try:
            await sub.retry(message, 0.0)
        except MessagingError as exc:
            self._settle_failed(message, "release", exc)
        self._emit(
            MessageReleased(self.name, self.topic, message.id, message.key, message.deliveries)
        )

    async def _settle(
        self,
        sub: Subscription,
        message: Message,
        decision: Settlement,
        exc: BaseException | None,
    ) -> None:
        if decision.action == "retry":
            try:
                await sub.retry(message, decision.delay)
            except MessagingError as err:
                self._settle_failed(message, "retry", err)
                return
            self._counts["retried"] += 1
            self._emit(
                MessageRetried(
                    self.name,
                    self.topic,
                    message.id,
                    message.key,
                    message.deliveries,
                    decision.delay,
                    exc,
                )
            )
            return
        try:
            if self.dead_letter is not None:
                headers = {
                    **message.headers,
                    HEADER_DEAD_LETTER_TOPIC: message.topic,
                    HEADER_DEAD_LETTER_ID: message.id,
                    HEADER_DEAD_LETTER_DELIVERIES: str(message.deliveries),
                    HEADER_DEAD_LETTER_REASON: decision.reason,
                }
                await self.transport.publish(
                    self.dead_letter, message.body, msg_id=message.key, headers=headers
                )
            await sub.reject(message)
        except MessagingError as err:
            self._settle_failed(message, "dead_letter", err)
            return
        self._counts["dead_lettered"] += 1
        self._emit(
            MessageDeadLettered(
                self.name,
                self.topic,
                message.id,
                message.key,
                message.deliveries,
                decision.reason,
                self.dead_letter,
                exc,
            )
        )
