"""RateLimitMiddleware: 429s with standard headers, keys, and proxies that cannot be spoofed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import buttress as bt
from buttress.integrations.asgi import RateLimitMiddleware, api_key, client_address, route
from buttress.testing import FakeClock


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


def limiter(**kwargs: Any) -> bt.RateLimiter:
    kwargs.setdefault("rate", 1)
    kwargs.setdefault("per", 10)
    kwargs.setdefault("burst", 2)
    return bt.RateLimiter(clock=FakeClock(), **kwargs)


async def get(
    app: Any,
    *,
    client: tuple[str, int] = ("203.0.113.7", 5000),
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get("/things/1", headers=headers or {})


async def test_429_with_retry_after_and_ietf_fields() -> None:
    """After the burst: 429, Retry-After in whole seconds, RateLimit-Policy and RateLimit."""
    app = RateLimitMiddleware(ok_app, limiter=limiter())
    first = await get(app)
    assert first.status_code == 200
    assert first.headers["x-app"] == "1"
    assert first.headers["ratelimit-policy"] == '"default";q=1;w=10'
    assert first.headers["ratelimit"] == '"default";r=1;t=10'
    await get(app)
    refused = await get(app)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["ratelimit"] == '"default";r=0;t=20'
    assert refused.text == "rate limit exceeded\n"


async def test_legacy_and_no_fields() -> None:
    """headers="legacy" sends RateLimit-Limit/Remaining/Reset; None sends nothing extra."""
    legacy = await get(RateLimitMiddleware(ok_app, limiter=limiter(), headers="legacy"))
    assert (legacy.headers["ratelimit-limit"], legacy.headers["ratelimit-remaining"]) == ("1", "1")
    assert legacy.headers["ratelimit-reset"] == "10"
    bare = await get(RateLimitMiddleware(ok_app, limiter=limiter(), headers=None))
    assert "ratelimit" not in bare.headers


async def test_clients_are_limited_separately() -> None:
    """The default key is the peer address: one client's burst does not limit another."""
    app = RateLimitMiddleware(ok_app, limiter=limiter(burst=1))
    assert (await get(app, client=("198.51.100.1", 1))).status_code == 200
    assert (await get(app, client=("198.51.100.1", 2))).status_code == 429
    assert (await get(app, client=("198.51.100.2", 1))).status_code == 200


async def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    """A client cannot pick its own key by sending X-Forwarded-For."""
    app = RateLimitMiddleware(ok_app, limiter=limiter(burst=1))
    assert (await get(app, headers={"x-forwarded-for": "1.1.1.1"})).status_code == 200
    assert (await get(app, headers={"x-forwarded-for": "2.2.2.2"})).status_code == 429


async def test_trusted_proxy_reveals_the_client() -> None:
    """Behind a trusted proxy the right-most untrusted hop is the client; forged hops to its
    left do not change the key."""
    key = client_address(trusted_proxies=["10.0.0.0/8"])
    app = RateLimitMiddleware(ok_app, limiter=limiter(burst=1), key=key)
    proxy = ("10.1.2.3", 443)
    first = await get(app, client=proxy, headers={"x-forwarded-for": "203.0.113.9"})
    assert first.status_code == 200
    forged = await get(app, client=proxy, headers={"x-forwarded-for": "9.9.9.9, 203.0.113.9"})
    assert forged.status_code == 429  # still keyed by 203.0.113.9
    other = await get(app, client=proxy, headers={"x-forwarded-for": "203.0.113.10, 10.9.9.9"})
    assert other.status_code == 200  # 10.9.9.9 is a trusted hop; the client is .10


