"""ASGI middleware: deadlines from request headers, rate limits, and load shedding.

* :class:`DeadlineMiddleware` — run each request inside the deadline its caller sent.
* :class:`RateLimitMiddleware` — a RateLimiter in front of the app: 429 with Retry-After
  and the IETF RateLimit fields; key functions :func:`client_address` (proxy-aware,
  spoof-proof), :func:`api_key` and :func:`route`.
* :class:`LoadShedMiddleware` — an AdaptiveLimit (or any policy) in front of the app: 503.
* :class:`IdempotencyMiddleware` — Stripe-style ``Idempotency-Key`` handling: replay,
  409 for concurrent duplicates, 422 for a key reused with other parameters.


Works with any ASGI 3 application (Starlette, FastAPI, Litestar, raw apps) and needs no
dependency beyond the server you already run.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import Any

from .. import _validate as v
from .._clock import Clock, resolve
from .._deadline import DEADLINE_HEADER, deadline, deadline_from_headers
from .._errors import DeadlineExceededError, RejectedError
from .._policy import Policy
from ..adaptive import AdaptiveLimit
from ._asgi_idempotency import IdempotencyMiddleware
from ._asgi_ratelimit import RateLimitMiddleware, api_key, client_address, route

__all__ = [
    "DeadlineMiddleware",
    "IdempotencyMiddleware",
    "LoadShedMiddleware",
    "RateLimitMiddleware",
    "api_key",
    "client_address",
    "route",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY = b"deadline exceeded\n"


class DeadlineMiddleware:
    """Run each HTTP request inside the deadline its caller sent.

    The header (default ``x-request-timeout``, ``grpc-timeout`` format, as written by
    :func:`buttress.deadline_headers`) becomes a :func:`buttress.deadline` around the
    request, so every buttress policy in the handler clamps to it and
    :func:`buttress.deadline_headers` passes what is left to the next service.

    * ``max_seconds`` caps what a caller may ask for and is the budget of requests that
      send no (or a malformed) header; ``None`` (default) means no cap and no deadline
      for such requests.
    * With ``enforce=True`` (default) the handler is cancelled when the budget runs out;
      if it had not started its response, the client gets ``504``. With ``False`` the
      budget is only made visible.
    * When enforcing, a request that arrives with no time left is answered ``504`` at once
      without calling the application (``reject_expired=True``, the default).

    Args:
        app: the ASGI application to wrap.
        header: the header to read. Default ``"x-request-timeout"``.
        max_seconds: cap and default budget, seconds or ``timedelta``. Default ``None``.
        reject_expired: answer 504 to requests whose budget is already spent. Default True.
        enforce: cancel the handler when the budget runs out. Default True.
        clock: the clock. Default: the system clock.

    Raises:
        ConfigError: ``max_seconds`` is negative or not a duration, or ``header`` is empty.

    Example::

        app = FastAPI()
        app.add_middleware(DeadlineMiddleware, max_seconds=10)
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = DEADLINE_HEADER,
        max_seconds: float | timedelta | None = None,
        reject_expired: bool = True,
        enforce: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(header, str) or not header:
            raise v.fail("header", "a non-empty header name", header)
        self.app = app
        self.header = header.lower()
        self.max_seconds = v.optional_seconds("max_seconds", max_seconds)
        self.reject_expired = bool(reject_expired)
        self.enforce = bool(enforce)
        self.clock = resolve(clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_deadline = deadline_from_headers(
            scope.get("headers", ()),
            header=self.header,
            max_seconds=self.max_seconds,
            clock=self.clock,
        )
        with request_deadline as current:
            if current is None or not self.enforce:
                await self.app(scope, receive, send)
                return
            if current.remaining() <= 0.0:
                if self.reject_expired:
                    await _gateway_timeout(send)
                else:
                    await self.app(scope, receive, send)
                return
            started = False

            async def tracking_send(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                await send(message)

            try:
                async with deadline(None):  # enforce the budget now in force
                    await self.app(scope, receive, tracking_send)
            except DeadlineExceededError:
                if started:
                    raise  # the response is under way; the server closes the connection
                await _gateway_timeout(send)


async def _gateway_timeout(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 504,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})


_SHED_BODY = b"overloaded, retry later\n"


class LoadShedMiddleware:
    """Admit HTTP requests through a limiter; answer ``503`` to the ones it sheds.

    Each HTTP request runs through ``limiter`` — by default an
    :class:`~buttress.AdaptiveLimit`, which learns how many requests the service can
    handle at once from their latency, and rejects the excess at once instead of letting
    it queue. Any other policy works too (a :class:`~buttress.Bulkhead`, a rate limiter,
    a pipeline). When the limiter rejects a request (a :class:`~buttress.RejectedError`
    raised before the application was called), the client gets ``503 Service
    Unavailable`` with a ``Retry-After`` header: the rejection's ``retry_after`` rounded
    up to whole seconds, or ``retry_after`` when the rejection does not say. The
    application never sees a shed request. A ``RejectedError`` raised by the application
    itself is not a shed request and propagates unchanged.

    The latency the limiter measures is the application's whole handling of the request,
    streaming the response included. Lifespan and websocket scopes pass through
    unlimited. Put it outermost (before authentication, parsing, routing), so that a shed
    request costs as little as possible.

    Args:
        app: the ASGI application to wrap.
        limiter: the policy requests go through. Default: a fresh
            ``AdaptiveLimit(name="load-shed")``.
        retry_after: the ``Retry-After`` seconds when the rejection carries none,
            ``>= 0`` (a number or ``timedelta``). Default 1.

    Raises:
        ConfigError: ``limiter`` is not a policy, or ``retry_after`` is negative.

    Example::

        app = FastAPI()
        app.add_middleware(
            LoadShedMiddleware,
            limiter=bt.AdaptiveLimit(algorithm=bt.Vegas(), initial_limit=50, max_limit=500),
        )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Policy | None = None,
        retry_after: float | timedelta = 1.0,
    ) -> None:
        if limiter is None:
            limiter = AdaptiveLimit(name="load-shed")
        elif not isinstance(limiter, Policy):
            raise v.fail("limiter", "a buttress policy (an AdaptiveLimit, a Bulkhead...)", limiter)
        self.app = app
        self.limiter = limiter
        self.retry_after = v.seconds("retry_after", retry_after)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = self.app
        entered = False

        async def handle() -> None:
            nonlocal entered
            entered = True
            await app(scope, receive, send)

        try:
            await self.limiter.call(handle)
        except RejectedError as exc:
            if entered:
                raise  # the application's own rejection, not ours to answer
            wait = exc.retry_after if exc.retry_after is not None else self.retry_after
            await _unavailable(send, max(0, math.ceil(wait)))


async def _unavailable(send: Send, retry_after: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_SHED_BODY)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _SHED_BODY})
