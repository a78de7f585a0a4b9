"""Real parts: several real HTTP servers on loopback; the balancer reacts to real faults."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

import buttress as bt
from buttress.balance import (
    Balancer,
    HealthCheck,
    HealthStatus,
    HttpCheck,
    OutlierDetection,
    TcpCheck,
)
from buttress.integrations.httpx import BalancedTransport
from buttress.testing import FakeClock

from .replicas import LoopThread, Replica


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    """Three fresh replicas on free loopback ports."""
    loop = LoopThread()
    reps = loop.replicas(3)
    try:
        yield reps
    finally:
        loop.close(reps)


def balancer(reps: list[Replica], **kwargs: object) -> Balancer:
    kwargs.setdefault(
        "outlier",
        OutlierDetection(consecutive_failures=3, base_ejection_time=0.3, max_ejection_percent=50),
    )
    return Balancer([r.address for r in reps], random=random.Random(5), **kwargs)  # type: ignore[arg-type]


def shares(reps: list[Replica], before: list[int]) -> list[int]:
    return [r.hits - b for r, b in zip(reps, before, strict=True)]


async def test_failing_replica_is_ejected_then_returns(replicas: list[Replica]) -> None:
    """503s eject a replica; retries hide them; after recovery it gets traffic again.
    Real servers, virtual time: the ejection ends when the FakeClock passes it."""
    clock = FakeClock()
    b = balancer(replicas, strategy="round_robin", clock=clock)
    async with httpx.AsyncClient(
        transport=BalancedTransport(b, breaker=None), base_url="http://svc"
    ) as client:
        replicas[0].mode = "fail"
        statuses = Counter([(await client.get("/")).status_code for _ in range(60)])
        assert statuses == {200: 60}  # every 503 was retried on another replica
        assert b.stats().endpoints[0].ejected
        before = [r.hits for r in replicas]
        for _ in range(30):
            await client.get("/")
        assert shares(replicas, before)[0] == 0
        replicas[0].mode = "ok"
        clock.advance(0.35)  # past base_ejection_time
        before = [r.hits for r in replicas]
        for _ in range(30):
            await client.get("/")
        assert shares(replicas, before)[0] > 0


async def test_slow_replica_gets_little_traffic(replicas: list[Replica]) -> None:
    """Peak EWMA shifts load away from a slow replica under concurrency."""
    b = balancer(replicas)
    replicas[2].mode = "slow"
    replicas[2].delay = 0.05
    async with httpx.AsyncClient(transport=BalancedTransport(b), base_url="http://svc") as client:

        async def worker() -> None:
            for _ in range(25):
                assert (await client.get("/")).status_code == 200

        await asyncio.gather(*(worker() for _ in range(4)))
    hits = [r.hits for r in replicas]
    assert hits[2] < 0.15 * sum(hits)


async def test_killed_replica_is_ejected_and_returns_after_revival(
    replicas: list[Replica],
) -> None:
    """A dead replica (connection refused) is ejected; revived, it is used again."""
    clock = FakeClock()
    b = balancer(replicas, strategy="round_robin", clock=clock)
    transport = BalancedTransport(b, breaker=None)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        replicas[1].kill()
        for _ in range(30):
            assert (await client.get("/")).status_code == 200  # connect errors re-sent
        assert b.stats().endpoints[1].ejected
        replicas[1].revive()
        clock.advance(0.35)  # past base_ejection_time
        before = replicas[1].hits
        for _ in range(30):
            await client.get("/")
        assert replicas[1].hits > before


async def test_active_http_checks_see_drain_death_and_recovery(replicas: list[Replica]) -> None:
    """HTTP checks: 503 on /health takes a replica out at once; a dead one goes after the
    threshold; both come back after passing checks."""
    check = HealthCheck(
        HttpCheck("/health"),
        interval=0.05,
        unhealthy_interval=0.02,
        healthy_threshold=2,
        unhealthy_threshold=2,
        timeout=0.5,
    )
    b = balancer(replicas, health_check=check, outlier=None, panic_threshold=0.3)
    async with b:
        replicas[0].health = 503
        await _until(lambda: not b.stats().endpoints[0].healthy)
        replicas[2].kill()
        await _until(lambda: not b.stats().endpoints[2].healthy)
        assert {b.call_sync(lambda ep: ep.address) for _ in range(30)} == {replicas[1].address}
        replicas[0].health = 200
        replicas[2].revive()
        await _until(lambda: b.stats().available == 3)


async def test_tcp_check_and_check_now(replicas: list[Replica]) -> None:
    """check_now() runs one round of TCP checks and reports each result."""
    b = balancer(replicas, health_check=HealthCheck(TcpCheck(), unhealthy_threshold=1))
    replicas[1].kill()
    results = await b.check_now()
    assert results[replicas[1].address] is HealthStatus.UNHEALTHY
    assert results[replicas[0].address] is HealthStatus.HEALTHY
    assert not b.stats().endpoints[1].healthy


def test_sync_client_balances_and_sends_the_deadline(replicas: list[Replica]) -> None:
    """httpx.Client works too; the remaining deadline travels as x-request-timeout."""
    b = balancer(replicas, strategy="round_robin")
    with httpx.Client(transport=BalancedTransport(b), base_url="http://svc") as client:
        with bt.deadline(5.0):
            bodies = {client.get("/").text for _ in range(6)}
        assert bodies == {"r0", "r1", "r2"}
        sent = bt.parse_timeout(replicas[0].last_headers["x-request-timeout"])
        assert 0 < sent <= 5.0
        assert replicas[0].last_headers["host"] == "svc"


def test_rate_limited_replica_attracts_less_traffic(replicas: list[Replica]) -> None:
    """A replica answering 429 at once gets less traffic, not more, and is not ejected."""
    b = balancer(replicas, failure_penalty=0.5)
    replicas[0].mode = "limit"
    with httpx.Client(
        transport=BalancedTransport(b, retry_statuses=()), base_url="http://svc"
    ) as client:
        for _ in range(90):
            client.get("/")
    hits = [r.hits for r in replicas]
    assert hits[0] < 0.15 * sum(hits)
    assert not b.stats().endpoints[0].ejected


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a condition that real background checks will make true (5 s at most)."""
    async with asyncio.timeout(5.0):
        while not condition():
            await asyncio.sleep(0.01)