def test_client_address_cases() -> None:
    """The key function on raw scopes: no header, all-trusted chains, IPv6, no client."""
    key = client_address(trusted_proxies=["10.0.0.0/8", "::1"])

    def scope(peer: str | None, xff: str | None = None) -> dict[str, Any]:
        headers = [(b"x-forwarded-for", xff.encode())] if xff else []
        return {"client": (peer, 1) if peer else None, "headers": headers}

    assert key(scope("203.0.113.1")) == "203.0.113.1"
    assert key(scope("10.0.0.1")) == "10.0.0.1"  # trusted peer but no header
    assert key(scope("10.0.0.1", "10.0.0.2, 10.0.0.3")) == "10.0.0.2"
    assert key(scope("::1", "2001:db8::5")) == "2001:db8::5"
    assert key(scope(None)) == "unknown"


async def test_api_key_with_fallback_and_exemption() -> None:
    """api_key keys by the header; without it, the fallback (or no limit at all)."""
    keyed = RateLimitMiddleware(ok_app, limiter=limiter(burst=1), key=api_key())
    assert (await get(keyed, headers={"x-api-key": "a"})).status_code == 200
    assert (await get(keyed, headers={"x-api-key": "a"})).status_code == 429
    assert (await get(keyed, headers={"x-api-key": "b"})).status_code == 200
    for _ in range(3):  # no key and no fallback: not limited
        assert (await get(keyed)).status_code == 200
    with_fallback = RateLimitMiddleware(
        ok_app, limiter=limiter(burst=1), key=api_key(fallback=client_address())
    )
    assert (await get(with_fallback)).status_code == 200
    assert (await get(with_fallback)).status_code == 429


async def test_cost_function() -> None:
    """cost may depend on the request."""
    app = RateLimitMiddleware(
        ok_app, limiter=limiter(burst=3), cost=lambda scope: 3 if scope["method"] == "GET" else 1
    )
    assert (await get(app)).status_code == 200
    assert (await get(app)).status_code == 429


async def test_with_fastapi_and_route_keys() -> None:
    """As FastAPI middleware, route(routes=app.routes) gives one budget per endpoint."""
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @api.get("/other")
    async def other() -> dict[str, int]:
        return {}

    api.add_middleware(RateLimitMiddleware, limiter=limiter(burst=2), key=route(routes=api.routes))
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        codes = [(await http.get(f"/things/{i}")).status_code for i in range(3)]
        other_code = (await http.get("/other")).status_code
        body = (await http.get("/other")).json()
    assert codes == [200, 200, 429]  # /things/{thing_id} is one endpoint
    assert other_code == 200
    assert body == {}


def test_route_key_without_routes() -> None:
    """Without routes: a template already in the scope, else the raw path."""

    class Matched:
        path = "/things/{thing_id}"

    key = route()
    assert (
        key({"method": "GET", "path": "/things/1", "route": Matched()}) == "GET /things/{thing_id}"
    )
    assert key({"method": "POST", "path": "/x"}) == "POST /x"
    assert route(method=False)({"path": "/x"}) == "/x"
    with pytest.raises(bt.ConfigError, match="routes must be framework routes"):
        route(routes=["/x"])


async def test_non_http_scopes_pass_through() -> None:
    """Lifespan (and websocket) scopes are not limited."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await RateLimitMiddleware(app, limiter=limiter())({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limiter": "no"}, "limiter must be a buttress.RateLimiter"),
        ({"key": 5}, r"key must be a function \(scope\)"),
        ({"cost": 0}, r"cost must be an int in \[1, 2\], got 0"),
        ({"headers": "rfc"}, "headers must be one of"),
        ({"policy": 'a"b'}, "policy must be a non-empty str without quotes"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    """Bad options name themselves."""
    kwargs.setdefault("limiter", limiter())
    with pytest.raises(bt.ConfigError, match=message):
        RateLimitMiddleware(ok_app, **kwargs)


def test_bad_trusted_proxies() -> None:
    """trusted_proxies must be addresses or networks."""
    with pytest.raises(bt.ConfigError, match="trusted_proxies must be IP addresses or CIDR"):
        client_address(trusted_proxies=["not-an-ip"])
