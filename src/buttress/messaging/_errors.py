"""The errors of the messaging layer, under :class:`~buttress.ButtressError`::

ButtressError
└── MessagingError                  something went wrong talking to a broker
    ├── BrokerError                 the broker refused or failed an operation
    │   └── BrokerUnavailableError  (also the builtin ConnectionError) the broker
    │                               cannot be reached or did not answer in time
    └── RequestTimeoutError         (also the builtin TimeoutError) no reply in time

Handlers steer settlement by raising :class:`Requeue` (retry, optionally after a given
delay) or :class:`Reject` (give up now: dead-letter); these are signals, not errors, and
never escape the consumer.
"""

from __future__ import annotations

import builtins

from .._errors import ButtressError

__all__ = [
    "BrokerError",
    "BrokerUnavailableError",
    "MessagingError",
    "Reject",
    "RequestTimeoutError",
    "Requeue",
]


class MessagingError(ButtressError):
    """Base of the messaging errors; ``transport`` is the transport's ``name``.

    Example::

        try:
            await transport.publish("orders", body)
        except bt.MessagingError:
            ...  # the broker said no, was unreachable, or a request got no reply
    """

    def __init__(self, message: str = "", *, transport: str = "") -> None:
        super().__init__(message)
        self.transport = transport

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), self.transport))


def _rebuild(cls: type[MessagingError], message: str, transport: str) -> MessagingError:
    return cls(message, transport=transport)


class BrokerError(MessagingError):
    """The broker failed or refused an operation (publish not confirmed, a bad reply,
    a missing stream). The client library's exception is the ``__cause__``.

    Example::

        try:
            await transport.publish("orders", body)
        except bt.BrokerError:
            await outbox.keep(body)   # not confirmed: keep it and try later
    """


class BrokerUnavailableError(BrokerError, builtins.ConnectionError):
    """The broker could not be reached, dropped the connection or did not answer in
    time. Also a builtin :class:`ConnectionError`, so ``bt.Retry(on=ConnectionError)``
    and code that already catches connection errors handle it.

    Example::

        publish = bt.Retry(attempts=5, on=ConnectionError).call
        await publish(transport.publish, "orders", body, msg_id=order_id)
    """


class RequestTimeoutError(MessagingError, builtins.TimeoutError):
    """``transport.request`` got no reply within its ``timeout``. Also a builtin
    :class:`TimeoutError`.

    Example::

        try:
            reply = await transport.request("prices", b"AAPL", timeout=0.5)
        except TimeoutError:
            reply = None
    """


class Requeue(Exception):
    """Raise from a handler to give the message back for another delivery.

    Args:
        delay: seconds before it is delivered again; ``None`` (default) uses the
            consumer's ``backoff``, ``0`` retries as soon as possible. Transports cap it
            (Redis: at the consumer's ``lease``; see docs/messaging.md).

    It counts as a delivery: after ``max_deliveries`` the message is dead-lettered.

    Example::

        async def handle(msg):
            if not await inventory.ready():
                raise Requeue(delay=5.0)
    """

    def __init__(self, delay: float | None = None) -> None:
        super().__init__(delay)
        self.delay = delay


class Reject(Exception):
    """Raise from a handler to give the message up at once: it goes to the consumer's
    dead-letter topic (or is dropped if it has none), whatever its delivery count.

    Args:
        reason: a short text put in the dead-letter ``Dead-Letter-Reason`` header.
            Default ``"rejected"``.

    Example::

        async def handle(msg):
            try:
                order = Order.parse(msg.body)
            except ValueError as exc:
                raise Reject("unparseable") from exc
    """

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
