"""BalancedTransport against a real ASGI app (httpx.ASGITransport), and the deadline
round trip through DeadlineMiddleware."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import httpx
import pytest

import buttress as bt
from buttress.balance import Balancer, NoHealthyEndpointError, OutlierDetection
from buttress.integrations.asgi import DeadlineMiddleware
from buttress.integrations.httpx import BalancedTransport


class App:
    """An ASGI app answering for several 'endpoints' (told apart by the URL port)."""

    def __init__(self) -> None:
        self.status: dict[int, int] = {}
        self.hits: Counter[int] = Counter()
        self.remaining: list[float | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        port = scope["server"][1]
        self.hits[port] += 1
        self.remaining.append(bt.remaining())
        status = self.status.get(port, 200)
        body = str(port).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def client(app: App, balancer: Balancer, **kwargs: Any) -> httpx.AsyncClient:
    inner = httpx.ASGITransport(app=DeadlineMiddleware(app))  # type: ignore[arg-type]
    transport = BalancedTransport(balancer, transport=inner, **kwargs)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


def balancer(**kwargs: Any) -> Balancer:
    kwargs.setdefault("outlier", None)
    return Balancer(
        ["h:1", "h:2", "h:3"], strategy="round_robin", random=random.Random(1), **kwargs
    )


async def test_deadline_reaches_the_upstream_handler() -> None:
    """The remaining bt.deadline crosses as a header and becomes the handler's deadline."""
    app = App()
    async with client(app, balancer()) as c:
        with bt.deadline(2.0):
            await c.get("/")
        await c.get("/")
    inside, outside = app.remaining
    assert inside is not None and 1.5 < inside <= 2.0
    assert outside is None


async def test_no_time_left_sends_nothing() -> None:
    """An expired deadline raises DeadlineExceededError before any request is sent."""
    app = App()
    async with client(app, balancer()) as c:
        with bt.deadline(0), pytest.raises(bt.DeadlineExceededError):
            await c.get("/")
    assert not app.hits


async def test_breaker_per_endpoint_opens_and_others_take_over() -> None:
    """A failing endpoint's own breaker opens; requests go to the others."""
    app = App()
    app.status[1] = 500
    b = balancer()
    transport_kwargs = {
        "breaker": lambda ep: bt.CircuitBreaker(
            consecutive_failures=2, open_for=60.0, record_result=lambda r: r.status_code >= 500
        ),
        "retry_statuses": (500,),
    }
    async with client(app, b, **transport_kwargs) as c:
        statuses = Counter([(await c.get("/")).status_code for _ in range(30)])
        transport = c._transport
    assert statuses == {200: 30}
    assert app.hits[1] == 2  # the breaker opened after two failures
    assert isinstance(transport, BalancedTransport)
    breaker = transport.breaker_for(b.endpoints[0])
    assert breaker is not None and breaker.state is bt.BreakerState.OPEN
    other = transport.breaker_for(b.endpoints[1])
    assert other is not None and other.state is bt.BreakerState.CLOSED


async def test_retries_go_to_a_different_endpoint() -> None:
    """A 503 is retried on another endpoint, never the same one."""
    app = App()
    app.status[2] = 503
    b = Balancer(["h:1", "h:2", "h:3"], strategy="random", outlier=None, random=random.Random(7))
    async with client(app, b, breaker=None, attempts=2) as c:
        for _ in range(30):
            assert (await c.get("/")).status_code == 200  # one retry, elsewhere
    assert app.hits[2] > 3


async def test_budget_bounds_retries() -> None:
    """With an empty retry budget, a 503 comes back as it is."""
    app = App()
    app.status[1] = 503
    budget = bt.RetryBudget(ratio=0.0, min_per_second=0.0)
    async with client(app, balancer(), breaker=None, budget=budget) as c:
        assert (await c.get("/")).status_code == 503
    assert budget.stats().rejections == 1


async def test_non_idempotent_requests_are_not_retried() -> None:
    """A POST answered 503 is not sent again."""
    app = App()
    app.status[1] = 503
    async with client(app, balancer(), breaker=None) as c:
        assert (await c.post("/", content=b"x")).status_code == 503
    assert sum(app.hits.values()) == 1


async def test_server_errors_feed_outlier_detection() -> None:
    """5xx answers count as failures for the balancer: the endpoint is ejected."""
    app = App()
    app.status[3] = 500
    b = balancer(outlier=OutlierDetection(consecutive_failures=2, max_ejection_percent=50))
    async with client(app, b, breaker=None) as c:
        for _ in range(12):
            await c.get("/")
    assert b.stats().endpoints[2].ejected


async def test_no_healthy_endpoint_propagates() -> None:
    """When the balancer has nothing to offer, the client sees NoHealthyEndpointError."""
    b = Balancer(["h:1"], on_panic="fail", outlier=OutlierDetection(consecutive_failures=1))
    with pytest.raises(OSError), b.pick():
        raise OSError("down")
    async with client(App(), b) as c:
        with pytest.raises(NoHealthyEndpointError):
            await c.get("/")


def test_bad_options() -> None:
    """Options are validated at construction."""
    with pytest.raises(bt.ConfigError, match="attempts must be"):
        BalancedTransport(balancer(), attempts=0)
    with pytest.raises(bt.ConfigError, match="balancer must be"):
        BalancedTransport("h:1")  # type: ignore[arg-type]
