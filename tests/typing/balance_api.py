"""Checked by mypy --strict (tests/balance/test_typing.py), never run: the balancer's types."""

from __future__ import annotations

from typing import assert_type

import httpx

from buttress.balance import (
    Balancer,
    BalancerStats,
    Endpoint,
    HealthCheck,
    HealthStatus,
    HttpCheck,
    OutlierDetection,
    Pick,
    TcpCheck,
)
from buttress.hashing import HashRing
from buttress.integrations.httpx import BalancedTransport

balancer = Balancer(
    ["a:1", Endpoint("b:1", weight=2, priority=1)],
    outlier=OutlierDetection(consecutive_failures=3),
    health_check=HealthCheck(HttpCheck("/health"), interval=5.0),
)
keyed = Balancer(["a:1", "b:1"], strategy="hash", hasher=lambda addrs: HashRing(addrs))
tcp = HealthCheck(TcpCheck())


async def fetch(ep: Endpoint, uid: int) -> bytes:
    return ep.address.encode()


def fetch_sync(ep: Endpoint, uid: int) -> str:
    return ep.address


async def use() -> None:
    assert_type(await balancer.call(fetch, 1), bytes)
    assert_type(balancer.call_sync(fetch_sync, 1, key="k"), str)
    pick = balancer.pick(key="user:1")
    assert_type(pick, Pick)
    async with pick as ep:
        assert_type(ep, Endpoint)
        pick.fail()
    with keyed.pick("k") as ep2:
        assert_type(ep2.port, int | None)
    assert_type(balancer.stats(), BalancerStats)
    assert_type(await balancer.check_now(), dict[str, HealthStatus])
    async with balancer as started:
        assert_type(started, Balancer)
    async with httpx.AsyncClient(transport=BalancedTransport(balancer)) as client:
        await client.get("http://svc/")


def use_sync() -> None:
    with httpx.Client(transport=BalancedTransport(balancer, budget=False)) as sync_client:
        sync_client.get("http://svc/")
