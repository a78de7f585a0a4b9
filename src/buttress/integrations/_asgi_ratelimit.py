"""ASGI rate limiting: a RateLimiter in front of an app, with standard 429 answers."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal

from .. import _validate as v
from ..ratelimit import Decision, RateLimiter

__all__ = ["RateLimitMiddleware", "api_key", "client_address", "route"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KeyFunction = Callable[[Scope], str | None]
"""Returns the rate-limit key of a request, or ``None`` to let it through unlimited."""

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _all_headers(scope: Scope, name: bytes) -> list[str]:
    return [
        value.decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == name
    ]


def client_address(
    *, trusted_proxies: Iterable[str] = (), header: str = "x-forwarded-for"
) -> KeyFunction:
    """Key requests by the client's IP address, seeing through *trusted* proxies only.

    The peer address of the connection is the client unless it belongs to one of
    ``trusted_proxies`` (addresses or CIDR networks). Only then is ``header`` (default
    ``X-Forwarded-For``) read — right to left, skipping the trusted proxies that appended
    to it — and the first untrusted address is the client. A client cannot bypass the
    limit by sending its own ``X-Forwarded-For``: from an untrusted peer the header is
    ignored, and behind a trusted proxy the entries it forged sit *left* of the address
    the proxy appended.

    Args:
        trusted_proxies: addresses or networks of your own reverse proxies / load
            balancers, e.g. ``("10.0.0.0/8",)``. Default: none (the header is never read).
        header: the forwarding header. Default ``"x-forwarded-for"``.

    Raises:
        ConfigError: an entry of ``trusted_proxies`` is not an address or network.

    Example::

        RateLimitMiddleware(app, limiter=per_ip, key=client_address(trusted_proxies=["10.0.0.0/8"]))
    """
    networks: list[_Network] = []
    for entry in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except (TypeError, ValueError):
            raise v.fail("trusted_proxies", "IP addresses or CIDR networks", entry) from None
    name = header.lower().encode("latin-1")

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in networks)

    def key(scope: Scope) -> str | None:
        client = scope.get("client")
        peer = str(client[0]) if client else None
        if peer is None or not networks or not trusted(peer):
            return peer or "unknown"
        hops = [hop.strip() for value in _all_headers(scope, name) for hop in value.split(",")]
        for hop in reversed(hops):
            if hop and not trusted(hop):
                return hop
        # Every hop is one of ours: the left-most is as close to the client as we know.
        return next((hop for hop in hops if hop), peer)

    return key


def api_key(header: str = "x-api-key", *, fallback: KeyFunction | None = None) -> KeyFunction:
    """Key requests by an API key header (``"key:<value>"``).

    Requests without the header use ``fallback`` (e.g. :func:`client_address`), or are not
    limited when ``fallback`` is ``None``. Long keys are hashed by the limiter, never
    stored as they are.

    Example::

        key=api_key("authorization", fallback=client_address())
    """
    name = header.lower().encode("latin-1")

    def key(scope: Scope) -> str | None:
        value = _header(scope, name)
        if value:
            return "key:" + value
        return None if fallback is None else fallback(scope)

    return key


def route(*, routes: Iterable[Any] | None = None, method: bool = True) -> KeyFunction:
    """Key requests by route template, with the HTTP method: one budget per endpoint.

    Middleware runs before the framework's router, so the template is found by matching
    ``routes`` (pass ``app.routes`` of a Starlette or FastAPI app: objects with
    ``matches(scope)`` and ``path``) against the request; without ``routes``, a template
    the scope already carries (``scope["route"].path``) or else the raw path is used.

    Example::

        app.add_middleware(RateLimitMiddleware, limiter=per_endpoint, key=route(routes=app.routes))
    """
    candidates = list(routes) if routes is not None else []
    for candidate in candidates:
        if not callable(getattr(candidate, "matches", None)):
            raise v.fail("routes", "framework routes with matches(scope) (app.routes)", candidate)

    def template(scope: Scope) -> str:
        for candidate in candidates:
            matched, _ = candidate.matches(scope)
            # Starlette's Match.FULL is 2 (NONE 0, PARTIAL 1: same path, other method).
            if getattr(matched, "value", matched) == 2:
                path = getattr(candidate, "path", None)
                if isinstance(path, str):
                    return path
        current = getattr(scope.get("route"), "path", None)
        return current if isinstance(current, str) else str(scope.get("path", "/"))

    def key(scope: Scope) -> str | None:
        path = template(scope)
        return f"{scope.get('method', '')} {path}" if method else path

    return key


class RateLimitMiddleware:
    """Limit the requests of an ASGI app with a :class:`~buttress.RateLimiter`.

    Each HTTP request is keyed by ``key`` (a function of the ASGI scope; ``None`` exempts
    the request) and takes ``cost`` units. A refused request is answered at once, without
    calling the app: **429 Too Many Requests** with ``Retry-After`` (whole seconds,
    rounded up) and the IETF ``RateLimit-Policy`` / ``RateLimit`` fields. Admitted
    responses carry the same fields so well-behaved clients can pace themselves.

    Header format (``headers="ietf"``, the default, per draft-ietf-httpapi-ratelimit-headers
    08+): ``RateLimit-Policy: "<policy>";q=<rate>;w=<per>`` and ``RateLimit:
    "<policy>";r=<remaining>;t=<seconds until the bucket is full>``. ``headers="legacy"``
    sends ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset`` (draft 06
    and most older clients) instead; ``headers=None`` sends none besides Retry-After.

    Where the limiter's store fails, its ``on_store_error`` decides, as everywhere.

    Args:
        app: the ASGI application.
        limiter: the :class:`~buttress.RateLimiter` to apply.
        key: a key function: :func:`client_address` (the default, trusting no proxy),
            :func:`api_key`, :func:`route`, or your own ``(scope) -> str | None``.
        cost: units per request, or a function of the scope. Default 1.
        headers: ``"ietf"`` (default), ``"legacy"`` or ``None``.
        policy: the policy name in the IETF fields. Default ``"default"``.

    Raises:
        ConfigError: ``limiter`` is not a RateLimiter, or another option is invalid.

    Example::

        app = FastAPI()
        app.add_middleware(
            RateLimitMiddleware,
            limiter=bt.RateLimiter(rate=100, per=60, burst=20, store=redis_store, name="api"),
            key=api_key(fallback=client_address(trusted_proxies=["10.0.0.0/8"])),
        )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        key: KeyFunction | None = None,
        cost: int | Callable[[Scope], int] = 1,
        headers: Literal["ietf", "legacy"] | None = "ietf",
        policy: str = "default",
    ) -> None:
        if not isinstance(limiter, RateLimiter):
            raise v.fail("limiter", "a buttress.RateLimiter", limiter)
        if key is not None and not callable(key):
            raise v.fail("key", "a function (scope) -> str | None", key)
        if not callable(cost):
            v.integer("cost", cost, minimum=1, maximum=limiter.burst)
        if headers is not None:
            v.choice("headers", headers, ("ietf", "legacy"))
        if not isinstance(policy, str) or not policy or '"' in policy or "\\" in policy:
            raise v.fail("policy", "a non-empty str without quotes or backslashes", policy)
        self.app = app
        self.limiter = limiter
        self.key = key if key is not None else client_address()
        self.cost = cost
        self.headers = headers
        self.policy = policy
        quota = max(1, math.floor(limiter.rate))
        window = max(1, math.ceil(limiter.per))
        self._policy_header = f'"{policy}";q={quota};w={window}'.encode("latin-1")

    def _fields(self, decision: Decision) -> list[tuple[bytes, bytes]]:
        reset = max(0, math.ceil(decision.reset_after))
        if self.headers == "ietf":
            current = f'"{self.policy}";r={decision.remaining};t={reset}'
            return [
                (b"ratelimit-policy", self._policy_header),
                (b"ratelimit", current.encode("latin-1")),
            ]
        if self.headers == "legacy":
            return [
                (b"ratelimit-limit", str(max(1, math.floor(self.limiter.rate))).encode()),
                (b"ratelimit-remaining", str(decision.remaining).encode()),
                (b"ratelimit-reset", str(reset).encode()),
            ]
        return []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = self.key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        cost = self.cost(scope) if callable(self.cost) else self.cost
        decision = await self.limiter.try_acquire(key, cost)
        fields = self._fields(decision)
        if not decision.allowed:
            retry_after = max(1, math.ceil(decision.retry_after))
            body = b"rate limit exceeded\n"
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(retry_after).encode()),
                        *fields,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if not fields:
            await self.app(scope, receive, send)
            return

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *fields]
            await send(message)

        await self.app(scope, receive, send_with_fields)
