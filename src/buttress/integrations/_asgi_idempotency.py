"""ASGI idempotency keys (Stripe semantics) in front of an application."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import timedelta
from typing import Any, Literal

from .. import _validate as v
from .._events import GLOBAL_LISTENERS, Listener, StoreFellBack, emit
from ..messaging._idempotency import Begin, IdempotencyStore, SavedResponse

__all__ = ["IdempotencyMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_counter = itertools.count(1)
_REPLAYED = (b"idempotent-replayed", b"true")


async def _json(
    send: Send, status: int, error: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class IdempotencyMiddleware:
    """Make retried POST/PATCH requests safe with an ``Idempotency-Key`` header.

    For a request whose method is in ``methods`` and that carries the header:

    * the first request with a key runs; its response (status, headers, body) is
      saved for ``ttl`` (default 24 h) unless it failed (see ``save_server_errors``);
    * a request with the same key while the first is still running gets **409**
      (``Retry-After: 1``) — never two runs at once;
    * a request with a completed key gets the saved response replayed, with the added
      header ``Idempotent-Replayed: true``; the application is not called;
    * a request reusing a key with different parameters — method, path, query string
      or a different body (SHA-256) — gets **422**;
    * if the application raises (or, by default, answers 5xx), the key is released
      so the client's retry runs again.

    A hold on a running key lasts ``lock_timeout``; a request that runs longer (or a
    process that died) loses it and a retry may run. Requests without the header, or
    with another method, pass through untouched (or get 400 with ``required=True``).

    The request body is read in full (up to ``max_body`` bytes, else 413) to
    fingerprint it, then replayed to the application.

    Args:
        app: the ASGI application.
        store: an :class:`~buttress.messaging.IdempotencyStore` (memory, Redis, SQLite,
            PostgreSQL).
        header: the request header. Default ``"Idempotency-Key"``.
        methods: methods that use keys. Default ``("POST", "PATCH")``.
        ttl: how long completed keys are kept, seconds or ``timedelta``. Default 24 h.
        lock_timeout: how long a running request holds its key. Default 60 s.
        scope_key: a function of the ASGI scope naming the client (e.g. its API key),
            so two clients' keys never collide; ``None`` (default): keys are global.
        required: answer 400 to requests of ``methods`` without a key. Default False.
        save_server_errors: also save 5xx responses (Stripe does). Default False: a
            5xx releases the key so a retry runs again.
        max_key_length: longest key accepted (else 400). Default 255.
        max_body: largest request body fingerprinted (else 413). Default 1 MiB.
        on_store_error: when the store fails: ``"fail_closed"`` (default) answers 503;
            ``"fail_open"`` runs the request without idempotency. Both emit
            :class:`~buttress.events.StoreFellBack`.
        name: the name in events. Default ``"idempotency-N"``.
        listeners: event listeners.

    Raises:
        ConfigError: an invalid option.

    Example::

        app = FastAPI()
        app.add_middleware(IdempotencyMiddleware, store=RedisIdempotencyStore(redis))
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: IdempotencyStore,
        header: str = "Idempotency-Key",
        methods: Iterable[str] = ("POST", "PATCH"),
        ttl: float | timedelta = 86_400.0,
        lock_timeout: float | timedelta = 60.0,
        scope_key: Callable[[Scope], str | None] | None = None,
        required: bool = False,
        save_server_errors: bool = False,
        max_key_length: int = 255,
        max_body: int = 1 << 20,
        on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed",
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if not isinstance(store, IdempotencyStore):
            raise v.fail("store", "an IdempotencyStore (begin, finish, abandon)", store)
        if not isinstance(header, str) or not header:
            raise v.fail("header", "a non-empty header name", header)
        if isinstance(methods, str):
            raise v.fail("methods", "an iterable of HTTP method names", methods)
        self.methods = frozenset(str(m).upper() for m in methods)
        if not self.methods:
            raise v.fail("methods", "a non-empty iterable of HTTP method names", methods)
        self.app = app
        self.store = store
        self.header = header.lower().encode("latin-1")
        self.ttl = v.seconds("ttl", ttl, allow_zero=False)
        self.lock_timeout = v.seconds("lock_timeout", lock_timeout, allow_zero=False)
        self.scope_key = v.optional_callable("scope_key", scope_key)
        self.required = bool(required)
        self.save_server_errors = bool(save_server_errors)
        self.max_key_length = v.integer("max_key_length", max_key_length, minimum=1)
        self.max_body = v.integer("max_body", max_body, minimum=0)
        self.on_store_error = v.choice(
            "on_store_error", on_store_error, ("fail_closed", "fail_open")
        )
        self.name = v.name_of(name, "idempotency", lambda: next(_counter))
        self._listeners = v.listeners(listeners)

    def _store_failed(self, exc: Exception) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, StoreFellBack(self.name, self.on_store_error, exc))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET").upper() not in self.methods:
            await self.app(scope, receive, send)
            return
        raw = next((val for k, val in scope.get("headers", ()) if k.lower() == self.header), None)
        if raw is None:
            if self.required:
                await _json(send, 400, f"the {self.header.decode()} header is required")
            else:
                await self.app(scope, receive, send)
            return
        key = raw.decode("latin-1").strip()
        if not key or len(key) > self.max_key_length:
            await _json(send, 400, f"idempotency key must be 1 to {self.max_key_length} characters")
            return
        if self.scope_key is not None:
            owner = self.scope_key(scope)
            key = f"{owner or ''}\x1f{key}"

        # Read the whole body: it is part of the fingerprint and is replayed to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _json(send, 413, f"request body over {self.max_body} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        digest = hashlib.sha256()
        method, path = scope["method"].upper(), scope.get("path", "")
        for part in (method, path, scope.get("query_string", b"")):
            digest.update(part if isinstance(part, bytes) else part.encode("utf-8"))
            digest.update(b"\x00")
        digest.update(body)
        fingerprint = digest.hexdigest()

        try:
            begun: Begin = await self.store.begin(
                key, fingerprint, lock_ttl=self.lock_timeout, ttl=self.ttl
            )
        except Exception as exc:
            self._store_failed(exc)
            if self.on_store_error == "fail_closed":
                await _json(send, 503, "idempotency store unavailable", [(b"retry-after", b"1")])
            else:
                await self.app(scope, _replay(body, receive), send)
            return

        if begun.state == "mismatch":
            await _json(send, 422, "idempotency key reused with different request parameters")
            return
        if begun.state == "in_progress":
            await _json(
                send,
                409,
                "a request with this idempotency key is in progress",
                [(b"retry-after", b"1")],
            )
            return
        if begun.state == "completed":
            assert begun.response is not None
            await _send_saved(send, begun.response)
            return
        await self._run(scope, body, receive, send, key, begun.token)

    async def _run(
        self, scope: Scope, body: bytes, receive: Receive, send: Send, key: str, token: str
    ) -> None:
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []
        complete = False

        async def capture(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers.extend((bytes(k), bytes(x)) for k, x in message.get("headers", ()))
            elif message["type"] == "http.response.body":
                parts.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        try:
            await self.app(scope, _replay(body, receive), capture)
        except BaseException:
            await asyncio.shield(self._abandon(key, token))
            raise
        keep = complete and status and (status < 500 or self.save_server_errors)
        if not keep:
            await asyncio.shield(self._abandon(key, token))
            return
        try:
            await self.store.finish(
                key, token, SavedResponse(status, tuple(headers), b"".join(parts)), ttl=self.ttl
            )
        except Exception as exc:
            # The response went out; only its replay is lost. The hold expires after
            # lock_timeout and a retry then runs again.
            self._store_failed(exc)

    async def _abandon(self, key: str, token: str) -> None:
        try:
            await self.store.abandon(key, token)
        except Exception as exc:
            self._store_failed(exc)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_saved(send: Send, saved: SavedResponse) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": saved.status,
            "headers": [*saved.headers, _REPLAYED],
        }
    )
    await send({"type": "http.response.body", "body": saved.body})
