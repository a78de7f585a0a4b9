"""Fault policies: injection, rates, switches, events, deadlines, composition."""

from __future__ import annotations

import asyncio
import random

import pytest

import buttress as bt
from buttress.chaos import Behavior, Fault, FaultInjected, Latency, Outcome, env, flag_file
from buttress.testing import FakeClock


def ok() -> str:
    return "real"


async def aok() -> str:
    return "real"


def test_fault_raises_a_fresh_exception_of_the_given_class() -> None:
    """A class is instantiated per injection, with a message naming the policy."""
    fault = Fault(ConnectionError, name="f")
    with pytest.raises(ConnectionError, match="fault injected by f") as first:
        fault.call_sync(ok)
    with pytest.raises(ConnectionError) as second:
        fault.call_sync(ok)
    assert first.value is not second.value


async def test_fault_async_and_factory() -> None:
    """Async calls fail too; a factory builds the exception."""
    fault = Fault(lambda: TimeoutError("slow"))
    with pytest.raises(TimeoutError, match="slow"):
        await fault.call(aok)


def test_fault_refuses_cancellation_and_non_exceptions() -> None:
    """CancelledError (a BaseException) is refused with a clear message."""
    with pytest.raises(bt.ConfigError, match="cancellation means shutdown"):
        Fault(asyncio.CancelledError)  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="exception"):
        Fault("boom")  # type: ignore[arg-type]


def test_rate_is_reproducible_with_a_seed() -> None:
    """The same seed injects into the same calls."""

    def pattern(seed: int) -> list[bool]:
        fault = Fault(ValueError, rate=0.3, random=random.Random(seed))
        out = []
        for _ in range(200):
            try:
                fault.call_sync(ok)
                out.append(False)
            except ValueError:
                out.append(True)
        return out

    assert pattern(7) == pattern(7)
    assert 30 < sum(pattern(7)) < 90


def test_rate_zero_never_injects_and_stats_count() -> None:
    """rate=0 means never; stats count calls, enabled calls and injections."""
    fault = Fault(ValueError, rate=0.0, name="never")
    assert [fault.call_sync(ok) for _ in range(5)] == ["real"] * 5
    stats = fault.stats()
    assert (stats.calls, stats.enabled_calls, stats.injected) == (5, 5, 0)


def test_bad_options_are_named() -> None:
    """rate, enabled and when are validated at construction."""
    with pytest.raises(bt.ConfigError, match=r"rate must be a number in \[0, 1\], got 1.5"):
        Fault(ValueError, rate=1.5)
    with pytest.raises(bt.ConfigError, match="enabled must be"):
        Fault(ValueError, enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="when must be"):
        Fault(ValueError, when="during")  # type: ignore[arg-type]


def test_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """An env switch follows the variable on every call."""
    fault = Fault(ValueError, enabled=env("BUTTRESS_TEST_CHAOS"))
    monkeypatch.delenv("BUTTRESS_TEST_CHAOS", raising=False)
    assert fault.call_sync(ok) == "real"
    monkeypatch.setenv("BUTTRESS_TEST_CHAOS", "1")
    with pytest.raises(ValueError):
        fault.call_sync(ok)
    monkeypatch.setenv("BUTTRESS_TEST_CHAOS", "off")
    assert fault.call_sync(ok) == "real"
    assert fault.stats().enabled_calls == 1


def test_flag_file_switch_with_check_interval(tmp_path, clock: FakeClock) -> None:
    """A flag file turns faults on from outside; check_every caches the answer."""
    flag = tmp_path / "chaos-on"
    switch = flag_file(flag, check_every=1.0, clock=clock)
    fault = Fault(ValueError, enabled=switch)
    assert fault.call_sync(ok) == "real"
    flag.write_text("")
    assert fault.call_sync(ok) == "real"  # cached for 1 s
    clock.advance(1.0)
    with pytest.raises(ValueError):
        fault.call_sync(ok)


def test_a_broken_switch_keeps_chaos_off() -> None:
    """A switch that raises never breaks the guarded call."""

    def broken() -> bool:
        raise RuntimeError("no")

    assert Fault(ValueError, enabled=broken).call_sync(ok) == "real"


def test_callable_switch_and_events(recorder) -> None:
    """A callable switch; every injection emits FaultInjected."""
    on = [False]
    fault = Fault(KeyError, enabled=lambda: on[0], name="k")
    fault.call_sync(ok)
    on[0] = True
    with pytest.raises(KeyError):
        fault.call_sync(ok)
    events = recorder.of(FaultInjected)
    assert len(events) == 1
    assert events[0].policy == "k" and events[0].kind == "exception"
    assert isinstance(events[0].exception, KeyError)


