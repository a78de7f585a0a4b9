"""Active health checks in virtual time: intervals, jitter, thresholds, timeouts, drain."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

import buttress as bt
from buttress.balance import (
    Balancer,
    Endpoint,
    EndpointEjected,
    EndpointHealthChanged,
    EndpointRestored,
    HealthCheck,
    HealthStatus,
    OutlierDetection,
)
from buttress.testing import FakeClock


class Script:
    """A checker whose verdict per address is set by the test; logs (time, address)."""

    def __init__(self, clock: FakeClock, delay: float = 0.0) -> None:
        self.clock = clock
        self.delay = delay
        self.status: dict[str, HealthStatus | bool] = {}
        self.log: list[tuple[float, str]] = []

    async def __call__(self, ep: Endpoint) -> HealthStatus | bool:
        self.log.append((self.clock.monotonic(), ep.address))
        if self.delay:
            await self.clock.sleep(self.delay)
        return self.status.get(ep.address, True)

    def times(self, address: str) -> list[float]:
        return [t for t, a in self.log if a == address]


def make(clock: FakeClock, check: HealthCheck, events: list[object] | None = None) -> Balancer:
    return Balancer(
        ["a:1", "b:1", "c:1"],
        health_check=check,
        panic_threshold=0.0,
        clock=clock,
        random=random.Random(2),
        listeners=[events.append] if events is not None else [],
    )


async def test_checks_run_every_interval_and_faster_while_unhealthy(clock: FakeClock) -> None:
    """Healthy endpoints are checked every interval, unhealthy ones every unhealthy_interval."""
    script = Script(clock)
    check = HealthCheck(
        script, interval=10.0, unhealthy_interval=2.0, jitter=0.0, unhealthy_threshold=1
    )
    b = make(clock, check)
    script.status["a:1"] = False
    async with b:
        await clock.sleep(20.5)
    assert script.times("b:1") == [0.0, 10.0, 20.0]
    assert script.times("a:1") == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0]
    assert clock.pending_timers == 0  # stop() cancelled every loop


async def test_jitter_spreads_checks_within_bounds(clock: FakeClock) -> None:
    """Each wait is interval x (1 +/- jitter), and waits differ."""
    script = Script(clock)
    b = make(clock, HealthCheck(script, interval=10.0, jitter=0.5))
    async with b:
        await clock.sleep(200.0)
    times = script.times("a:1")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(5.0 <= g <= 15.0 for g in gaps)
    assert len(set(gaps)) > 3


async def test_thresholds(clock: FakeClock) -> None:
    """Unhealthy after unhealthy_threshold failures in a row, healthy after healthy_threshold."""
    events: list[object] = []
    script = Script(clock)
    check = HealthCheck(
        script, interval=1.0, jitter=0.0, unhealthy_threshold=3, healthy_threshold=2
    )
    b = make(clock, check, events)
    async with b:
        await clock.sleep(0.5)
        script.status["a:1"] = False
        await clock.sleep(2.0)  # checks at 1, 2: two failures
        assert b.stats().endpoints[0].healthy
        await clock.sleep(1.0)  # third failure at 3
        assert not b.stats().endpoints[0].healthy
        assert {b.call_sync(lambda ep: ep.address) for _ in range(20)} == {"b:1", "c:1"}
        script.status["a:1"] = True
        await clock.sleep(1.0)  # one pass at 4
        assert not b.stats().endpoints[0].healthy
        await clock.sleep(1.0)  # second pass at 5
        assert b.stats().endpoints[0].healthy
    changes = [
        (e.endpoint, e.healthy, e.reason) for e in events if isinstance(e, EndpointHealthChanged)
    ]
    assert changes == [("a:1", False, "threshold"), ("a:1", True, "threshold")]


async def test_draining_is_an_immediate_fail(clock: FakeClock) -> None:
    """A DRAINING verdict takes the endpoint out at once, whatever the threshold."""
    events: list[object] = []
    script = Script(clock)
    b = make(clock, HealthCheck(script, interval=1.0, jitter=0.0, unhealthy_threshold=5), events)
    async with b:
        await clock.sleep(0.5)
        script.status["b:1"] = HealthStatus.DRAINING
        await clock.sleep(1.0)
        assert not b.stats().endpoints[1].healthy
    assert any(isinstance(e, EndpointHealthChanged) and e.reason == "immediate" for e in events)


async def test_a_check_that_outlives_its_timeout_fails(clock: FakeClock) -> None:
    """A check slower than timeout counts as failed (in virtual time)."""
    script = Script(clock, delay=5.0)
    b = make(clock, HealthCheck(script, timeout=1.0, unhealthy_threshold=1))
    results = await b.check_now()
    assert set(results.values()) == {HealthStatus.UNHEALTHY}
    assert clock.monotonic() == pytest.approx(1.0)


async def test_a_check_that_raises_fails(clock: FakeClock) -> None:
    """An exception from the checker is an unhealthy verdict, not a crash."""

    async def broken(ep: Endpoint) -> bool:
        raise OSError("no route")

    b = make(clock, HealthCheck(broken, unhealthy_threshold=1))
    assert set((await b.check_now()).values()) == {HealthStatus.UNHEALTHY}
    assert b.stats().available == 0


async def test_passing_check_unejects(clock: FakeClock) -> None:
    """With uneject=True a passed active check ends an outlier ejection early."""
    events: list[object] = []
    script = Script(clock)
    b = Balancer(
        ["a:1", "b:1"],
        strategy="round_robin",
        health_check=HealthCheck(script, interval=5.0, jitter=0.0),
        outlier=OutlierDetection(consecutive_failures=1, base_ejection_time=300.0),
        clock=clock,
        listeners=[events.append],
    )
    with pytest.raises(OSError), b.pick():
        raise OSError("reset")
    assert any(isinstance(e, EndpointEjected) for e in events)
    await b.check_now()
    assert b.stats().available == 2
    assert any(isinstance(e, EndpointRestored) and e.reason == "health_check" for e in events)


async def test_stop_cancels_checks_and_is_idempotent(clock: FakeClock) -> None:
    """stop() ends every background check; cancellation of the caller is not swallowed."""
    script = Script(clock)
    b = make(clock, HealthCheck(script, interval=1.0))
    await b.start()
    await b.start()  # idempotent
    await clock.sleep(0.5)
    await b.stop()
    await b.stop()
    n = len(script.log)
    await clock.sleep(10.0)
    assert len(script.log) == n

    async def run() -> None:
        async with b:
            await asyncio.sleep(3600)

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not b._tasks


def test_health_check_options_are_validated() -> None:
    """Bad health-check options are ConfigErrors naming the argument."""
    with pytest.raises(bt.ConfigError, match="interval must be"):
        HealthCheck(lambda ep: None, interval=0)  # type: ignore[arg-type, return-value]
    with pytest.raises(bt.ConfigError, match="jitter must be"):
        HealthCheck(lambda ep: None, jitter=1.0)  # type: ignore[arg-type, return-value]
    with pytest.raises(bt.ConfigError, match="checker must be"):
        HealthCheck(42)  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="check_now"):
        asyncio.run(Balancer(["a:1"]).check_now())
