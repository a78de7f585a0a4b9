"""Idempotency keys: Stripe semantics through the ASGI middleware, on every store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import buttress as bt
from buttress.events import StoreFellBack
from buttress.integrations.asgi import IdempotencyMiddleware
from buttress.messaging import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    PostgresIdempotencyStore,
    RedisIdempotencyStore,
    SavedResponse,
    SQLiteIdempotencyStore,
)
from buttress.testing import FakeClock

from ..conftest import Recorder

STORES = ["memory", "redis", "sqlite", "postgres"]


@pytest.fixture(params=STORES)
async def store(
    request: pytest.FixtureRequest, table: str, redis_client: Any, db: str, pg: str
) -> AsyncIterator[Any]:
    """Each store kind, fresh."""
    kind = request.param
    if kind == "memory":
        yield MemoryIdempotencyStore()
    elif kind == "redis":
        yield RedisIdempotencyStore(redis_client, prefix=table + ":")
    elif kind == "sqlite":
        s = SQLiteIdempotencyStore(db, table=table)
        yield s
        await s.close()
    else:
        p = PostgresIdempotencyStore(pg, table=table, pool_size=8)
        yield p
        await p.close()


class App:
    """A Starlette app whose POST /charge counts its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def charge(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.runs += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if body.get("fail") == "raise":
            raise RuntimeError("handler crashed")
        if body.get("fail") == "500":
            return JSONResponse({"error": "db down"}, status_code=500)
        return JSONResponse(
            {"charge": self.runs, "amount": body["amount"]},
            status_code=201,
            headers={"x-charge": str(self.runs)},
        )

    def asgi(self) -> Starlette:
        return Starlette(routes=[Route("/charge", self.charge, methods=["POST", "PUT"])])


def client(asgi: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def key(k: str) -> dict[str, str]:
    return {"Idempotency-Key": k}


async def test_completed_key_replays_the_saved_response(store: IdempotencyStore) -> None:
    """The retry gets the first response (status, headers, body) without a second run."""
    app = App()
    async with client(IdempotencyMiddleware(app.asgi(), store=store)) as http:
        first = await http.post("/charge", json={"amount": 5}, headers=key("k1"))
        again = await http.post("/charge", json={"amount": 5}, headers=key("k1"))
    assert app.runs == 1
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"charge": 1, "amount": 5}
    assert again.headers["x-charge"] == "1"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def test_reused_key_with_other_parameters_is_422(store: IdempotencyStore) -> None:
    """Same key, different body or path or method: 422, and no run."""
    app = App()
    async with client(IdempotencyMiddleware(app.asgi(), store=store, methods=["POST", "PUT"])) as h:
        await h.post("/charge", json={"amount": 5}, headers=key("k"))
        body = await h.post("/charge", json={"amount": 6}, headers=key("k"))
        query = await h.post("/charge?x=1", json={"amount": 5}, headers=key("k"))
        method = await h.put("/charge", json={"amount": 5}, headers=key("k"))
    assert body.status_code == query.status_code == method.status_code == 422
    assert app.runs == 1


async def test_concurrent_duplicate_is_409(store: IdempotencyStore) -> None:
    """While the first request runs, a duplicate gets 409 with Retry-After."""
    app = App()
    app.gate = asyncio.Event()
    async with client(IdempotencyMiddleware(app.asgi(), store=store)) as http:
        first = asyncio.create_task(http.post("/charge", json={"amount": 1}, headers=key("k")))
        await app.entered.wait()
        dup = await http.post("/charge", json={"amount": 1}, headers=key("k"))
        app.gate.set()
        done = await first
    assert dup.status_code == 409 and dup.headers["retry-after"] == "1"
    assert done.status_code == 201 and app.runs == 1


async def test_many_concurrent_duplicates_run_once(store: IdempotencyStore) -> None:
    """Twenty simultaneous requests with one key: one run; the rest get 409 or the replay."""
    app = App()
    async with client(IdempotencyMiddleware(app.asgi(), store=store)) as http:
        answers = await asyncio.gather(
            *(http.post("/charge", json={"amount": 1}, headers=key("k")) for _ in range(20))
        )
    assert app.runs == 1
    assert {a.status_code for a in answers} <= {201, 409}
    assert [a.status_code for a in answers].count(201) >= 1


async def test_failure_releases_the_key(store: IdempotencyStore) -> None:
    """An exception or a 5xx releases the key: the client's retry runs again."""
    app = App()
    async with client(IdempotencyMiddleware(app.asgi(), store=store)) as http:
        crashed = await http.post("/charge", json={"amount": 1, "fail": "raise"}, headers=key("a"))
        retried = await http.post("/charge", json={"amount": 1, "fail": "raise"}, headers=key("a"))
        err = await http.post("/charge", json={"amount": 1, "fail": "500"}, headers=key("b"))
        err2 = await http.post("/charge", json={"amount": 1, "fail": "500"}, headers=key("b"))
    assert crashed.status_code == retried.status_code == 500
    assert err.status_code == err2.status_code == 500
    assert "idempotent-replayed" not in err2.headers
    assert app.runs == 4


async def test_store_contract(store: IdempotencyStore) -> None:
    """begin / finish / abandon semantics shared by every store."""
    began = await store.begin("k", "fp", lock_ttl=60, ttl=3600)
    assert began.state == "started" and began.token
    assert (await store.begin("k", "fp", lock_ttl=60, ttl=3600)).state == "in_progress"
    assert (await store.begin("k", "other", lock_ttl=60, ttl=3600)).state == "mismatch"
    await store.abandon("k", "wrong-token")
    assert (await store.begin("k", "fp", lock_ttl=60, ttl=3600)).state == "in_progress"
    await store.abandon("k", began.token)
    again = await store.begin("k", "fp", lock_ttl=60, ttl=3600)
    assert again.state == "started"
    saved = SavedResponse(201, ((b"content-type", b"application/json"),), b'{"ok":true}')
    await store.finish("k", again.token, saved, ttl=3600)
    done = await store.begin("k", "fp", lock_ttl=60, ttl=3600)
    assert done.state == "completed" and done.response == saved
    await store.abandon("k", again.token)  # a completed key is never released
    assert (await store.begin("k", "fp", lock_ttl=60, ttl=3600)).state == "completed"


async def test_memory_store_expiry_follows_the_clock() -> None:
    """Holds expire after lock_timeout and saved responses after ttl (virtual time)."""
    clock = FakeClock()
    store = MemoryIdempotencyStore(clock=clock)
    held = await store.begin("k", "fp", lock_ttl=10, ttl=100)
    clock.advance(11)  # the holder died: its hold lapses
    again = await store.begin("k", "fp", lock_ttl=10, ttl=100)
    assert again.state == "started" and again.token != held.token
    await store.finish("k", held.token, SavedResponse(200, (), b"stale"), ttl=100)
    assert (await store.begin("k", "fp", lock_ttl=10, ttl=100)).state == "in_progress"
    await store.finish("k", again.token, SavedResponse(200, (), b"ok"), ttl=100)
    clock.advance(99)
    assert (await store.begin("k", "fp", lock_ttl=10, ttl=100)).state == "completed"
    clock.advance(2)
    assert (await store.begin("k", "fp", lock_ttl=10, ttl=100)).state == "started"


async def test_middleware_keeps_keys_for_ttl(db: str) -> None:
    """The middleware's ttl (default 24 h) decides how long a response is replayed."""
    now = [0.0]
    store = SQLiteIdempotencyStore(db, now=lambda: now[0])
    app = App()
    async with client(IdempotencyMiddleware(app.asgi(), store=store)) as http:
        await http.post("/charge", json={"amount": 1}, headers=key("k"))
        now[0] = 86_399.0
        assert (await http.post("/charge", json={"amount": 1}, headers=key("k"))).headers[
            "idempotent-replayed"
        ] == "true"
        now[0] = 86_401.0
        fresh = await http.post("/charge", json={"amount": 1}, headers=key("k"))
    assert "idempotent-replayed" not in fresh.headers and app.runs == 2
    await store.close()


async def test_other_methods_and_keyless_requests_pass_through() -> None:
    """PUT (not in the default methods) and requests without a key are not tracked."""
    app = App()
    async with client(IdempotencyMiddleware(app.asgi(), store=MemoryIdempotencyStore())) as h:
        await h.put("/charge", json={"amount": 1}, headers=key("k"))
        await h.put("/charge", json={"amount": 1}, headers=key("k"))
        await h.post("/charge", json={"amount": 1})
        await h.post("/charge", json={"amount": 1})
    assert app.runs == 4


async def test_required_key_and_bad_keys_are_400() -> None:
    """required=True answers 400 without a key; over-long keys are always 400."""
    app = App()
    mw = IdempotencyMiddleware(
        app.asgi(), store=MemoryIdempotencyStore(), required=True, max_key_length=8
    )
    async with client(mw) as http:
        missing = await http.post("/charge", json={"amount": 1})
        long = await http.post("/charge", json={"amount": 1}, headers=key("x" * 9))
    assert missing.status_code == long.status_code == 400 and app.runs == 0


async def test_scope_key_separates_clients() -> None:
    """With scope_key, two clients may use the same key independently."""
    app = App()

    def account(scope: Any) -> str | None:
        return dict(scope["headers"]).get(b"authorization", b"").decode() or None

    mw = IdempotencyMiddleware(app.asgi(), store=MemoryIdempotencyStore(), scope_key=account)
    async with client(mw) as http:
        a = await http.post(
            "/charge", json={"amount": 1}, headers={**key("k"), "authorization": "a"}
        )
        b = await http.post(
            "/charge", json={"amount": 2}, headers={**key("k"), "authorization": "b"}
        )
    assert a.status_code == b.status_code == 201 and app.runs == 2


async def test_body_over_max_is_413() -> None:
    """A body larger than max_body cannot be fingerprinted: 413, no run."""
    app = App()
    mw = IdempotencyMiddleware(app.asgi(), store=MemoryIdempotencyStore(), max_body=10)
    async with client(mw) as http:
        r = await http.post("/charge", json={"amount": 123456789}, headers=key("k"))
    assert r.status_code == 413 and app.runs == 0


async def test_store_down_fails_closed_or_open(recorder: Recorder) -> None:
    """A failing store: 503 by default; fail_open runs the request untracked."""
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from ..servers import free_port

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    app = App()
    closed = IdempotencyMiddleware(app.asgi(), store=RedisIdempotencyStore(dead))
    opened = IdempotencyMiddleware(
        app.asgi(), store=RedisIdempotencyStore(dead), on_store_error="fail_open"
    )
    async with client(closed) as http:
        r = await http.post("/charge", json={"amount": 1}, headers=key("k"))
    assert r.status_code == 503 and app.runs == 0
    async with client(opened) as http:
        r = await http.post("/charge", json={"amount": 1}, headers=key("k"))
    assert r.status_code == 201 and app.runs == 1
    assert [e.mode for e in recorder.of(StoreFellBack)] == ["fail_closed", "fail_open"]  # type: ignore[attr-defined]
    await dead.aclose()


async def test_fastapi_app() -> None:
    """Works as FastAPI middleware (add_middleware)."""
    from fastapi import FastAPI

    api = FastAPI()
    runs: list[int] = []

    @api.post("/orders", status_code=201)
    async def create(order: dict[str, Any]) -> dict[str, Any]:
        runs.append(1)
        return {"id": len(runs), **order}

    api.add_middleware(IdempotencyMiddleware, store=MemoryIdempotencyStore())
    async with client(api) as http:
        a = await http.post("/orders", json={"sku": "x"}, headers=key("o1"))
        b = await http.post("/orders", json={"sku": "x"}, headers=key("o1"))
    assert a.json() == b.json() == {"id": 1, "sku": "x"} and len(runs) == 1
    assert json.loads(b.content) == {"id": 1, "sku": "x"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": 0}, "ttl must be"),
        ({"methods": "POST"}, "methods must be"),
        ({"header": ""}, "header must be"),
        ({"on_store_error": "ignore"}, "on_store_error must be"),
        ({"store": object()}, "store must be"),
    ],
)
def test_middleware_validates_options(kwargs: dict[str, Any], message: str) -> None:
    """Bad options raise ConfigError naming the argument."""
    options: dict[str, Any] = {"store": MemoryIdempotencyStore(), **kwargs}
    with pytest.raises(bt.ConfigError, match=message):
        IdempotencyMiddleware(App().asgi(), **options)
