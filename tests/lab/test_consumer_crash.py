"""The consumer-crash scenario: naive ack-on-receive consumers vs buttress Consumers,
both crashing at random under load."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from buttress import lab
from buttress.lab._hosting import HostContext
from buttress.lab._results import ArmResult
from buttress.lab._scenarios_messaging import (
    CONSUMER_CRASH,
    SETTLE,
    ConsumerCrashService,
    _settle,
    nothing_lost,
)
from buttress.messaging import MemoryTransport

from ..servers import RedisServer
from . import steady


def test_consumer_crash_is_registered() -> None:
    """The lab knows consumer-crash; it needs nothing and hosts its own service."""
    assert lab.get_scenario("consumer-crash") is CONSUMER_CRASH
    assert CONSUMER_CRASH.host is not None and CONSUMER_CRASH.needs == ()
    assert CONSUMER_CRASH.quick == 1.5


async def test_effects_are_applied_once() -> None:
    """A redelivered message whose effect was applied is absorbed, not applied twice."""
    service = ConsumerCrashService(
        HostContext("protected", random.Random(1), 1.0), MemoryTransport(), "t"
    )
    runs = 0

    async def call() -> str:
        nonlocal runs
        runs += 1
        return "ok"

    serving = asyncio.ensure_future(service.serve(call))
    await asyncio.sleep(0)
    (key,) = service.calls
    await service.effect(key)
    await service.effect(key)
    assert await serving == "ok"
    assert runs == 1 and service.duplicates == 1
    assert service.notes()["processed"] == 1


async def _settle_on_a_stalling_loop(service: ConsumerCrashService, keys: int) -> float:
    """Run _settle while a consumer applies ``keys`` messages, one per loop step, on a
    loop whose clock jumps 0.5 s at every reading (as if the process kept freezing);
    returns the seconds the clock moved."""
    loop = asyncio.get_running_loop()
    real, jump = loop.time, 0.0

    def stalling() -> float:
        nonlocal jump
        jump += 0.5
        return real() + jump

    async def consume() -> None:
        for key in range(keys):
            await asyncio.sleep(0.05)
            service._applied(str(key))

    loop.time = stalling  # type: ignore[method-assign]
    try:
        consumer = asyncio.ensure_future(consume())
        await _settle(service)
        consumer.cancel()
        await asyncio.wait([consumer])
    finally:
        del loop.time
    return jump


async def test_settle_waits_while_the_backlog_moves_however_slow_the_machine() -> None:
    """The end of an arm waits for a backlog that keeps moving, counting only time the
    loop ran: 40 messages processed across many apparent seconds are all counted."""
    service = ConsumerCrashService(
        HostContext("protected", random.Random(1), 1.0), MemoryTransport(), "t"
    )
    service.published = 40
    moved = await _settle_on_a_stalling_loop(service, 40)
    assert moved > 10 * SETTLE  # a wall-clock deadline would have given up long before
    assert service.settled.is_set() and len(service.applied) == 40


async def test_settle_gives_up_once_the_backlog_stops_moving() -> None:
    """Messages that nobody will process (a naive consumer's losses) end the wait after
    SETTLE seconds of no progress."""
    service = ConsumerCrashService(
        HostContext("naked", random.Random(1), 1.0), MemoryTransport(), "t"
    )
    service.published = 10
    await _settle_on_a_stalling_loop(service, 0)
    assert not service.settled.is_set() and not service.applied


def _arm(notes: dict[str, float]) -> ArmResult:
    stats = lab.UpstreamStats(0, 0, 0, 0, 0, 0, 0)
    return lab.ArmResult("arm", (), stats, (), 1.0, notes=notes)


def test_nothing_lost_reads_the_notes() -> None:
    """nothing_lost() holds only when the protected arm lost 0 of a non-empty load."""
    check = nothing_lost()
    ok = check.test(_arm({"lost": 3}), _arm({"lost": 0, "published": 10}))
    assert ok[0] and "lost 0 of 10" in ok[1]
    assert not check.test(_arm({}), _arm({"lost": 1, "published": 10}))[0]


@pytest.mark.slow
def test_protected_consumers_lose_nothing() -> None:
    """Under random crashes the protected arm processes every message it published."""
    report = steady.run_lab([CONSUMER_CRASH], lab.LabConfig(duration=1.5, seed=7))
    result = report.scenarios[0]
    assert result.held, [c for c in result.checks if not c.held]
    protected, naked = result.protected.notes, result.naked.notes
    assert protected["lost"] == 0 and protected["crashes"] >= 1
    assert protected["processed"] == protected["published"] > 0
    assert naked["crashes"] >= 1
    text = lab.render(report)
    assert "duplicates_absorbed" in text
    data = json.loads(json.dumps(report.to_dict(samples=False)))
    assert data["scenarios"][0]["arms"]["protected"]["notes"]["lost"] == 0


@pytest.mark.slow
def test_on_redis_streams(redis_server: RedisServer) -> None:
    """With --redis the scenario runs on Redis Streams and still loses nothing."""
    config = lab.LabConfig(duration=1.0, seed=3, redis_url=redis_server.url)
    result = steady.run_lab([CONSUMER_CRASH], config).scenarios[0]
    assert result.protected.notes["lost"] == 0, result.protected.notes
    assert result.held


async def test_a_consumer_that_swallows_a_cancellation_is_still_reaped() -> None:
    """redis-py 8 can swallow a cancellation that lands in a blocking XREADGROUP; the
    scenario's reaper cancels again until the crashed consumer is gone (it hung once)."""
    from buttress.lab._scenarios_messaging import ConsumerCrashService, _run_consumers

    transport = MemoryTransport()
    service = ConsumerCrashService(HostContext("naked", random.Random(1), 1.0), transport, "t")
    swallowed = 0

    async def make() -> MemoryTransport:
        return transport

    async def start(service: object, transport: object) -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == 0:
                    swallowed += 1  # returns as if the read had completed
                    continue
                raise

    stop = asyncio.Event()
    runner = asyncio.ensure_future(_run_consumers(service, make, start, stop))
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert swallowed == 1
