"""The shared-limit scenario: several worker processes, one rate limit in Redis.

It needs a Redis (``buttress lab --redis URL``). Three worker processes share the offered
load (100 requests/s by default); the protected arm puts a RateLimiter of 40 requests/s
in front of the upstream in *each* process, all backed by one RedisStore key: the upstream
must see 40/s in total, not 40/s per process. The naked arm shows what three processes
send without it.
"""

from __future__ import annotations

from typing import Any

import buttress as bt

from ._hypotheses import Hypothesis
from ._model import BuildContext, Phase, Scenario, register

__all__ = ["SHARED_LIMIT"]

LIMIT = 40.0  # requests per second, for all processes together
BURST = 5
PROCESSES = 3


def _protect_shared(ctx: BuildContext) -> bt.Policy:
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    if ctx.redis_url is None:  # pragma: no cover - the runner refuses to run it without
        raise bt.ConfigError("the shared-limit scenario needs --redis URL")
    client = redis.asyncio.Redis.from_url(
        ctx.redis_url, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    return bt.RateLimiter(
        rate=LIMIT,
        per=1.0,
        burst=BURST,
        store=bt.RedisStore(client, prefix="buttress-lab:"),
        name=f"shared-{ctx.run_id}",  # a fresh key per run, the same in every process
        on_store_error="fail_closed",  # a lab run without Redis should not look like a pass
    )


def _seconds(arm: Any) -> float:
    return float(arm.spans[-1].end) if arm.spans else 0.0


def _within_limit() -> Hypothesis:
    def test(naked: Any, protected: Any) -> tuple[bool, str]:
        # GCRA's bound over the real time the load took to arrive (a busy machine
        # stretches the schedule), with 2 % for the upstream seeing admissions a few
        # milliseconds after Redis decided them.
        seconds = max(_seconds(protected), protected.upstream.span)
        bound = LIMIT * seconds + BURST
        got = protected.upstream.requests
        held = got <= bound * 1.02 + 1
        return held, f"{got} upstream requests, bound {bound:.0f} ({seconds:.2f} s)"

    return Hypothesis(
        f"upstream load <= {LIMIT:g}/s x duration + burst, over all {PROCESSES} processes", test
    )


def _limit_used() -> Hypothesis:
    def test(naked: Any, protected: Any) -> tuple[bool, str]:
        seconds = _seconds(protected)
        expected = LIMIT * seconds
        got = protected.summary.success
        return got >= 0.9 * expected, f"{got} admitted, {expected:.0f} at the full limit"

    return Hypothesis("protected admits >= 90 % of the limit (it is shared, not split)", test)


def _naked_floods() -> Hypothesis:
    def test(naked: Any, protected: Any) -> tuple[bool, str]:
        seconds = _seconds(naked)
        rate = naked.upstream.requests / seconds if seconds else 0.0
        return rate >= 2 * LIMIT, f"naked upstream load {rate:.0f}/s"

    return Hypothesis(f"without the limit the upstream gets >= 2 x {LIMIT:g}/s", test)


SHARED_LIMIT = register(
    Scenario(
        name="shared-limit",
        description=f"{PROCESSES} worker processes share one {LIMIT:g} req/s limit in Redis",
        phases=(Phase("steady", 10.0),),
        protect=_protect_shared,
        hypotheses=(_within_limit(), _limit_used(), _naked_floods()),
        processes=PROCESSES,
        needs=("redis",),
    )
)
