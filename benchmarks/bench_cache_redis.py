"""The Redis cache tier: RedisCache and TieredCache reads, and a cold-key stampede.

Reads put buttress beside a bare redis-py ``GET`` on the same client (what RedisCache
adds: key building, the codec, the store breaker and, async, the store timeout). The
stampede suite times 1000 concurrent misses of one cold key, whose loader takes 5 ms,
against the naive "GET, on a miss load and SET" every cache-aside snippet does; the
number of loads each approach runs per stampede is counted in setup and printed as a note.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import redis
import redis.asyncio

from _harness import Contender, RatioColumn, Suite
from _redis import Server
from buttress.cache import RedisCache, TieredCache

STAMPEDE = 1000
LOAD_SECONDS = 0.005
INSTANCES = 4


class _Forgetful:
    """A local tier that keeps nothing: every TieredCache read is a far (Redis) hit."""

    def get(self, key: str, default: Any = None) -> Any:
        return default

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        pass

    def delete(self, key: str) -> Any:
        return None

    def clear(self) -> None:
        pass


VALUE = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "author"]}


def _reads_async() -> Suite:
    server = Server()
    bt_ns: dict[str, Any] = {}
    bare_ns: dict[str, Any] = {}
    near_ns: dict[str, Any] = {}
    far_ns: dict[str, Any] = {}

    def setup() -> None:
        server.start()
        client = redis.asyncio.Redis.from_url(server.url)
        RedisCache(redis.Redis.from_url(server.url), name="bench").set_sync("k", VALUE)
        cache = RedisCache(client, name="bench")
        bt_ns["cache"] = cache
        bare_ns.update(client=client, key=cache._shared.value_key("k"))
        near = TieredCache(client, name="bench")
        near.local.set("k", VALUE, 3600.0)  # the near entry a first read would leave
        near_ns["cache"] = near
        far_ns["cache"] = TieredCache(client, name="bench", local=_Forgetful())

    def teardown() -> None:
        server.stop()

    return Suite(
        name="cache-redis-get",
        title="Redis cache read (hit), one connection, asyncio",
        kind="async",
        description=(
            "One cached read of a small dict through a redis.asyncio client (sequential "
            "awaits). The bare GET returns bytes; buttress also decodes the JSON value. "
            "The TieredCache near hit never reaches Redis; the far hit misses its local tier "
            "and reads Redis."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=[
            Contender(
                "bt",
                "buttress `await RedisCache.get(key)`",
                "buttress",
                "call",
                'await cache.get("k")',
                bt_ns,
                config='bt.RedisCache(redis.asyncio.Redis(...), name="bench")',
            ),
            Contender(
                "get",
                "bare `await client.get(key)` (no decoding)",
                "redis-py",
                "call",
                "await client.get(key)",
                bare_ns,
                config="await redis.asyncio.Redis(...).get(key)",
            ),
            Contender(
                "near",
                "buttress `await TieredCache.get(key)`, near hit",
                "buttress",
                "call",
                'await cache.get("k")',
                near_ns,
                config='bt.TieredCache(redis.asyncio.Redis(...), name="bench")',
            ),
            Contender(
                "far",
                "buttress `await TieredCache.get(key)`, far hit (local tier missed)",
                "buttress",
                "call",
                'await cache.get("k")',
                far_ns,
                config="bt.TieredCache(..., local=<a tier that keeps nothing>)",
            ),
        ],
        columns=[RatioColumn("vs bare GET", {}, "get")],
        setup=setup,
        teardown=teardown,
        order=150,
    )


def _reads_sync() -> Suite:
    server = Server()
    bt_ns: dict[str, Any] = {}
    bare_ns: dict[str, Any] = {}

    def setup() -> None:
        server.start()
        client = redis.Redis.from_url(server.url)
        cache = RedisCache(client, name="bench")
        cache.set_sync("k", VALUE)
        bt_ns["cache"] = cache
        bare_ns.update(client=client, key=cache._shared.value_key("k"))

    def teardown() -> None:
        server.stop()

    return Suite(
        name="cache-redis-get-sync",
        title="Redis cache read (hit), one connection, sync",
        kind="sync",
        description="One cached read of a small dict through a redis.Redis client.",
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=[
            Contender(
                "bt",
                "buttress `RedisCache.get_sync(key)`",
                "buttress",
                "call",
                'cache.get_sync("k")',
                bt_ns,
                config='bt.RedisCache(redis.Redis(...), name="bench")',
            ),
            Contender(
                "get",
                "bare `client.get(key)` (no decoding)",
                "redis-py",
                "call",
                "client.get(key)",
                bare_ns,
                config="redis.Redis(...).get(key)",
            ),
        ],
        columns=[RatioColumn("vs bare GET", {}, "get")],
        setup=setup,
        teardown=teardown,
        order=151,
    )


class _Stampede:
    """Counts loads and runs one stampede of ``STAMPEDE`` concurrent misses on a new key."""

    def __init__(self) -> None:
        self.loads = 0
        self.keys = itertools.count()

    async def load(self) -> dict[str, Any]:
        self.loads += 1
        await asyncio.sleep(LOAD_SECONDS)  # the database query
        return VALUE

    async def tiered(self, caches: list[TieredCache]) -> None:
        key = f"cold-{next(self.keys)}"
        await asyncio.gather(
            *(caches[i % len(caches)].get_or_load(key, self.load) for i in range(STAMPEDE))
        )

    async def naive(self, client: Any) -> None:
        key = f"naive-{next(self.keys)}"

        async def one() -> Any:
            data = await client.get(key)
            if data is None:
                value = await self.load()
                await client.set(key, repr(value))
                return value
            return data

        await asyncio.gather(*(one() for _ in range(STAMPEDE)))


def _stampede() -> Suite:
    server = Server()
    bt_ns: dict[str, Any] = {}
    naive_ns: dict[str, Any] = {}
    suite_notes: list[str] = []

    def setup() -> None:
        server.start()
        url = server.url

        async def count() -> tuple[int, int]:
            probe = _Stampede()
            clients = [redis.asyncio.Redis.from_url(url) for _ in range(INSTANCES + 1)]
            caches = [TieredCache(c, name="probe") for c in clients[:INSTANCES]]
            for cache in caches:
                await cache.start()
            await probe.tiered(caches)
            tiered_loads, probe.loads = probe.loads, 0
            await probe.naive(clients[-1])
            for cache in caches:
                await cache.aclose()
            for client in clients:
                await client.aclose()
            return tiered_loads, probe.loads

        tiered_loads, naive_loads = asyncio.run(count())
        suite_notes.append(
            f"Loads per stampede of {STAMPEDE} concurrent misses (counted in setup): "
            f"buttress TieredCache x{INSTANCES} = {tiered_loads}; naive get-then-load = "
            f"{naive_loads}."
        )
        state = _Stampede()
        bt_ns.update(
            state=state,
            caches=[
                TieredCache(redis.asyncio.Redis.from_url(url), name="bench")
                for _ in range(INSTANCES)
            ],
        )
        naive_ns.update(state=_Stampede(), client=redis.asyncio.Redis.from_url(url))

    def teardown() -> None:
        server.stop()

    suite = Suite(
        name="cache-redis-stampede",
        title=(
            f"Cold-key stampede: {STAMPEDE} concurrent misses, {LOAD_SECONDS * 1000:.0f} ms loader"
        ),
        kind="async",
        description=(
            f"Wall time for {STAMPEDE} concurrent get_or_load calls of one cold key spread "
            f"over {INSTANCES} TieredCache instances (each on its own connection, as "
            "separate processes would be), against the naive cache-aside pattern (GET; on "
            "a miss, load and SET) on one client. The loader sleeps "
            f"{LOAD_SECONDS * 1000:.0f} ms."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=[
            Contender(
                "bt",
                f"buttress TieredCache x{INSTANCES} `get_or_load`",
                "buttress",
                "call",
                "await state.tiered(caches)",
                bt_ns,
                config=f'[bt.TieredCache(redis.asyncio.Redis(...), name="bench")] * {INSTANCES}',
            ),
            Contender(
                "naive",
                "naive GET, load on miss, SET",
                "redis-py",
                "call",
                "await state.naive(client)",
                naive_ns,
                config="await client.get(k) or (load(); await client.set(k, v))",
            ),
        ],
        columns=[RatioColumn("vs naive", {}, "naive")],
        notes=suite_notes,
        setup=setup,
        teardown=teardown,
        order=152,
        min_loops=1,
    )
    return suite


def suites() -> list[Suite]:
    return [_reads_async(), _reads_sync(), _stampede()]
