"""The exceptions buttress raises.

Every error of ours subclasses :class:`ButtressError`. The tree::

    Exception
    └── ButtressError
        ├── ConfigError                 (also a ValueError) bad option or argument
        ├── RejectedError               a policy refused the call before running it
        │   ├── CircuitOpenError        the breaker is open or out of probe permits
        │   ├── BulkheadFullError       no slot and no room (or time) in the queue
        │   ├── RateLimitedError        a rate limit said no
        │   ├── OverloadedError         an adaptive limit is shedding load
        │   ├── NoHealthyEndpointError  a balancer has no endpoint to send to
        │   ├── InboxBusyError          another consumer holds this message's inbox claim
        │   └── ForwardBufferFullError  store-and-forward buffer full (policy "reject")
        ├── TimeoutError                (also the builtin TimeoutError) a Timeout fired
        │   └── DeadlineExceededError   the enclosing ``bt.deadline`` ran out
        ├── StoreError                  a shared store failed (Redis down, garbage reply)
        ├── MessagingError              something went wrong talking to a broker
        │   ├── BrokerError             the broker refused or failed an operation
        │   │   └── BrokerUnavailableError  (also a ConnectionError) unreachable or no answer
        │   └── RequestTimeoutError     (also a TimeoutError) no reply in time
        ├── CacheError                  a cache could not do what was asked (write after close)
        │   └── CacheWriteError         writing to the backing store failed
        ├── HashingError                a placement could not answer (buttress.hashing)
        │   ├── NoNodesError            (also a LookupError) a lookup on an empty placement
        │   ├── UnknownNodeError        (also a KeyError) remove() of a node it does not hold
        │   └── UnsupportedOperationError  the algorithm cannot do that (JumpHash removal)
        └── SupervisorError             a supervisor could not do what was asked
            ├── ChildStartError         a child failed before it signalled readiness
            └── SupervisorGaveUpError   restart intensity exceeded; every child stopped

The supervisor errors live in :mod:`buttress.supervise` and are re-exported from
``buttress``.

Rejections carry ``retry_after`` (seconds, or ``None`` when unknown), so an outer
:class:`~buttress.Retry` can honour it. When a retry gives up, the last *original*
exception is raised; buttress never wraps it.
"""

from __future__ import annotations

import builtins
from typing import Self

__all__ = [
    "BulkheadFullError",
    "ButtressError",
    "CircuitOpenError",
    "ConfigError",
    "DeadlineExceededError",
    "OverloadedError",
    "RateLimitedError",
    "RejectedError",
    "StoreError",
    "TimeoutError",
]


class ButtressError(Exception):
    """Base class of every exception raised by buttress itself.

    Example::

        try:
            await policy.call(fetch)
        except bt.ButtressError:
            ...  # a rejection, a timeout or a store failure, never the callee's own error
    """


class ConfigError(ButtressError, ValueError):
    """An option or argument is invalid; the message names it, its value and what is allowed.

    Raised at construction, never later: ``bt.Retry(attempts=0, on=OSError)`` raises
    ``ConfigError("attempts must be an int >= 1, got 0")``.
    """


class RejectedError(ButtressError):
    """A policy refused to run the call; nothing was sent.

    Attributes:
        retry_after: seconds after which a new attempt may succeed, or ``None`` when unknown.
        policy: the ``name`` of the policy that rejected the call.

    Example::

        except bt.RejectedError as exc:
            response.headers["Retry-After"] = str(math.ceil(exc.retry_after or 1))
    """

    _template: tuple[str, tuple[object, ...]] | None = None

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, policy: str = ""
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.policy = policy

    @classmethod
    def _lazy(
        cls, policy: str, retry_after: float | None, template: str, values: tuple[object, ...]
    ) -> Self:
        """Build a rejection for a hot path: no ``__init__``, message formatted on demand.

        During an outage rejections come at the full request rate, and most are never
        printed; formatting ``template % values`` eagerly would double their cost.
        """
        exc = cls.__new__(cls)
        exc.retry_after = retry_after
        exc.policy = policy
        exc._template = (template, values)
        return exc

    def __str__(self) -> str:
        if self._template is not None:
            template, values = self._template
            return template % values
        return super().__str__()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only state must survive pickling (multiprocessing, task queues).
        return (_rebuild_rejected, (type(self), str(self), self.retry_after, self.policy))


def _rebuild_rejected(
    cls: type[RejectedError], message: str, retry_after: float | None, policy: str
) -> RejectedError:
    return cls(message, retry_after=retry_after, policy=policy)


class CircuitOpenError(RejectedError):
    """The circuit breaker is open (or half-open with every probe permit taken).

    ``retry_after`` is the time until the breaker lets a probe through, when known.
    """


class BulkheadFullError(RejectedError):
    """The bulkhead had no free slot and its queue was full or the wait ran out."""


class RateLimitedError(RejectedError):
    """A rate limiter refused the call; ``retry_after`` says when one unit frees up."""


class OverloadedError(RejectedError):
    """An adaptive concurrency limit or throttle shed the call to protect the service."""


class TimeoutError(ButtressError, builtins.TimeoutError):  # shadows the builtin on purpose
    """A :class:`~buttress.Timeout` fired, or an operation found no time left.

    Also a subclass of the builtin :class:`TimeoutError` (and so of ``asyncio.TimeoutError``),
    so existing ``except TimeoutError`` handlers keep working.

    Attributes:
        timeout: the budget in seconds that ran out (after clamping to any deadline).
    """

    def __init__(self, message: str = "", *, timeout: float | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout

    def __str__(self) -> str:
        # OSError formats (errno, strerror) specially; keep our message plain.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_timeout, (type(self), str(self), self.timeout))


def _rebuild_timeout(cls: type[TimeoutError], message: str, timeout: float | None) -> TimeoutError:
    return cls(message, timeout=timeout)


class DeadlineExceededError(TimeoutError):
    """The enclosing :func:`~buttress.deadline` has no time left for this operation.

    Retries never retry it: there is no budget left to spend.
    """


class StoreError(ButtressError):
    """A shared-state store failed (connection lost, timeout, unexpected reply).

    Patterns backed by a store turn this into a decision through ``on_store_error``;
    it reaches the caller only where that policy says so.
    """
