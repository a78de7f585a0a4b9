"""Checked by mypy --strict (tests/test_typing.py), never run: the public API's types."""

from __future__ import annotations

from typing import assert_type

import buttress as bt

retry = bt.Retry(attempts=3, on=ConnectionError)
breaker = bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(100))
policy = bt.pipeline(bt.Fallback(None), retry, breaker, bt.Bulkhead(), bt.Timeout(1.0))


@policy
async def fetch(url: str, *, limit: int = 1) -> bytes:
    return b""


@retry
def parse(data: bytes) -> int:
    return len(data)


async def use() -> None:
    assert_type(await fetch("u", limit=2), bytes)
    assert_type(parse(b"x"), int)
    assert_type(await policy.call(fetch, "u"), bytes)
    assert_type(policy.call_sync(parse, b"x"), int)
    assert_type(breaker.state, bt.BreakerState)
    assert_type(breaker.stats(), bt.BreakerStats)
    assert_type(bt.remaining(), float | None)
    with bt.deadline(1.0) as d:
        assert_type(d, bt.Deadline | None)
    async with bt.deadline(1.0):
        pass


async def misuse() -> None:
    await fetch(1)  # type: ignore[arg-type]
    parse("text")  # type: ignore[arg-type]
    await policy.call(fetch, "u", nope=1)  # type: ignore[call-arg]