def test_fault_after_runs_the_call_and_loses_the_reply() -> None:
    """when='after' makes the call, then raises."""
    calls = []
    fault = Fault(ConnectionError, when="after")
    with pytest.raises(ConnectionError):
        fault.call_sync(lambda: calls.append(1))
    assert calls == [1]


def test_outer_retry_handles_what_chaos_injects() -> None:
    """Innermost chaos: a retry outside retries the injected fault."""
    fault = Fault(ConnectionError, rate=0.5, random=random.Random(3))
    retry = bt.Retry(attempts=10, on=ConnectionError, backoff=bt.Backoff.constant(0.0))
    policy = bt.pipeline(retry, fault)
    assert [policy.call_sync(ok) for _ in range(20)] == ["real"] * 20
    assert fault.stats().injected > 0


async def test_fallback_handles_injected_fault_in_decorator_form() -> None:
    """The decorator form works on async functions through a pipeline."""
    policy = bt.pipeline(bt.Fallback("cached"), Fault(OSError))

    @policy
    async def fetch() -> str:
        return "real"

    assert await fetch() == "cached"


async def test_latency_sleeps_on_the_clock(clock: FakeClock, recorder) -> None:
    """Latency sleeps seconds ± jitter in virtual time and reports the delay."""
    latency = Latency(0.5, jitter=0.1, clock=clock, random=random.Random(1))
    assert await latency.call(aok) == "real"
    delay = recorder.of(FaultInjected)[0].delay
    assert 0.4 <= delay <= 0.6
    assert clock.monotonic() == pytest.approx(delay)


def test_latency_sync_and_draw_bounds(clock: FakeClock) -> None:
    """Sync calls block on sleep_sync; draws stay in [s - j, s + j] and >= 0."""
    latency = Latency(0.05, jitter=0.1, clock=clock, random=random.Random(2))
    draws = [latency.draw() for _ in range(500)]
    assert min(draws) >= 0.0 and max(draws) <= 0.15
    assert latency.call_sync(ok) == "real"


def test_latency_respects_the_deadline(clock: FakeClock) -> None:
    """A delay longer than the deadline sleeps what is left and raises."""
    calls = []
    latency = Latency(2.0, clock=clock)
    with bt.deadline(0.5, clock=clock), pytest.raises(bt.DeadlineExceededError):
        latency.call_sync(lambda: calls.append(1))
    assert clock.monotonic() == pytest.approx(0.5)
    assert calls == []


async def test_outer_timeout_cuts_injected_latency(clock: FakeClock) -> None:
    """An outer Timeout fires on the injected latency like on a slow dependency."""
    policy = bt.pipeline(bt.Timeout(0.2, clock=clock), Latency(1.0, clock=clock))
    with pytest.raises(bt.TimeoutError):
        await policy.call(aok)
    assert clock.monotonic() == pytest.approx(0.2)


async def test_outcome_fakes_the_result_from_the_arguments() -> None:
    """Outcome answers without calling; a builder gets the call's arguments."""
    calls = []

    async def real(x: int) -> int:
        calls.append(x)
        return x

    async def fake(x: int) -> int:
        return -x

    assert await Outcome(fake).call(real, 3) == -3
    assert Outcome([]).call_sync(lambda: calls.append(0) or [1]) == []
    assert calls == []


def test_outcome_async_builder_in_sync_call_is_an_error() -> None:
    """An async builder cannot answer a sync call."""

    async def fake() -> int:
        return 1

    with pytest.raises(TypeError, match="async"):
        Outcome(fake).call_sync(ok)


async def test_behavior_runs_around_the_call() -> None:
    """Behavior runs before or after; the call still runs."""
    seen: list[str] = []

    async def crash_marker() -> None:
        seen.append("behavior")

    async def call() -> str:
        seen.append("call")
        return "real"

    assert await Behavior(crash_marker).call(call) == "real"
    assert await Behavior(lambda: seen.append("after"), when="after").call(call) == "real"
    assert seen == ["behavior", "call", "call", "after"]


def test_behavior_can_crash_with_an_ordinary_exception() -> None:
    """What a behaviour raises reaches the caller (a crash, not a cancellation)."""

    def crash() -> None:
        raise RuntimeError("worker crashed")

    with pytest.raises(RuntimeError, match="worker crashed"):
        Behavior(crash).call_sync(ok)
