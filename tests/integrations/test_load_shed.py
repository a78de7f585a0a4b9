"""LoadShedMiddleware through a real ASGI client (httpx's in-process transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import buttress as bt
from buttress.adaptive import AIMD, AdaptiveLimit
from buttress.integrations.asgi import LoadShedMiddleware
from buttress.testing import FakeClock


class GatedApp:
    """A raw ASGI app whose requests wait for `release` (when `hold`); counts calls."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        if self.hold:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_requests_within_the_limit_pass() -> None:
    """Below the limit every request reaches the app; the limiter takes a sample each."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=5, clock=FakeClock())
    app = GatedApp()
    async with client(LoadShedMiddleware(app, limiter=limiter)) as http:
        responses = [await http.get("/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert app.calls == 3
    assert limiter.stats().samples == 3


async def test_shed_requests_get_503_with_retry_after() -> None:
    """At the limit the next request is answered 503 + Retry-After without running the app."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=2, max_limit=2)
    app = GatedApp(hold=True)
    async with client(LoadShedMiddleware(app, limiter=limiter)) as http:
        held = [asyncio.create_task(http.get("/")) for _ in range(2)]
        await settle()
        assert limiter.inflight == 2
        shed = await http.get("/")
        app.release.set()
        done = await asyncio.gather(*held)
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert shed.text == "overloaded, retry later\n"
    assert app.calls == 2
    assert [r.status_code for r in done] == [200, 200]
    assert limiter.stats().rejections == 1


async def test_retry_after_option_when_the_rejection_has_none() -> None:
    """retry_after= is the header when the rejection carries no retry_after."""
    app = GatedApp(hold=True)
    bulkhead = bt.Bulkhead(max_concurrent=1)
    async with client(LoadShedMiddleware(app, limiter=bulkhead, retry_after=7)) as http:
        held = asyncio.create_task(http.get("/"))
        await settle()
        shed = await http.get("/")
        app.release.set()
        await held
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "7"


async def test_retry_after_from_the_rejection_is_rounded_up() -> None:
    """A rejection's own retry_after (here an open breaker's) becomes whole seconds."""
    clock = FakeClock()
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=2.5, clock=clock)
    with pytest.raises(ConnectionError):
        breaker.call_sync(_boom)
    async with client(LoadShedMiddleware(GatedApp(), limiter=breaker)) as http:
        shed = await http.get("/")
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "3"


def _boom() -> None:
    raise ConnectionError


async def test_the_apps_own_rejection_propagates() -> None:
    """A RejectedError raised inside the app is not a shed request: it propagates."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise bt.CircuitOpenError("the app's own breaker")

    async with client(LoadShedMiddleware(app)) as http:
        with pytest.raises(bt.CircuitOpenError):
            await http.get("/")


async def test_default_limiter_is_an_adaptive_limit() -> None:
    """Without limiter= each middleware gets its own AdaptiveLimit."""
    middleware = LoadShedMiddleware(GatedApp())
    assert isinstance(middleware.limiter, AdaptiveLimit)
    assert middleware.limiter.name == "load-shed"
    async with client(middleware) as http:
        assert (await http.get("/")).status_code == 200


async def test_limit_learns_from_server_latency() -> None:
    """Slow handling under concurrency shrinks the limit; the excess is shed with 503."""
    clock = FakeClock()
    limiter = AdaptiveLimit(algorithm=AIMD(timeout=0.5), initial_limit=10, clock=clock)

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await clock.sleep(1.0)  # every request overruns the AIMD timeout: a drop each
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    async with client(LoadShedMiddleware(slow, limiter=limiter)) as http:
        responses = await asyncio.gather(*(http.get("/") for _ in range(15)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10
    assert statuses.count(503) == 5
    assert limiter.limit < 10


async def test_non_http_scopes_pass_through() -> None:
    """Lifespan and websocket scopes bypass the limiter."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    limiter = AdaptiveLimit(initial_limit=1)
    middleware = LoadShedMiddleware(app, limiter=limiter)
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await middleware({"type": "websocket"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]
    assert limiter.stats().admitted == 0


def test_bad_options() -> None:
    """Bad options name themselves."""
    with pytest.raises(bt.ConfigError, match="limiter must be a buttress policy"):
        LoadShedMiddleware(GatedApp(), limiter="adaptive")  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="retry_after must be a duration >= 0 seconds"):
        LoadShedMiddleware(GatedApp(), retry_after=-1)
