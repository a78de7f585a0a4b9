"""buttress.integrations.otel: events become OpenTelemetry metrics with stable names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import buttress as bt
from buttress import events
from buttress._events import GLOBAL_LISTENERS
from buttress.integrations.otel import BREAKER_STATE_VALUES, OTelMetrics
from buttress.testing import FakeClock


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def otel(reader: InMemoryMetricReader) -> Iterator[OTelMetrics]:
    with OTelMetrics(MeterProvider(metric_readers=[reader])) as metrics:
        yield metrics


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """metric name -> [(attributes, value or histogram point)]."""
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "buttress"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", point)
                    found.setdefault(metric.name, []).append((dict(point.attributes), value))
    return found


def value(found: dict[str, list[tuple[dict[str, Any], Any]]], name: str, **attrs: Any) -> Any:
    matches = [
        v for a, v in found.get(name, []) if all(a.get(k) == want for k, want in attrs.items())
    ]
    assert len(matches) == 1, (name, attrs, found.get(name))
    return matches[0]


def fail() -> None:
    raise ConnectionError("down")


def test_breaker_state_and_transitions(otel: OTelMetrics, reader: InMemoryMetricReader) -> None:
    clock = FakeClock()
    breaker = bt.CircuitBreaker(
        name="db", consecutive_failures=2, open_for=1.0, half_open_calls=1, clock=clock
    )
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call_sync(fail)
    found = points(reader)
    assert value(found, "buttress.breaker.state", **{"buttress.policy": "db"}) == 2
    assert (
        value(
            found,
            "buttress.breaker.transitions",
            **{"buttress.policy": "db", "buttress.from": "closed", "buttress.to": "open"},
        )
        == 1
    )
    with pytest.raises(bt.CircuitOpenError):
        breaker.call_sync(fail)
    found = points(reader)
    assert value(found, "buttress.rejected", **{"buttress.kind": "breaker"}) == 1
    clock.advance(1.0)
    assert breaker.call_sync(lambda: 7) == 7
    found = points(reader)
    assert value(found, "buttress.breaker.state", **{"buttress.policy": "db"}) == 0
    transitions = {
        (a["buttress.from"], a["buttress.to"]): v for a, v in found["buttress.breaker.transitions"]
    }
    assert transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }


def test_state_values_cover_every_breaker_state() -> None:
    assert set(BREAKER_STATE_VALUES) == set(bt.BreakerState)
    assert len(set(BREAKER_STATE_VALUES.values())) == len(bt.BreakerState)


def test_retry_counts_and_delays(otel: OTelMetrics, reader: InMemoryMetricReader) -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("again")
        return "ok"

    retry = bt.Retry(
        name="api",
        attempts=3,
        on=ConnectionError,
        backoff=bt.Backoff.constant(0.25),
        clock=FakeClock(),
    )
    assert retry.call_sync(flaky) == "ok"
    found = points(reader)
    assert value(found, "buttress.retry.scheduled", **{"buttress.policy": "api"}) == 2
    histogram = value(found, "buttress.retry.delay", **{"buttress.policy": "api"})
    assert histogram.count == 2
    assert histogram.sum == pytest.approx(0.5)
    assert (
        value(
            found,
            "buttress.events",
            **{"buttress.event": "RetryScheduled", "buttress.policy": "api"},
        )
        == 2
    )

    calls = -10
    with pytest.raises(ConnectionError):
        retry.call_sync(flaky)
    found = points(reader)
    [(attrs, gave_up)] = found["buttress.retry.gave_up"]
    assert gave_up == 1
    assert attrs["buttress.policy"] == "api"
    assert isinstance(attrs["buttress.reason"], str)


async def test_timeout_fallback_and_limit(otel: OTelMetrics, reader: InMemoryMetricReader) -> None:
    clock = FakeClock()

    async def slow() -> int:
        await clock.sleep(5.0)
        return 1

    policy = bt.pipeline(bt.Fallback(0, name="fb"), bt.Timeout(1.0, name="t", clock=clock))
    assert await policy.call(slow) == 0
    found = points(reader)
    assert value(found, "buttress.timeout.fired", **{"buttress.policy": "t"}) == 1
    assert value(found, "buttress.fallback.used", **{"buttress.policy": "fb"}) == 1

    otel.record(events.LimitChanged("limit", 10, 12, 0.02, False))
    found = points(reader)
    assert value(found, "buttress.limit", **{"buttress.policy": "limit"}) == 12
    assert value(found, "buttress.limit.rtt", **{"buttress.policy": "limit"}).count == 1


def test_store_fallback_and_unknown_event_kinds(
    otel: OTelMetrics, reader: InMemoryMetricReader
) -> None:
    otel.record(events.StoreFellBack("rl", "fail_open", TimeoutError("slow")))

    class Custom(events.Event):
        pass

    otel.record(Custom("mine"))
    found = points(reader)
    assert (
        value(
            found,
            "buttress.store.fell_back",
            **{"buttress.mode": "fail_open", "error.type": "TimeoutError"},
        )
        == 1
    )
    assert value(found, "buttress.events", **{"buttress.event": "Custom"}) == 1


def test_install_close_are_idempotent_and_stop_recording(reader: InMemoryMetricReader) -> None:
    metrics = OTelMetrics(MeterProvider(metric_readers=[reader]))
    assert not metrics.installed
    before = len(GLOBAL_LISTENERS)
    metrics.install()
    metrics.install()
    assert len(GLOBAL_LISTENERS) == before + 1
    breaker = bt.CircuitBreaker(name="b", consecutive_failures=1, clock=FakeClock())
    with pytest.raises(ConnectionError):
        breaker.call_sync(fail)
    metrics.close()
    metrics.close()
    assert len(GLOBAL_LISTENERS) == before
    breaker.reset()
    found = points(reader)
    # reset() emitted a transition after close: not recorded
    assert sum(v for _, v in found["buttress.breaker.transitions"]) == 1


def test_bad_meter_provider_is_named() -> None:
    with pytest.raises(bt.ConfigError, match="meter_provider"):
        OTelMetrics(object())  # type: ignore[arg-type]


def test_default_provider_is_the_global_noop() -> None:
    metrics = OTelMetrics()
    with metrics:
        breaker = bt.CircuitBreaker(consecutive_failures=1, clock=FakeClock())
        with pytest.raises(ConnectionError):
            breaker.call_sync(fail)
    assert not metrics.installed


async def test_supervisor_restarts_and_exits(
    otel: OTelMetrics, reader: InMemoryMetricReader
) -> None:
    crashes = 0

    async def worker() -> None:
        nonlocal crashes
        if crashes < 2:
            crashes += 1
            raise RuntimeError("crash")
        await asyncio.Event().wait()

    supervisor = bt.Supervisor(
        [bt.ChildSpec("w", worker)], name="sup", max_restarts=5, within=5.0, clock=FakeClock()
    )
    async with supervisor:
        while supervisor.stats().restarts < 2:
            await asyncio.sleep(0)
    found = points(reader)
    assert value(found, "buttress.supervisor.restarts", **{"buttress.child": "w"}) == 2
    assert value(found, "buttress.supervisor.exits", **{"buttress.reason": "exception"}) == 2


async def test_chaos_injections_are_counted(
    otel: OTelMetrics, reader: InMemoryMetricReader
) -> None:
    fault = bt.chaos.Fault(ConnectionError, rate=1.0, name="chaos")

    async def ok() -> int:
        return 1

    with pytest.raises(ConnectionError):
        await fault.call(ok)
    found = points(reader)
    assert value(found, "buttress.chaos.injected", **{"buttress.kind": "exception"}) == 1


def test_balancer_ejections_and_endpoint_state(
    otel: OTelMetrics, reader: InMemoryMetricReader
) -> None:
    clock = FakeClock()
    balancer = bt.Balancer(
        ["a:1", "b:1", "c:1"],
        strategy="round_robin",
        outlier=bt.OutlierDetection(consecutive_failures=2, base_ejection_time=10.0),
        name="lb",
        clock=clock,
    )
    for _ in range(6):
        pick = balancer.pick()
        with pick as ep:
            if ep.address == "a:1":
                pick.fail()
    found = points(reader)
    assert value(found, "buttress.balancer.ejections", **{"buttress.endpoint": "a:1"}) == 1
    assert value(found, "buttress.balancer.endpoint.up", **{"buttress.endpoint": "a:1"}) == 0
    clock.advance(10.0)
    for _ in range(3):
        with balancer.pick():
            pass
    found = points(reader)
    assert value(found, "buttress.balancer.endpoint.up", **{"buttress.endpoint": "a:1"}) == 1


async def test_consumer_handled_and_dead_lettered(
    otel: OTelMetrics, reader: InMemoryMetricReader
) -> None:
    from buttress.messaging import MemoryTransport, Message, Reject

    clock = FakeClock()
    transport = MemoryTransport(clock=clock)

    async def handle(msg: Message) -> None:
        if msg.body == b"poison":
            raise Reject("cannot parse")

    await transport.publish("orders", b"ok")
    await transport.publish("orders", b"poison")
    consumer = bt.Consumer(transport, "orders", handle, group="g", clock=clock, name="c")
    task = asyncio.create_task(consumer.run())
    while consumer.stats().dead_lettered < 1 or consumer.stats().handled < 1:
        await clock.sleep(0.01)
    await consumer.stop()
    await task
    found = points(reader)
    topic = {"messaging.destination.name": "orders"}
    assert value(found, "buttress.messaging.handled", **topic) == 1
    assert value(found, "buttress.messaging.dead_lettered", **topic) == 1


def test_cache_evictions_by_cause(otel: OTelMetrics, reader: InMemoryMetricReader) -> None:
    clock = FakeClock()
    cache: bt.Cache[str, int] = bt.Cache(max_size=2, clock=clock, name="c")
    cache.set("ttl", 0, ttl=1.0)
    clock.advance(2.0)
    assert cache.get("ttl") is None  # expired
    for i in range(10):
        cache.set(f"k{i}", i)
    found = points(reader)
    assert value(found, "buttress.cache.evictions", **{"buttress.cause": "expired"}) == 1
    assert value(found, "buttress.cache.evictions", **{"buttress.cause": "size"}) >= 7
