"""Rate limiting: local decisions, Redis decisions, and batches of keys.

Every limiter is configured so that the measured requests are admitted (a limit far above
the request rate): the cost of a decision on the happy path. Local suites use each
library's in-memory backend; Redis suites talk to a private redis-server on loopback.
"""

from __future__ import annotations

from typing import Any

import limits
import pyrate_limiter as prl
import redis
import redis.asyncio
from limits import storage as limits_storage
from limits import strategies as limits_strategies

import buttress as bt
from _harness import Contender, RatioColumn, Suite, Target
from _redis import Server
from buttress.stores.redis._scripts import GCRA

HUGE = 10**9  # per second: never refuses during a run

_BT_CONFIG = "bt.RateLimiter(rate=10**9, burst=10**6)"
_ITEM = limits.RateLimitItemPerSecond(HUGE)


def _pyrate(algorithm: str) -> prl.Limiter:
    rate = prl.Rate(HUGE, prl.Duration.SECOND)
    if algorithm == "log":
        return prl.Limiter(rate)
    bucket_algorithm = prl.GCRA() if algorithm == "gcra" else prl.TokenBucket()
    return prl.Limiter(prl.StateBucket([rate], algorithm=bucket_algorithm))


def _local() -> Suite:
    limiter = bt.RateLimiter(rate=HUGE, burst=10**6)
    # One storage per strategy: their keys would collide in a shared one.
    fixed = limits_strategies.FixedWindowRateLimiter(limits_storage.MemoryStorage())
    moving = limits_strategies.MovingWindowRateLimiter(limits_storage.MemoryStorage())
    sliding = limits_strategies.SlidingWindowCounterRateLimiter(limits_storage.MemoryStorage())
    peers = {
        "limits-fixed": ("limits `FixedWindowRateLimiter.hit`", fixed, "fixed"),
        "limits-moving": ("limits `MovingWindowRateLimiter.hit`", moving, "moving"),
        "limits-sliding": ("limits `SlidingWindowCounterRateLimiter.hit`", sliding, "sliding"),
    }
    contenders = [
        Contender(
            "bt",
            "buttress `limiter.try_acquire_sync(key)` (GCRA, MemoryStore)",
            "buttress",
            "call",
            'limiter.try_acquire_sync("user-1")',
            {"limiter": limiter},
            config=f"limiter = {_BT_CONFIG}",
        )
    ]
    for key, (label, strategy, name) in peers.items():
        contenders.append(
            Contender(
                key,
                label,
                "limits",
                "call",
                'strategy.hit(item, "user-1")',
                {"strategy": strategy, "item": _ITEM},
                config=f"limits.strategies.{type(strategy).__name__}(MemoryStorage())"
                f".hit(RateLimitItemPerSecond(10**9), key)  # {name} window",
            )
        )
    for key, algorithm, label in [
        ("pyrate-log", "log", "pyrate-limiter `Limiter(Rate)` (in-memory log)"),
        ("pyrate-gcra", "gcra", "pyrate-limiter `StateBucket(GCRA)`"),
        ("pyrate-token", "token", "pyrate-limiter `StateBucket(TokenBucket)`"),
    ]:
        contenders.append(
            Contender(
                key,
                label,
                "pyrate-limiter",
                "call",
                'limiter.try_acquire("user-1", blocking=False)',
                {"limiter": _pyrate(algorithm)},
                config=f"pyrate_limiter {algorithm}: Rate(10**9, Duration.SECOND)",
            )
        )
    peer_keys = [c.key for c in contenders[1:]]
    return Suite(
        name="ratelimit-local",
        title="Local rate-limit decision (in process, admitted)",
        kind="sync",
        description=(
            "Time of one rate-limit decision for one key in memory, over an empty statement. "
            "buttress answers with a full `Decision` (allowed, remaining, retry_after, "
            "reset_after); the peers answer with a bool."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=contenders,
        columns=[
            RatioColumn("vs limits fixed", {}, "limits-fixed"),
            RatioColumn("vs pyrate GCRA", {}, "pyrate-gcra"),
        ],
        targets=[
            Target(f"buttress decision ≤ 1/3 of {key}'s (≥ 3x faster)", "bt", 1 / 3, ref=key)
            for key in peer_keys
        ]
        + [Target("a local rate-limit decision ≤ 1 µs", "bt", 1000.0, source="DESIGN.md §6")],
        order=70,
    )


class _RedisSuite:
    """A redis-server and clients created in the suite's setup, closed in teardown."""

    def __init__(self) -> None:
        self.server = Server()
        self.namespaces: list[dict[str, Any]] = []

    def ns(self) -> dict[str, Any]:
        namespace: dict[str, Any] = {}
        self.namespaces.append(namespace)
        return namespace


def _gcra_args() -> tuple[str, int, int, str]:
    return (repr(1e6 / HUGE), 10**6, 1, "0.0")


def _redis_sync() -> Suite:
    env = _RedisSuite()
    bt_ns, bare_ns, fixed_ns, moving_ns, pipe_ns = (env.ns() for _ in range(5))

    def setup() -> None:
        env.server.start()
        client = redis.Redis.from_url(env.server.url)
        client.script_load(GCRA.text)
        bt_ns["limiter"] = bt.RateLimiter(
            rate=HUGE, burst=10**6, store=bt.RedisStore(client), name="bench"
        )
        bare_ns.update(client=client, sha=GCRA.sha, args=_gcra_args())
        # Separate key prefixes: fixed and moving windows would collide on one key.
        fixed_store = limits_storage.RedisStorage(env.server.url, key_prefix="LIMITS-FIXED")
        moving_store = limits_storage.RedisStorage(env.server.url, key_prefix="LIMITS-MOVING")
        fixed_ns.update(strategy=limits_strategies.FixedWindowRateLimiter(fixed_store), item=_ITEM)
        moving_ns.update(
            strategy=limits_strategies.MovingWindowRateLimiter(moving_store), item=_ITEM
        )
        pipe_ns["client"] = client

    def teardown() -> None:
        env.server.stop()

    contenders = [
        Contender(
            "bt",
            "buttress `limiter.try_acquire_sync(key)` (RedisStore, sync client)",
            "buttress",
            "call",
            'limiter.try_acquire_sync("user-1")',
            bt_ns,
            config="bt.RateLimiter(rate=10**9, burst=10**6, "
            'store=bt.RedisStore(redis.Redis(...)), name="bench")',
        ),
        Contender(
            "evalsha",
            "bare `client.evalsha(<buttress GCRA script>)` (the round trip itself)",
            "redis-py",
            "call",
            'client.evalsha(sha, 1, "buttress:rl:bench:user-1", *args)',
            bare_ns,
            config="redis.Redis(...).evalsha(sha_of_gcra_lua, 1, key, interval_us, burst, 1, 0)",
        ),
        Contender(
            "limits-fixed",
            "limits `FixedWindowRateLimiter.hit` on `RedisStorage`",
            "limits",
            "call",
            'strategy.hit(item, "user-1")',
            fixed_ns,
            config="limits FixedWindowRateLimiter(RedisStorage(url))",
        ),
        Contender(
            "limits-moving",
            "limits `MovingWindowRateLimiter.hit` on `RedisStorage`",
            "limits",
            "call",
            'strategy.hit(item, "user-1")',
            moving_ns,
            config="limits MovingWindowRateLimiter(RedisStorage(url))",
        ),
        Contender(
            "ping",
            "(info) bare `client.ping()`",
            "redis-py",
            "call",
            "client.ping()",
            pipe_ns,
            config="redis.Redis(...).ping()",
        ),
    ]
    return Suite(
        name="ratelimit-redis",
        title="Redis rate-limit decision, one connection, sync",
        kind="sync",
        description=(
            "Time of one decision through a sync redis-py client to a redis-server on "
            "loopback (decisions per second = 10⁹ ÷ the figure). The bare EVALSHA row is "
            "the floor: the same script, called directly."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=contenders,
        columns=[
            RatioColumn("vs bare EVALSHA", {}, "evalsha"),
            RatioColumn("vs limits fixed", {}, "limits-fixed"),
        ],
        targets=[
            Target(
                "buttress Redis decisions ≥ 0.8x a bare EVALSHA's rate (time ≤ 1.25x)",
                "bt",
                1.25,
                ref="evalsha",
            )
        ],
        setup=setup,
        teardown=teardown,
        order=80,
    )


def _redis_async() -> Suite:
    env = _RedisSuite()
    bt_ns, bare_ns = env.ns(), env.ns()
    clients: list[Any] = []

    def setup() -> None:
        env.server.start()
        client = redis.asyncio.Redis.from_url(env.server.url)
        clients.append(client)
        redis.Redis.from_url(env.server.url).script_load(GCRA.text)
        bt_ns["limiter"] = bt.RateLimiter(
            rate=HUGE, burst=10**6, store=bt.RedisStore(client), name="bench"
        )
        bare_ns.update(client=client, sha=GCRA.sha, args=_gcra_args())

    def teardown() -> None:
        env.server.stop()

    return Suite(
        name="ratelimit-redis-async",
        title="Redis rate-limit decision, one connection, asyncio",
        kind="async",
        description=(
            "Time of one decision through a redis.asyncio client (one connection, "
            "sequential awaits). buttress adds its store breaker and store timeout."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=[
            Contender(
                "bt",
                "buttress `await limiter.try_acquire(key)` (RedisStore, asyncio client)",
                "buttress",
                "call",
                'await limiter.try_acquire("user-1")',
                bt_ns,
                config="bt.RateLimiter(..., store=bt.RedisStore(redis.asyncio.Redis(...)))",
            ),
            Contender(
                "evalsha",
                "bare `await client.evalsha(<buttress GCRA script>)`",
                "redis-py",
                "call",
                'await client.evalsha(sha, 1, "buttress:rl:bench:user-1", *args)',
                bare_ns,
                config="await redis.asyncio.Redis(...).evalsha(sha, 1, key, ...)",
            ),
        ],
        columns=[RatioColumn("vs bare EVALSHA", {}, "evalsha")],
        targets=[
            Target(
                "buttress async Redis decisions ≥ 0.8x a bare EVALSHA's rate (time ≤ 1.25x)",
                "bt",
                1.25,
                ref="evalsha",
            )
        ],
        setup=setup,
        teardown=teardown,
        order=85,
    )


BATCH = 100


def _redis_batch() -> Suite:
    env = _RedisSuite()
    one_ns, many_ns, pipe_ns = env.ns(), env.ns(), env.ns()
    keys = [f"user-{i}" for i in range(BATCH)]

    def setup() -> None:
        env.server.start()
        client = redis.Redis.from_url(env.server.url)
        client.script_load(GCRA.text)
        limiter = bt.RateLimiter(rate=HUGE, burst=10**6, store=bt.RedisStore(client), name="b")
        one_ns.update(limiter=limiter, keys=keys)
        many_ns.update(limiter=limiter, batch=[(k, 1) for k in keys])
        full_keys = [f"buttress:rl:b:{k}" for k in keys]
        pipe_ns.update(client=client, sha=GCRA.sha, args=_gcra_args(), keys=full_keys)

    def teardown() -> None:
        env.server.stop()

    return Suite(
        name="ratelimit-redis-batch",
        title=f"Redis decisions for {BATCH} keys at once",
        kind="sync",
        description=(
            f"Time to decide for {BATCH} different keys: one call per key, buttress's "
            "batched `acquire_many_sync` (one pipelined round trip), and a bare redis-py "
            "pipeline of the same EVALSHAs."
        ),
        baseline=Contender("bare", "empty statement", "-", "-", "pass", {}),
        contenders=[
            Contender(
                "one-by-one",
                f"buttress `try_acquire_sync` x {BATCH}",
                "buttress",
                "call",
                "for key in keys:\n    limiter.try_acquire_sync(key)",
                one_ns,
            ),
            Contender(
                "many",
                f"buttress `acquire_many_sync` of {BATCH}",
                "buttress",
                "call",
                "limiter.acquire_many_sync(batch)",
                many_ns,
            ),
            Contender(
                "pipeline",
                f"bare redis-py pipeline of {BATCH} EVALSHA",
                "redis-py",
                "call",
                "pipe = client.pipeline(transaction=False)\n"
                "for key in keys:\n    pipe.evalsha(sha, 1, key, *args)\n"
                "pipe.execute()",
                pipe_ns,
            ),
        ],
        columns=[
            RatioColumn("vs bare pipeline", {}, "pipeline"),
            RatioColumn("vs one by one", {}, "one-by-one"),
        ],
        setup=setup,
        teardown=teardown,
        order=95,
        min_loops=3,  # an iteration is a whole batch: tens of milliseconds
    )


def suites() -> list[Suite]:
    return [_local(), _redis_sync(), _redis_async(), _redis_batch()]
