"""Real processes (multiprocessing spawn) sharing a TieredCache through one Redis.

Three processes each fire 200 concurrent misses on one key: the loader (which counts its
runs in Redis, the only thing the processes share) runs once in all. Then the parent
overwrites the key and every child's near cache must drop its copy and read the new value.
Real time, bounded by timeouts; nothing asserts a speed.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from ..servers import RedisServer
from .helpers import fresh_name

PROCESSES = 3


def _child(url: str, name: str, go: Any, updated: Any, results: Any) -> None:
    import asyncio

    import redis.asyncio

    from buttress.cache import TieredCache

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        counter = redis.asyncio.Redis.from_url(url)
        cache = TieredCache(client, name=name)
        assert await cache.start()

        async def load() -> str:
            await counter.incr(f"{name}:loads")
            await asyncio.sleep(0.1)  # a slow query
            return "v1"

        await asyncio.get_running_loop().run_in_executor(None, go.wait, 20)
        values = await asyncio.gather(*(cache.get_or_load("hot", load) for _ in range(200)))
        first = set(values)
        assert cache.local.get("hot") == "v1"
        results.put(("loaded", first))
        await asyncio.get_running_loop().run_in_executor(None, updated.wait, 20)
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        seen = await cache.get("hot")
        while seen != "v2" and loop.time() < end:
            await asyncio.sleep(0.01)
            seen = await cache.get("hot")
        results.put(("after", seen))
        await cache.aclose()
        await counter.aclose()

    asyncio.run(main())


def test_processes_load_once_and_see_invalidations(redis_server: RedisServer) -> None:
    """One load across three processes; a write in the parent reaches their near caches."""
    import redis

    from buttress.cache import RedisCache

    ctx = multiprocessing.get_context("spawn")
    name = fresh_name() + "mp"
    go, updated, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(redis_server.url, name, go, updated, results))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        go.set()
        loaded = [results.get(timeout=60) for _ in range(PROCESSES)]
        assert all(kind == "loaded" and values == {"v1"} for kind, values in loaded)
        client = redis.Redis.from_url(redis_server.url)
        assert int(client.get(f"{name}:loads")) == 1
        RedisCache(client, name=name).set_sync("hot", "v2")
        updated.set()
        after = [results.get(timeout=30) for _ in range(PROCESSES)]
        assert after == [("after", "v2")] * PROCESSES
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs)
