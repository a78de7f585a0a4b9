"""The consumer's own logic: backoff on the fake clock, policies, supervision, options,
and the pure settlement core (hypothesis)."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import buttress as bt
from buttress.messaging import (
    Consumer,
    ConsumerStopped,
    MemoryTransport,
    Message,
    MessageDeadLettered,
    MessageRetried,
    Reject,
    Requeue,
    on_arrival,
    on_failure,
)
from buttress.supervise import Supervisor
from buttress.testing import FakeClock

from ._helpers import Running, topic, until


async def _noop(msg: Message) -> None:
    return None


async def test_backoff_delays_follow_the_strategy_on_the_fake_clock(clock: FakeClock) -> None:
    transport = MemoryTransport(clock=clock)
    name = topic()
    times: list[float] = []

    async def handle(msg: Message) -> None:
        times.append(clock.monotonic())
        if len(times) < 4:
            raise ConnectionError("down")

    await transport.publish(name, b"x")
    consumer = Consumer(
        transport,
        name,
        handle,
        backoff=bt.Backoff.exponential(base=1.0, cap=3.0, jitter="none"),
        lease=60.0,
        clock=clock,
    )
    task = asyncio.create_task(consumer.run())
    while consumer.stats().handled < 1:
        await clock.sleep(0.5)
    await consumer.stop()
    await task
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1.0, 2.0, 3.0], abs=0.01)  # 1, 2, then capped at 3


async def test_requeue_delay_and_lease_cap(clock: FakeClock, recorder) -> None:  # type: ignore[no-untyped-def]
    transport = MemoryTransport(clock=clock)
    name = topic()
    times: list[float] = []

    async def handle(msg: Message) -> None:
        times.append(clock.monotonic())
        if len(times) == 1:
            raise Requeue(delay=2.5)
        if len(times) == 2:
            raise Requeue(delay=1000.0)  # capped at the lease

    await transport.publish(name, b"x")
    consumer = Consumer(transport, name, handle, lease=10.0, clock=clock)
    task = asyncio.create_task(consumer.run())
    while consumer.stats().handled < 1:
        await clock.sleep(0.5)
    await consumer.stop()
    await task
    assert times[1] - times[0] == pytest.approx(2.5, abs=0.01)
    assert times[2] - times[1] == pytest.approx(10.0, abs=0.01)
    delays = [e.delay for e in recorder.of(MessageRetried)]
    assert delays == [2.5, 10.0]


async def test_crashed_deliveries_count_toward_max(clock: FakeClock, recorder) -> None:  # type: ignore[no-untyped-def]
    """A message whose deliveries all crashed (never settled) is dead-lettered on
    arrival once over max_deliveries, without running the handler again."""
    transport = MemoryTransport(clock=clock)
    name = topic()
    await transport.publish(name, b"crash-me")
    for _ in range(3):  # three consumers take it and die
        sub = await transport.subscribe(name, group="g", consumer="doomed", lease=1.0)
        assert len(await sub.fetch(1, 0.0)) == 1
        clock.advance(1.0)
    calls = 0

    async def handle(msg: Message) -> None:
        nonlocal calls
        calls += 1

    consumer = Consumer(transport, name, handle, group="g", max_deliveries=3, clock=clock)
    task = asyncio.create_task(consumer.run())
    while consumer.stats().dead_lettered < 1:
        await clock.sleep(0.1)
    await consumer.stop()
    await task
    assert calls == 0
    (event,) = recorder.of(MessageDeadLettered)
    assert event.reason == "redelivered" and event.deliveries == 4
    assert transport.size(f"{name}.dlq") == 1


async def test_policy_wraps_the_handler() -> None:
    transport = MemoryTransport()
    name = topic()
    calls = 0

    async def handle(msg: Message) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)

    await transport.publish(name, b"x")
    consumer = Consumer(
        transport,
        name,
        handle,
        policy=bt.pipeline(bt.Timeout(0.05)),
        backoff=bt.Backoff.constant(0.0),
        lease=2.0,
    )
    async with Running(consumer):
        await until(lambda: consumer.stats().handled == 1)
    assert calls == 2 and consumer.stats().retried == 1


async def test_runs_as_a_supervisor_child(recorder) -> None:  # type: ignore[no-untyped-def]
    transport = MemoryTransport()
    name = topic()
    seen: list[bytes] = []

    async def handle(msg: Message) -> None:
        seen.append(msg.body)

    consumer = Consumer(transport, name, handle, lease=2.0, drain_timeout=1.0)
    async with Supervisor([consumer.child_spec("orders")]):
        for i in range(5):
            await transport.publish(name, str(i).encode())
        await until(lambda: len(seen) == 5)
    assert not consumer.stats().running
    (stopped,) = recorder.of(ConsumerStopped)
    assert stopped.reason == "cancelled" and stopped.released == 0


async def test_drain_lets_quick_handlers_finish() -> None:
    transport = MemoryTransport()
    name = topic()
    started = asyncio.Event()

    async def handle(msg: Message) -> None:
        started.set()
        await asyncio.sleep(0.05)

    await transport.publish(name, b"x")
    consumer = Consumer(transport, name, handle, lease=2.0, drain_timeout=5.0)
    task = asyncio.create_task(consumer.run())
    await started.wait()
    await consumer.stop()
    await task
    assert consumer.stats().handled == 1 and consumer.stats().released == 0
    assert transport.pending(name, "default") == 0


async def test_dead_letter_none_drops() -> None:
    transport = MemoryTransport()
    name = topic()

    async def handle(msg: Message) -> None:
        raise Reject()

    await transport.publish(name, b"x")
    consumer = Consumer(transport, name, handle, dead_letter=None, lease=2.0)
    async with Running(consumer):
        await until(lambda: consumer.stats().dead_lettered == 1)
    assert transport.pending(name, "default") == 0 and transport.size(f"{name}.dlq") == 0


async def test_run_twice_is_refused() -> None:
    transport = MemoryTransport()
    consumer = Consumer(transport, topic(), _noop)
    async with Running(consumer):
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            await consumer.run()


@pytest.mark.parametrize(
    ("option", "value", "text"),
    [
        ("concurrency", 0, "concurrency must be an int >= 1, got 0"),
        ("prefetch", 0, "prefetch must be an int >= 1, got 0"),
        ("max_deliveries", 0, "max_deliveries must be an int >= 1, got 0"),
        ("lease", 0, "lease must be a duration > 0 seconds, got 0"),
        ("fetch_wait", -1, "fetch_wait must be a duration > 0 seconds, got -1"),
        ("dead_letter", "{topic}", "dead_letter must be a topic other than the consumed one"),
        ("group", "", "group must be a non-empty str"),
        ("backoff", 1.0, "backoff must be a bt.Backoff"),
        ("policy", object(), "policy must be a buttress policy"),
    ],
)
def test_options_are_validated(option: str, value: object, text: str) -> None:
    with pytest.raises(bt.ConfigError, match=text.replace("{", r"\{").replace("}", r"\}")):
        Consumer(MemoryTransport(), "t", _noop, **{option: value})  # type: ignore[arg-type]


def test_built_without_an_event_loop() -> None:
    transport = MemoryTransport()
    consumer = Consumer(transport, "t", _noop)
    assert consumer.stats().received == 0 and not consumer.stats().running


@given(
    deliveries=st.integers(1, 50),
    max_deliveries=st.one_of(st.none(), st.integers(1, 20)),
    cap=st.floats(0.0, 100.0),
    lease=st.floats(0.001, 100.0),
    kind=st.sampled_from(["error", "requeue", "requeue-delay", "reject"]),
    seed=st.integers(0, 2**32),
)
def test_settlement_invariants(
    deliveries: int,
    max_deliveries: int | None,
    cap: float,
    lease: float,
    kind: str,
    seed: int,
) -> None:
    error: BaseException = {
        "error": ValueError("x"),
        "requeue": Requeue(),
        "requeue-delay": Requeue(delay=cap * 2),
        "reject": Reject("bad"),
    }[kind]
    backoff = bt.Backoff.exponential(base=0.0, cap=cap, jitter="full")
    decision = on_failure(
        deliveries,
        error,
        max_deliveries=max_deliveries,
        backoff=backoff,
        rng=random.Random(seed),
        max_delay=lease,
    )
    if kind == "reject":
        assert decision.action == "dead_letter" and decision.reason == "bad"
    elif max_deliveries is not None and deliveries >= max_deliveries:
        assert decision.action == "dead_letter" and decision.reason == "max_deliveries"
    else:
        assert decision.action == "retry"
        assert 0.0 <= decision.delay <= lease
        if kind != "requeue-delay":
            assert decision.delay <= cap
    arrival = on_arrival(deliveries, max_deliveries)
    assert (arrival is None) == (max_deliveries is None or deliveries <= max_deliveries)
