"""DeadlineMiddleware through a real ASGI client (httpx's in-process transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import buttress as bt
from buttress.integrations.asgi import DeadlineMiddleware
from buttress.testing import FakeClock


def make_app(work_seconds: float = 0.0, clock: FakeClock | None = None) -> Any:
    """A raw ASGI app that reports the budget it sees (and optionally works a while)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if work_seconds:
            if clock is not None:
                await clock.sleep(work_seconds)
            else:
                await asyncio.sleep(work_seconds)
        left = bt.remaining()
        body = b"none" if left is None else f"{left:.3f}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def get(app: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/", headers=headers or {})


async def test_header_becomes_the_deadline() -> None:
    """The caller's x-request-timeout is the handler's budget."""
    clock = FakeClock()
    response = await get(DeadlineMiddleware(make_app(), clock=clock), {"x-request-timeout": "2S"})
    assert response.text == "2.000"


async def test_no_header_no_deadline() -> None:
    """Without a header (and no max_seconds) there is no deadline."""
    response = await get(DeadlineMiddleware(make_app()))
    assert response.text == "none"


async def test_max_seconds_caps_and_defaults() -> None:
    """max_seconds caps greedy callers and applies to requests without a header."""
    clock = FakeClock()
    app = DeadlineMiddleware(make_app(), max_seconds=5, clock=clock)
    assert (await get(app, {"x-request-timeout": "1H"})).text == "5.000"
    assert (await get(app)).text == "5.000"


async def test_expired_on_arrival_is_504_without_running() -> None:
    """A request with no time left gets 504 and the app never runs."""
    ran = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal ran
        ran = True

    response = await get(DeadlineMiddleware(app), {"x-request-timeout": "0n"})
    assert response.status_code == 504
    assert not ran


async def test_slow_handler_is_cut_off_with_504() -> None:
    """A handler that overruns the caller's budget is cancelled; the client gets 504."""
    clock = FakeClock()
    app = DeadlineMiddleware(make_app(work_seconds=10, clock=clock), clock=clock)
    response = await get(app, {"x-request-timeout": "100m"})
    assert response.status_code == 504
    assert clock.monotonic() == pytest.approx(0.1)


async def test_enforce_false_only_exposes() -> None:
    """With enforce=False the handler runs to the end and only sees the budget."""
    clock = FakeClock()
    app = DeadlineMiddleware(make_app(work_seconds=1, clock=clock), enforce=False, clock=clock)
    response = await get(app, {"x-request-timeout": "100m"})
    assert response.status_code == 200
    assert response.text == "0.000"


async def test_malformed_header_is_ignored() -> None:
    """A garbage header is not the server's error: it is ignored."""
    response = await get(DeadlineMiddleware(make_app()), {"x-request-timeout": "soon"})
    assert response.status_code == 200
    assert response.text == "none"


async def test_end_to_end_propagation() -> None:
    """Client deadline -> header -> server middleware -> the same budget, minus transit."""
    clock = FakeClock()
    app = DeadlineMiddleware(make_app(), clock=clock)
    with bt.deadline(1.5, clock=clock):
        clock.advance(0.5)
        response = await get(app, bt.deadline_headers())
    assert response.text == "1.000"


async def test_non_http_scopes_pass_through() -> None:
    """Lifespan and websocket scopes are not touched."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await DeadlineMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_bad_options() -> None:
    """Bad options name themselves."""
    with pytest.raises(bt.ConfigError, match="max_seconds must be a duration"):
        DeadlineMiddleware(make_app(), max_seconds=-1)
    with pytest.raises(bt.ConfigError, match="header must be a non-empty header name"):
        DeadlineMiddleware(make_app(), header="")
